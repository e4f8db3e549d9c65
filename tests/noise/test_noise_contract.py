"""The contract every generator keeps: shape/dtype, seeding, values, input untouched, JSON info."""

from __future__ import annotations

import json

import numpy as np
import pytest

from noisyseg.errors import ConfigError, DataError
from noisyseg.noise import PROTOCOLS, REGISTRY

# every protocol with a per-label function, with its record's example parameters (which make it
# visibly change the small test labels)
PARAMS = {name: REGISTRY[name].example for name in PROTOCOLS}
NAMES = sorted(PROTOCOLS)
LABELS = ["blob2d", "blob3d", "multi2d", "multi3d"]


def run(name, label, seed):
    return PROTOCOLS[name](label, rng=np.random.default_rng(seed), **PARAMS[name])


def test_every_label_and_dataset_protocol_has_a_generator():
    assert set(PROTOCOLS) == {n for n, p in REGISTRY.items() if p.kind in ("label", "dataset")}
    assert all(callable(PROTOCOLS[n]) for n in PROTOCOLS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", LABELS)
def test_shape_dtype_values_and_input_untouched(name, which, request):
    label = request.getfixturevalue(which)
    before = label.copy()
    noisy, info = run(name, label, 0)
    assert noisy.shape == label.shape and noisy.dtype == label.dtype
    assert set(np.unique(noisy)) <= set(np.unique(label))
    np.testing.assert_array_equal(label, before)
    assert info["protocol"] == name
    json.dumps(info, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["blob2d", "multi3d"])
def test_same_seed_same_output_other_seed_differs(name, which, request):
    label = request.getfixturevalue(which)
    if name == "classswap" and which == "blob2d":
        label = request.getfixturevalue("multi2d")  # one class has nothing to swap to
    a, ia = run(name, label, 7)
    b, ib = run(name, label, 7)
    np.testing.assert_array_equal(a, b)
    assert ia == ib
    outs = [run(name, label, s)[0] for s in range(8, 16)]
    assert any(not np.array_equal(a, o) for o in outs)
    assert any(not np.array_equal(o, label) for o in [a, *outs])  # labels really change


@pytest.mark.parametrize("name", NAMES)
def test_multiclass_value_set_is_kept_in_2d_and_3d(name, multi2d, multi3d):
    for label in (multi2d, multi3d):
        assert set(np.unique(label)) == {0, 1, 3}
        for seed in range(4):
            noisy, _ = run(name, label, seed)
            assert set(np.unique(noisy)) <= {0, 1, 3}


@pytest.mark.parametrize("name", NAMES)
def test_bool_label_stays_bool(name, blob2d):
    noisy, _ = run(name, blob2d.astype(bool), 1)
    assert noisy.dtype == bool


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_one_line_errors(name, blob2d):
    fn = PROTOCOLS[name]
    with pytest.raises(DataError, match="integer"):
        fn(blob2d.astype(float), rng=np.random.default_rng(0))
    with pytest.raises(DataError, match="2D"):
        fn(blob2d[None, None], rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Generator"):
        fn(blob2d, rng=0)
    with pytest.raises(ConfigError, match="spacing"):
        fn(blob2d, rng=np.random.default_rng(0), spacing=(1.0,))
