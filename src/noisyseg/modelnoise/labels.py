"""Model-made label noise: labels are a segmentation model's predictions (docs/reference.md §3).

Two dataset-level protocols (used by :func:`noisyseg.modelnoise.make_noisy_dataset`, not
per-array generators):

- ``pseudo``: the labels of the corrupted cases are the predictions of a trained run
  (``source_run``) on the training images.
- ``sfda`` (SFDA-Noise): a source model — a trained run (``source_run``), or a
  ``supervised`` run trained here on a source dataset (``source``) — is adapted to the
  target training images without labels or source data (TENT-style entropy minimisation,
  `adapt_entropy`), then predicts the target training images. When the source model is
  trained here, its run folder is a temporary folder beside the output that is removed
  afterwards (only the adapted model's labels are kept; the source dataset, the training
  overrides and the seed are recorded in every corrupted case's report entry, so the
  labels can be regenerated).

The noise is structured and image-dependent (model errors), not geometric.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.case import Case, Dataset, check_compatible
from ..errors import ConfigError
from ..noise.registry import MODEL_PROTOCOLS

__all__ = ["MODEL_PROTOCOLS", "adapt_entropy", "check_model_protocol_args", "model_noisy_labels", "pseudo_labels"]
ADAPT_DEFAULTS = {"steps": 50, "lr": 1e-3, "batch_size": None, "patch_size": None}


def pseudo_labels(method, info: dict, cfg, cases: Sequence[Case]) -> list[np.ndarray]:
    """Class indices (*S) predicted by a loaded run (api.load_run) for each case image."""
    from ..api import predict_image

    method.eval()
    return [predict_image(method, c.image, info, cfg, c.spacing).argmax(0).astype(np.int64) for c in cases]


def _bn_modules(method) -> list[torch.nn.Module]:
    return [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]


def adapt_entropy(method, cases: Sequence[Case], *, steps: int, lr: float, patch_size: Sequence[int],
                  batch_size: int, seed: int, slice_axis: int = -1) -> None:
    """Source-free adaptation in place (TENT): minimise the mean per-pixel entropy of
    `method.predict_proba` on random target patches, updating only the normalisation layers' affine
    parameters of the method's networks.

    Batch-norm layers run in train mode (batch statistics; their running statistics follow
    the target data), everything else stays in eval mode. Labels are not used: the sampler
    sees the cases with empty labels and no foreground oversampling. Seeded by `seed`
    (patches and Adam). The method is left in eval mode.
    """
    from ..data.sampling import PatchSampler

    if steps < 0 or lr <= 0 or batch_size < 1:
        raise ConfigError(f"sfda adaptation: need steps >= 0, lr > 0, batch_size >= 1 "
                          f"(got steps={steps}, lr={lr}, batch_size={batch_size})")
    bns = [m for m in _bn_modules(method) if m.affine]
    if not bns:
        raise ConfigError("sfda adaptation: the method's networks have no normalisation layers with affine parameters")
    params = [p for m in bns for p in (m.weight, m.bias)]
    saved = {p: p.requires_grad for p in method.parameters()}
    for p in method.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    unlabelled = [dataclasses.replace(c, label=np.zeros(c.image.shape[1:], dtype=np.int64), clean_label=None)
                  for c in cases]
    sampler = PatchSampler(unlabelled, patch_size=list(patch_size), batch_size=batch_size, fg_oversample=0.0,
                           augment=False, slice_axis=slice_axis, seed=seed)
    device = next(method.parameters()).device
    torch.manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    method.eval()
    for m in bns:
        m.train()
    try:
        for step in range(steps):
            x = sampler.batch(step)["image"].to(device)
            with torch.enable_grad():
                p = method.predict_proba(x).float()
                loss = -(p * torch.log(p.clamp_min(1e-8))).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
    finally:
        method.eval()
        for q, flag in saved.items():
            q.requires_grad_(flag)


def check_model_protocol_args(protocol: str, source, source_run, params: dict) -> dict:
    """Validate the arguments of a model protocol (before any data is read); returns the
    adaptation parameters (sfda) with defaults filled in."""
    if protocol == "pseudo":
        if source_run is None:
            raise ConfigError("noise protocol 'pseudo' needs --source-run (a trained run folder)")
        if source is not None:
            raise ConfigError("noise protocol 'pseudo' takes --source-run, not --source")
        if params:
            raise ConfigError(f"noise protocol 'pseudo' takes no parameters (got {', '.join(params)})")
        return {}
    if (source is None) == (source_run is None):
        raise ConfigError("noise protocol 'sfda' needs exactly one of --source (a source dataset folder) "
                          "or --source-run (a trained run folder)")
    unknown = set(params) - set(ADAPT_DEFAULTS)
    if unknown:
        raise ConfigError(f"noise protocol 'sfda': unknown parameter(s) {', '.join(sorted(unknown))}; "
                          f"choose from: {', '.join(ADAPT_DEFAULTS)}")
    return {**ADAPT_DEFAULTS, **params}


def model_noisy_labels(protocol: str, ds: Dataset, cases: list[Case], corrupt: set[str], *, seed: int,
                       source: Path | str | None = None, source_run: Path | str | None = None,
                       source_overrides: dict | None = None, params: dict | None = None,
                       progress: bool = False, scratch_dir: Path | str | None = None
                       ) -> list[tuple[np.ndarray, dict]]:
    """(label, info) per case for `pseudo`/`sfda`: the model's prediction for corrupted cases,
    the clean label otherwise. Raises DataError when the model does not fit the target."""
    from .. import api

    adapt = check_model_protocol_args(protocol, source, source_run, dict(params or {}))
    tmp_run: Path | None = None
    try:
        if source is not None:
            src_ds = api.open_data(source)
            check_compatible(f"source dataset {src_ds.root}", src_ds.class_names, src_ds.in_channels,
                              src_ds.spatial_dims, ds)
            tmp_run = Path(tempfile.mkdtemp(prefix=".sfda_source_run.", dir=scratch_dir))
            api.train(data=source, out=tmp_run, method="supervised", seed=seed, overrides=source_overrides,
                      progress=progress)
            run_path = tmp_run
        else:
            run_path = Path(source_run)
        method, info, cfg = api.load_run(run_path)
        check_compatible(f"source run {run_path}", info["class_names"], len(info["modalities"]),
                          info["data_dims"], ds)
        base = {"protocol": protocol}
        base.update({"source": str(source), "source_overrides": source_overrides or {}} if source is not None
                    else {"source_run": str(source_run)})
        if protocol == "sfda":
            from ..data.resample import resample_case

            target_cases = [resample_case(c, cfg.data.target_spacing) for c in cases]  # the run's grid
            adapt_entropy(method, target_cases, steps=int(adapt["steps"]), lr=float(adapt["lr"]),
                          patch_size=adapt["patch_size"] or info["patch_size"],
                          batch_size=int(adapt["batch_size"] or cfg.data.batch_size), seed=seed,
                          slice_axis=info["slice_axis"])
            base.update({"adapt": {k: v for k, v in adapt.items() if v is not None}, "seed": seed})
        todo = [c for c in cases if c.id in corrupt]
        preds = dict(zip([c.id for c in todo], pseudo_labels(method, info, cfg, todo)))
    finally:
        if tmp_run is not None:
            shutil.rmtree(tmp_run, ignore_errors=True)
    out = []
    for c in cases:
        if c.id in preds:
            out.append((preds[c.id], dict(base)))
        else:
            out.append((c.clean_label if c.clean_label is not None else c.label, {"protocol": "none"}))
    return out
