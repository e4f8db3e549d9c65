"""The protocol registry: one record per protocol; levels checked against each record's range."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from noisyseg.errors import ConfigError
from noisyseg.noise import (
    LEVEL_PARAMS,
    MODEL_PROTOCOLS,
    PROTOCOLS,
    REGISTRY,
    apply_protocol,
    flip,
    get_protocol,
    protocol_record,
    validate_level,
)
from noisyseg.modelnoise.labels import MODEL_PROTOCOLS as MODEL_PROTOCOLS_OF_MODULE

WITH_LEVEL = [n for n, p in REGISTRY.items() if p.level is not None]
WITHOUT_LEVEL = [n for n, p in REGISTRY.items() if p.level is None and p.kind != "model"]


def test_every_record_is_consistent_and_the_tables_derive_from_it():
    for name, p in REGISTRY.items():
        assert p.name == name and p.kind in ("label", "dataset", "model")
        assert (p.fn is None) == (p.kind == "model") == (p.impl is not None)
        if p.kind == "model":
            module = importlib.import_module(p.impl)
            assert callable(module.check_args) and callable(module.adapt)
        assert (p.dataset_fn is not None) == (p.kind == "dataset")
        assert p.kind != "model" or p.level is None
    assert list(PROTOCOLS) == [n for n, p in REGISTRY.items() if p.kind != "model"]
    assert MODEL_PROTOCOLS == MODEL_PROTOCOLS_OF_MODULE == tuple(n for n, p in REGISTRY.items() if p.kind == "model")
    assert set(LEVEL_PARAMS) == set(WITH_LEVEL)
    assert get_protocol("flip") is flip
    assert "pseudo" not in PROTOCOLS and "sfda" not in PROTOCOLS and set(MODEL_PROTOCOLS) == {"pseudo", "sfda"}


def test_unknown_protocol_suggests_a_name():
    with pytest.raises(ConfigError, match=r"unknown noise protocol 'morf'.*did you mean 'morph'"):
        get_protocol("morf")
    with pytest.raises(ConfigError, match=r"unknown noise protocol 'sfd'.*did you mean 'sfda'"):
        protocol_record("sfd")


def _levels(name: str) -> tuple[list[float], list]:
    """(good, bad) levels from the record's range: its ends unless open, values inside, values outside."""
    s = REGISTRY[name].level
    mid = (s.low + s.high) / 2
    good = [mid] + ([s.low] if not s.low_open else []) + ([s.high] if not s.high_open else [])
    bad = [s.low - 0.1, s.high + 0.1, "high", float("nan")] + ([s.low] if s.low_open else []) + \
        ([s.high] if s.high_open else [])
    return good, bad


@pytest.mark.parametrize("name", WITH_LEVEL)
def test_levels_follow_the_record(name):
    good, bad = _levels(name)
    for level in good:
        assert validate_level(name, level) == level
    assert validate_level(name, None) is None
    for level in bad:
        with pytest.raises(ConfigError):
            validate_level(name, level)


@pytest.mark.parametrize("name", WITHOUT_LEVEL)
def test_protocols_without_a_level_refuse_one(name):
    assert validate_level(name, None) is None
    with pytest.raises(ConfigError, match="takes no level"):
        validate_level(name, 0.3)


def test_the_papers_levels_pass():
    for protocol, level in [("l2b", 0.2), ("l2b", 0.4), ("l2b", 0.6), ("morph", 0.5)]:
        assert math.isclose(validate_level(protocol, level), level)


def test_apply_protocol_passes_the_level(blob2d):
    noisy, info = apply_protocol("flip", blob2d, rng=np.random.default_rng(0), level=0.25)
    assert info["rate"] == 0.25
    assert abs((noisy != blob2d).mean() - 0.25) < 0.02
    with pytest.raises(ConfigError):
        apply_protocol("flip", blob2d, rng=np.random.default_rng(0), level=1.5)
