"""Model-made label noise: labels are a segmentation model's predictions (docs/reference.md §3).

The model protocols (``pseudo``, ``sfda``) are records of kind ``model`` in
:data:`noisyseg.noise.registry.REGISTRY`; each record's ``impl`` names its module here, which
checks the protocol's arguments and adapts the loaded model to the target images
(``check_args``, ``adapt``). This module does the rest, common to all of them: train the
source model when a source dataset is given, load the run, and predict the corrupted cases.

The noise is structured and image-dependent (model errors), not geometric.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from ..data.case import Case, Dataset, check_compatible
from ..noise.registry import MODEL_PROTOCOLS, protocol_record

__all__ = ["MODEL_PROTOCOLS", "check_model_protocol_args", "model_noisy_labels", "model_protocol", "pseudo_labels"]


def pseudo_labels(method, info: dict, cfg, cases: Sequence[Case]) -> list[np.ndarray]:
    """Class indices (*S) predicted by a loaded run (api.load_run) for each case image."""
    from ..api import predict_image

    method.eval()
    return [predict_image(method, c.image, info, cfg, c.spacing).argmax(0).astype(np.int64) for c in cases]


def model_protocol(protocol: str) -> ModuleType:
    """The module that implements a model protocol (its registry record's ``impl``)."""
    return importlib.import_module(protocol_record(protocol).impl)


def check_model_protocol_args(protocol: str, source, source_run, params: dict) -> dict:
    """Validate the arguments of a model protocol (before any data is read); returns its
    parameters with defaults filled in."""
    return model_protocol(protocol).check_args(source, source_run, params)


def model_noisy_labels(protocol: str, ds: Dataset, cases: list[Case], corrupt: set[str], *, seed: int,
                       source: Path | str | None = None, source_run: Path | str | None = None,
                       source_overrides: dict | None = None, params: dict | None = None,
                       progress: bool = False, scratch_dir: Path | str | None = None
                       ) -> list[tuple[np.ndarray, dict]]:
    """(label, info) per case for `pseudo`/`sfda`: the model's prediction for corrupted cases,
    the clean label otherwise. Raises DataError when the model does not fit the target."""
    from .. import api

    settings = check_model_protocol_args(protocol, source, source_run, dict(params or {}))
    tmp_run: Path | None = None
    try:
        if source is not None:
            src_ds = api.open_data(source)
            check_compatible(f"source dataset {src_ds.root}", src_ds.class_names, src_ds.in_channels,
                              src_ds.spatial_dims, ds)
            tmp_run = Path(tempfile.mkdtemp(prefix=".source_run.", dir=scratch_dir))
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
        base.update(model_protocol(protocol).adapt(method, cases, info, cfg, settings, seed))
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
