"""``sfda`` (SFDA-Noise): a source model, adapted to the target training images without their
labels or the source data, predicts the labels of the corrupted cases (docs/reference.md §3).

The source model is a trained run (``--source-run``), or a ``supervised`` run trained on a
source dataset (``--source``) into a temporary folder that is removed afterwards. Adaptation is
TENT-style entropy minimisation of the normalisation layers' affine parameters
(:func:`adapt_entropy`); its settings (``steps``, ``lr``, ``batch_size``, ``patch_size``) are the
protocol's parameters and are recorded, with the seed, in every corrupted case's report entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..data.case import Case
from ..errors import ConfigError

ADAPT_DEFAULTS = {"steps": 50, "lr": 1e-3, "batch_size": None, "patch_size": None}


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


def check_args(source, source_run, params: dict) -> dict:
    """Validate sfda's arguments (before any data is read); returns the adaptation parameters
    with defaults filled in."""
    if (source is None) == (source_run is None):
        raise ConfigError("noise protocol 'sfda' needs exactly one of --source (a source dataset folder) "
                          "or --source-run (a trained run folder)")
    unknown = set(params) - set(ADAPT_DEFAULTS)
    if unknown:
        raise ConfigError(f"noise protocol 'sfda': unknown parameter(s) {', '.join(sorted(unknown))}; "
                          f"choose from: {', '.join(ADAPT_DEFAULTS)}")
    return {**ADAPT_DEFAULTS, **params}


def adapt(method, cases: Sequence[Case], info: dict, cfg, params: dict, seed: int) -> dict:
    """Adapt the loaded source run to `cases` in place (on the run's voxel grid); returns the
    entries recorded in each corrupted case's report (the adaptation settings and the seed)."""
    from ..data.resample import resample_case

    target_cases = [resample_case(c, cfg.data.target_spacing) for c in cases]
    adapt_entropy(method, target_cases, steps=int(params["steps"]), lr=float(params["lr"]),
                  patch_size=params["patch_size"] or info["patch_size"],
                  batch_size=int(params["batch_size"] or cfg.data.batch_size), seed=seed,
                  slice_axis=info["slice_axis"])
    return {"adapt": {k: v for k, v in params.items() if v is not None}, "seed": seed}
