"""Whole-case prediction: sliding window in 2D/3D, or slice by slice for 2D nets on volumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


@torch.no_grad()
def predict_case(predict_proba: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, *,
                 patch_size: Sequence[int], overlap: float = 0.5, mode: str = "gaussian",
                 slice_axis: int = -1, device: torch.device | str = "cpu", slice_batch: int = 16,
                 stride: Sequence[int] | None = None) -> np.ndarray:
    """Class probabilities (K, *S) for one image (C, *S).

    A network trained on len(patch_size) axes predicts an image of the same
    dimensionality by MONAI's sliding-window inference (roi = patch_size, blended with
    `mode`); an image with one more axis is cut into slices along `slice_axis` that are
    predicted in batches of `slice_batch`.

    `stride` (voxels per axis) replaces `overlap` by a fixed step between windows, the
    last window flush with the border: the grid of the LA / Pancreas papers' test code
    (steps of 18, 18, 4 for 112x112x80 patches); combine with mode='constant' to average
    the windows' softmax as they do.
    """
    from monai.inferers import sliding_window_inference

    train_dims = len(patch_size)
    data_dims = image.ndim - 1
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)

    ov: float | list[float] = overlap if stride is None else stride_to_overlap(patch_size, stride)

    def window(batch: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(batch, roi_size=tuple(patch_size), sw_batch_size=4,
                                        predictor=predict_proba, overlap=ov, mode=mode)

    if train_dims == data_dims:
        return window(x[None])[0].float().cpu().numpy()
    ax = slice_axis % data_dims
    slices = x.movedim(ax + 1, 0)  # (Z, C, *S2)
    outs = [window(slices[i:i + slice_batch]) for i in range(0, slices.shape[0], slice_batch)]
    probs = torch.cat(outs, 0).movedim(0, ax + 1)  # (K, ..., Z at ax, ...)
    return probs.float().cpu().numpy()


def stride_to_overlap(patch_size: Sequence[int], stride: Sequence[int]) -> list[float]:
    """MONAI overlaps whose scan interval int(roi·(1 − overlap)) is exactly `stride`.

    A quarter voxel above the stride keeps float rounding from landing one voxel short;
    a stride at least the patch size means no overlap.
    """
    if len(stride) != len(patch_size):
        raise ValueError(f"stride {list(stride)} and patch size {list(patch_size)} differ in length")
    return [0.0 if s >= r else 1.0 - (s + 0.25) / r for r, s in zip(patch_size, stride)]
