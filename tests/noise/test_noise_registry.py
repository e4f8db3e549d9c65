from __future__ import annotations

import numpy as np
import pytest

from noisyseg.errors import ConfigError
from noisyseg.noise import PROTOCOLS, apply_protocol, flip, get_protocol, validate_level


def test_registry_lists_the_generators_but_not_model_based_ones():
    assert set(PROTOCOLS) == {"morph", "l2b", "markov", "affine", "polygon", "ellipse", "classswap", "flip"}
    assert get_protocol("flip") is flip
    assert "pseudo" not in PROTOCOLS and "sfda" not in PROTOCOLS


def test_unknown_protocol_suggests_a_name():
    with pytest.raises(ConfigError, match=r"unknown noise protocol 'morf'.*did you mean 'morph'"):
        get_protocol("morf")


@pytest.mark.parametrize(
    "protocol,level",
    [("l2b", 0.0), ("l2b", 1.0), ("flip", 1.0), ("flip", -0.1), ("classswap", 1.1),
     ("morph", 2.0), ("markov", 0.3), ("l2b", "high"), ("flip", float("nan"))],
)
def test_bad_levels_raise(protocol, level):
    with pytest.raises(ConfigError):
        validate_level(protocol, level)


@pytest.mark.parametrize(
    "protocol,level", [("l2b", 0.2), ("l2b", 0.4), ("l2b", 0.6), ("l2b", 0.3), ("flip", 0.0),
                       ("classswap", 1.0), ("morph", 0.5), ("markov", None)],
)
def test_good_levels_pass(protocol, level):
    assert validate_level(protocol, level) == level


def test_apply_protocol_passes_the_level(blob2d):
    noisy, info = apply_protocol("flip", blob2d, rng=np.random.default_rng(0), level=0.25)
    assert info["rate"] == 0.25
    assert abs((noisy != blob2d).mean() - 0.25) < 0.02
    with pytest.raises(ConfigError):
        apply_protocol("flip", blob2d, rng=np.random.default_rng(0), level=1.5)
