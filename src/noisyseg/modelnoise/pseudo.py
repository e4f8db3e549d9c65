"""``pseudo``: the labels of the corrupted cases are a trained run's predictions on the training
images (``--source-run``), as they come out of the run (docs/reference.md §3)."""

from __future__ import annotations

from collections.abc import Sequence

from ..data.case import Case
from ..errors import ConfigError


def check_args(source, source_run, params: dict) -> dict:
    """Validate pseudo's arguments (before any data is read): a run folder and nothing else."""
    if source_run is None:
        raise ConfigError("noise protocol 'pseudo' needs --source-run (a trained run folder)")
    if source is not None:
        raise ConfigError("noise protocol 'pseudo' takes --source-run, not --source")
    if params:
        raise ConfigError(f"noise protocol 'pseudo' takes no parameters (got {', '.join(params)})")
    return {}


def adapt(method, cases: Sequence[Case], info: dict, cfg, params: dict, seed: int) -> dict:
    """Nothing to adapt: the run predicts as it was trained; no report entries."""
    return {}
