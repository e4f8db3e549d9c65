"""Sliding-window prediction: the literature's fixed stride places windows exactly as the
LA / Pancreas papers' test code does, and constant mode averages the windows' softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisyseg.config import RunConfig
from noisyseg.engine.inference import predict_case, stride_to_overlap


def literature_starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts of UA-MT's test_single_case: ceil((w - p) / s) + 1 windows, clipped."""
    n = math.ceil((size - patch) / stride) + 1
    return sorted({min(stride * i, size - patch) for i in range(n)})


@pytest.mark.parametrize("shape,patch,stride", [((130, 121, 88), (112, 112, 80), (18, 18, 4)),
                                                ((40, 33), (16, 16), (5, 7)),
                                                ((20, 20), (16, 16), (32, 32))])
def test_fixed_stride_visits_the_papers_window_grid(shape, patch, stride):
    seen: list[tuple[int, ...]] = []
    # the input holds each voxel's coordinates, so a window's first voxel tells where it sits
    image = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(np.float32)

    def probe(x: torch.Tensor) -> torch.Tensor:
        for b in range(x.shape[0]):
            seen.append(tuple(int(v) for v in x[(b, slice(None)) + (0,) * len(shape)]))
        return torch.softmax(torch.zeros(x.shape[0], 2, *x.shape[2:]), 1)

    predict_case(probe, image, patch_size=patch, mode="constant", stride=stride)
    starts = [literature_starts(n, p, st) for n, p, st in zip(shape, patch, stride)]
    expected = {tuple(starts[a][i] for a, i in enumerate(idx)) for idx in np.ndindex(*[len(s) for s in starts])}
    assert set(seen) == expected and len(seen) == len(expected)


def test_constant_mode_averages_window_probabilities():
    """A predictor whose output depends on the window position: every voxel's result is the
    mean over the windows covering it (checked against a brute-force loop in 1D-like 2D)."""
    patch, stride = (1, 8), (1, 5)
    image = np.arange(23, dtype=np.float32).reshape(1, 1, 23)

    def pred(x: torch.Tensor) -> torch.Tensor:
        start = x[:, 0, 0, 0].reshape(-1, 1, 1, 1)  # value of the first voxel = the window start
        p1 = (start / 100.0).expand(-1, 1, *x.shape[2:])
        return torch.cat([1 - p1, p1], 1)

    out = predict_case(pred, image, patch_size=patch, mode="constant", stride=stride)
    starts = literature_starts(23, 8, 5)
    ref = np.zeros(23)
    cnt = np.zeros(23)
    for s in starts:
        ref[s:s + 8] += s / 100.0
        cnt[s:s + 8] += 1
    np.testing.assert_allclose(out[1, 0], ref / cnt, rtol=1e-6)


def test_stride_config_is_validated():
    assert stride_to_overlap([112, 112, 80], [18, 18, 4])[2] == pytest.approx(1 - 4.25 / 80)
    with pytest.raises(ValueError):
        RunConfig.model_validate({"data": {"patch_size": [16, 16]}, "train": {"sw_stride": [4, 4, 4]}})
    with pytest.raises(ValueError):
        RunConfig.model_validate({"train": {"sw_stride": [0, 4]}})
