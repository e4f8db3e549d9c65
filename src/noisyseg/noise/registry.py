"""Name registry of the label-noise protocols and validation of their noise level.

Every protocol is a plain function ``fn(label, *, spacing=None, rng, **params) ->
(noisy, info)``. The model-based protocols ``pseudo`` (a model's predictions) and
``sfda`` (source-free domain-adapted predictions) need a trained network; they are
added to :data:`PROTOCOLS` by the module that owns them, not here.

"Level" per protocol [choice] (:data:`LEVEL_PARAMS`), the one number a benchmark sweeps:
- ``l2b``: target 1 - Dice, any value in (0, 1); the paper's are 0.2 / 0.4 / 0.6.
  Other values are accepted because :func:`noisyseg.noise.calibrate_l2b` can hit them
  (it raises if the dataset's structures make the level unreachable).
- ``flip``: per-pixel flip rate in [0, 1).
- ``classswap``: fraction of components relabelled, in [0, 1].
- ``morph``: fraction of corrupted cases, in [0, 1] (MT-Noise is a dataset-level
  protocol: each corrupted case gets one random dilation/erosion; the complement of
  the level goes to :func:`noisyseg.noise.choose_clean_cases`). Not a generator keyword.
- ``markov``, ``affine``, ``polygon``, ``ellipse``: no level; their strength is set by
  their own keyword parameters, and a level given for them is an error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError, unknown_name
from ._common import check_range
from .classes import classswap, flip
from .geometric import affine, ellipse, polygon
from .l2b import l2b
from .markov import markov
from .morph import morph

PROTOCOLS: dict[str, Callable[..., tuple[np.ndarray, dict]]] = {
    "morph": morph,
    "l2b": l2b,
    "markov": markov,
    "affine": affine,
    "polygon": polygon,
    "ellipse": ellipse,
    "classswap": classswap,
    "flip": flip,
}

# protocol -> (generator keyword or None, low, high, low open, high open)
LEVEL_PARAMS: dict[str, tuple[str | None, float, float, bool, bool]] = {
    "l2b": ("level", 0.0, 1.0, True, True),
    "flip": ("rate", 0.0, 1.0, False, True),
    "classswap": ("fraction", 0.0, 1.0, False, False),
    "morph": (None, 0.0, 1.0, False, False),
}


def get_protocol(name: str) -> Callable[..., tuple[np.ndarray, dict]]:
    """The generator function for a protocol name, or ConfigError with a suggestion."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise unknown_name("noise protocol", str(name), PROTOCOLS) from None


def validate_level(protocol: str, level: float | None) -> float | None:
    """Check ``level`` for ``protocol``; return it as a float (None stays None).

    Raises ConfigError for an unknown protocol, an out-of-range level, or a level given
    to a protocol that has none.
    """
    get_protocol(protocol)
    if level is None:
        return None
    if protocol not in LEVEL_PARAMS:
        raise ConfigError(
            f"noise protocol '{protocol}' takes no level (got {level!r}); set its own "
            f"parameters instead"
        )
    _, lo, hi, lo_open, hi_open = LEVEL_PARAMS[protocol]
    return check_range(f"{protocol} level", level, lo, hi, lo_open=lo_open, hi_open=hi_open)


def apply_protocol(
    name: str,
    label: np.ndarray,
    *,
    rng: np.random.Generator,
    level: float | None = None,
    spacing: tuple[float, ...] | None = None,
    **params,
) -> tuple[np.ndarray, dict]:
    """Run protocol ``name`` on one label, passing ``level`` as its level keyword."""
    fn = get_protocol(name)
    level = validate_level(name, level)
    if level is not None:
        key = LEVEL_PARAMS[name][0]
        if key is not None:
            params[key] = level
    return fn(label, spacing=spacing, rng=rng, **params)
