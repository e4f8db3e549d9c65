"""A noisy copy of a dataset for every protocol kind, the model protocols included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.case import Case, Dataset
from ..errors import ConfigError
from ..noise import apply
from ..noise.registry import MODEL_PROTOCOLS, protocol_record
from .labels import check_model_protocol_args, model_noisy_labels


def make_noisy_dataset(data: Path | str, out: Path | str, *, protocol: str, level: float | None = None,
                       seed: int = 0, params: dict | None = None, clean_fraction: float | None = None,
                       figures: bool = False, progress: bool = True, clean_cases_file: Path | str | None = None,
                       n_clean: int | None = None, source: Path | str | None = None,
                       source_run: Path | str | None = None, source_overrides: dict | None = None) -> Path:
    """:func:`noisyseg.noise.apply.make_noisy_dataset` for any protocol; returns `out`.

    Args:
        source, source_run, source_overrides: for the model protocols ``pseudo`` (needs
            `source_run`, a trained run folder) and ``sfda`` (needs `source_run` or `source`, a
            source dataset on which a ``supervised`` run is trained with `source_overrides` into
            a temporary folder that is removed); `params` then holds sfda's adaptation settings
            (steps, lr, batch_size, patch_size). See :mod:`noisyseg.modelnoise.labels`.
        Others: as :func:`noisyseg.noise.apply.make_noisy_dataset`.
    """
    common = dict(protocol=protocol, level=level, seed=seed, params=params, clean_fraction=clean_fraction,
                  figures=figures, progress=progress, clean_cases_file=clean_cases_file, n_clean=n_clean)
    if protocol_record(protocol).kind != "model":
        if source is not None or source_run is not None:
            raise ConfigError(f"noise protocol '{protocol}' takes no --source/--source-run "
                              f"(only {', '.join(MODEL_PROTOCOLS)} do)")
        return apply.make_noisy_dataset(data, out, **common)
    if level is not None:
        raise ConfigError(f"noise protocol '{protocol}' takes no level")
    adapt_params = dict(params or {})
    check_model_protocol_args(protocol, source, source_run, adapt_params)  # before any data is read

    def labels(ds: Dataset, cases: list[Case], corrupt: set[str], scratch: Path) -> list[tuple[np.ndarray, dict]]:
        return model_noisy_labels(protocol, ds, cases, corrupt, seed=seed, source=source, source_run=source_run,
                                  source_overrides=source_overrides, params=adapt_params, progress=progress,
                                  scratch_dir=scratch)

    return apply.make_noisy_dataset(data, out, model_labels=labels, **common)
