"""The label-noise protocols, one record each, and validation of their level.

Each protocol is one :class:`Protocol` in :data:`REGISTRY` (in the order the CLI lists them):
its function, its level (the one number a benchmark sweeps: keyword, range, default) and its
kind, on which :func:`noisyseg.noise.apply.make_noisy_dataset` branches:

- ``label``: a generator ``fn(label, *, spacing=None, rng, **params) -> (noisy, info)`` run on
  each corrupted case (``morph``, ``markov``, ``affine``, ``polygon``, ``ellipse``,
  ``classswap``, ``flip``);
- ``dataset``: noise calibrated over all corrupted cases together, ``dataset_fn(labels, level,
  rng, *, spacing=None, **params) -> [(noisy, info), ...]`` (``l2b``: mean 1 - Dice on the level);
- ``model``: labels made by a trained model (``pseudo``, ``sfda``): no per-label function
  and no level; the record's `impl` names the module that makes them, one file each in
  :mod:`noisyseg.modelnoise` (above the training code, so this package never imports it).

:data:`PROTOCOLS` (label and dataset kinds: name -> generator), :data:`LEVEL_PARAMS` and
:data:`MODEL_PROTOCOLS` derive from the registry. The levels and their meaning are in
``docs/noise.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import ConfigError, unknown_name
from ._common import check_range
from .classes import classswap, flip
from .geometric import affine, ellipse, polygon
from .l2b import calibrate_l2b, l2b, l2b_calibrated
from .markov import markov
from .morph import morph

Kind = Literal["label", "dataset", "model"]


@dataclass(frozen=True)
class Level:
    """A protocol's level: passed as the generator keyword `keyword`, or, when `keyword` is
    None, the fraction of training cases corrupted; valid in [low, high] (open ends as flagged);
    `default` when none is given."""

    keyword: str | None
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    default: float | None = None


@dataclass(frozen=True)
class Protocol:
    """One label-noise protocol.

    Attributes:
        name: the protocol name (``noisyseg noise --protocol``).
        kind: ``label``, ``dataset`` or ``model`` (see the module docstring).
        fn: the per-label generator (None for model protocols).
        level: its :class:`Level`, or None when its strength is set by its own parameters.
        dataset_fn: the dataset-level function of a ``dataset`` protocol.
        params_of: the function whose keyword-only parameters the protocol takes
            (default `fn`).
        example: parameters that make the protocol visibly change small labels (tests, docs).
        impl: for a ``model`` protocol, the dotted name of its module, which defines
            ``check_args(source, source_run, params) -> dict`` and ``adapt(method, cases, info,
            cfg, params, seed) -> dict`` (see :mod:`noisyseg.modelnoise.labels`).
    """

    name: str
    kind: Kind
    fn: Callable[..., tuple[np.ndarray, dict]] | None = None
    level: Level | None = None
    dataset_fn: Callable[..., list[tuple[np.ndarray, dict]]] | None = None
    params_of: Callable | None = None
    example: dict = field(default_factory=dict)
    impl: str | None = None


_ALL = (
    Protocol("morph", "label", morph, Level(None, 0.0, 1.0, default=0.5)),
    Protocol("l2b", "dataset", l2b, Level("level", 0.0, 1.0, True, True, default=0.4), dataset_fn=l2b_calibrated,
             params_of=calibrate_l2b, example={"level": 0.4, "min_pixels": 50}),
    Protocol("markov", "label", markov, example={"iterations": 6}),
    Protocol("affine", "label", affine, example={"max_shift": 4.0}),
    Protocol("polygon", "label", polygon),
    Protocol("ellipse", "label", ellipse, example={"probability": 0.5}),
    Protocol("classswap", "label", classswap, Level("fraction", 0.0, 1.0), example={"fraction": 0.5}),
    Protocol("flip", "label", flip, Level("rate", 0.0, 1.0, False, True), example={"rate": 0.05}),
    Protocol("pseudo", "model", impl="noisyseg.modelnoise.pseudo"),
    Protocol("sfda", "model", impl="noisyseg.modelnoise.sfda"),
)

REGISTRY: dict[str, Protocol] = {p.name: p for p in _ALL}
"""Every protocol by name, in the order the CLI lists them."""

PROTOCOLS: dict[str, Callable[..., tuple[np.ndarray, dict]]] = {
    p.name: p.fn for p in _ALL if p.kind != "model" and p.fn is not None}
"""The per-label generators (label and dataset kinds) by name."""

MODEL_PROTOCOLS: tuple[str, ...] = tuple(p.name for p in _ALL if p.kind == "model")

LEVEL_PARAMS: dict[str, tuple[str | None, float, float, bool, bool]] = {
    p.name: (p.level.keyword, p.level.low, p.level.high, p.level.low_open, p.level.high_open)
    for p in _ALL if p.level is not None}
"""protocol -> (generator keyword or None, low, high, low open, high open)."""


def protocol_record(name: str) -> Protocol:
    """The :class:`Protocol` of a name (any kind), or ConfigError with a suggestion."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise unknown_name("noise protocol", str(name), REGISTRY) from None


def get_protocol(name: str) -> Callable[..., tuple[np.ndarray, dict]]:
    """The generator function for a protocol name, or ConfigError with a suggestion (model
    protocols have none: they run through :func:`noisyseg.modelnoise.make_noisy_dataset`)."""
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
    spec = REGISTRY[protocol].level
    if spec is None:
        raise ConfigError(
            f"noise protocol '{protocol}' takes no level (got {level!r}); set its own "
            f"parameters instead"
        )
    return check_range(f"{protocol} level", level, spec.low, spec.high, lo_open=spec.low_open,
                       hi_open=spec.high_open)


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
        key = REGISTRY[name].level.keyword
        if key is not None:
            params[key] = level
    return fn(label, spacing=spacing, rng=rng, **params)
