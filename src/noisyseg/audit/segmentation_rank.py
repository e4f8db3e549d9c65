"""cleanlab's segmentation label-quality scores, same call and same orientation (lower = worse).

    # from cleanlab.segmentation.rank import get_label_quality_scores
    from noisyseg.audit import get_label_quality_scores
    image_scores, pixel_scores = get_label_quality_scores(labels, pred_probs, method="softmin")

* N - number of images (2D) or volumes (3D)
* K - number of classes
* S - spatial axes, (H, W) or (X, Y, Z)

Written here rather than imported: cleanlab is AGPL-3.0 and numpy-only, noisyseg is
Apache-2.0 and runs confident learning in torch (:mod:`noisyseg.methods.mtcl`). The semantics
follow cleanlab 2.9's documentation and are checked against it in
``tests/audit/test_segmentation_rank.py``. :func:`noisyseg.audit.label_quality` is the other
view of the same signal: error scores, higher = more likely wrong.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError, unknown_name

QUALITY_METHODS = ("softmin", "num_pixel_issues")
_KWARGS = ("downsample", "temperature", "softmin_temperature")


def _check(labels, pred_probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if labels.ndim not in (3, 4) or pred_probs.ndim != labels.ndim + 1:
        raise DataError(f"labels must be (N, H, W) or (N, X, Y, Z) and pred_probs (N, K, *S); got shapes "
                        f"{labels.shape} and {pred_probs.shape}")
    if pred_probs.shape[0] != labels.shape[0] or pred_probs.shape[2:] != labels.shape[1:]:
        raise DataError(f"labels {labels.shape} and pred_probs {pred_probs.shape} must match in N and the "
                        "spatial axes")
    k = pred_probs.shape[1]
    if labels.dtype.kind not in "iub":
        if not np.all(np.isfinite(labels) & (labels == np.round(labels))):
            raise DataError("labels must hold integer class indices")
        labels = labels.astype(np.int64)
    if labels.size and (labels.min() < -1 or labels.max() >= k):
        raise DataError(f"labels must be in 0..{k - 1} (or -1: ignored) for {k} classes, got "
                        f"{int(labels.min())}..{int(labels.max())}")
    if not np.all(np.isfinite(pred_probs)):
        raise DataError("pred_probs hold NaN or Inf")
    return labels.astype(np.int64, copy=False), pred_probs


def _softmin(scores: np.ndarray, temperature: float) -> float:
    """Σ s·softmax((1 − s)/T) over the scored pixels s of one image (NaN when there are none)."""
    s = scores[~np.isnan(scores)].astype(np.float64)
    if not s.size:
        return float("nan")
    z = (1.0 - s) / temperature
    w = np.exp(z - z.max())
    return float((s * w).sum() / w.sum())


def _pool(labels: np.ndarray, pred_probs: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of d per spatial axis: mean probabilities and the majority annotated label (-1 for
    a block without annotated pixels; ties to the lower class)."""
    n, k, *s = pred_probs.shape
    dims = len(s)
    split = [n] + [x for size in s for x in (size // d, d)]
    block_axes = tuple(2 + 2 * i for i in range(dims))
    probs = pred_probs.reshape([n, k] + split[1:]).mean(axis=tuple(a + 1 for a in block_axes))
    votes = np.stack([(labels == c).reshape(split).sum(axis=block_axes) for c in range(k)])
    lab = votes.argmax(0)
    return np.where(votes.sum(0) > 0, lab, -1), probs


def _num_pixel_issues(labels: np.ndarray, pred_probs: np.ndarray, pixel_scores: np.ndarray, d: int,
                      verbose: bool) -> np.ndarray:
    import torch

    from ..methods.mtcl import find_label_issues

    lab_d, prob_d = (labels, pred_probs) if d == 1 else _pool(labels, pred_probs, d)
    k = prob_d.shape[1]
    flat_p = np.moveaxis(prob_d, 1, -1).reshape(-1, k)
    flat_y = lab_d.reshape(-1)
    keep = flat_y >= 0
    p_t = torch.from_numpy(np.ascontiguousarray(flat_p[keep], dtype=np.float64))
    y_t = torch.from_numpy(flat_y[keep])
    n_issues = int(find_label_issues(p_t, y_t, "confident_learning").sum()) if y_t.numel() else 0
    self_conf = p_t.gather(1, y_t.unsqueeze(1)).squeeze(1).numpy()
    worst = np.argsort(self_conf, kind="stable")[:n_issues]  # the lowest self-confidence, ties by position
    flags = np.zeros(flat_y.size, dtype=bool)
    flags[np.flatnonzero(keep)[worst]] = True
    flags = flags.reshape(lab_d.shape)
    valid = labels >= 0
    if d > 1:  # back to full resolution, where the label disagrees with the prediction
        for axis in range(1, labels.ndim):
            flags = flags.repeat(d, axis=axis)
        flags &= labels != pred_probs.argmax(1)
    flags &= valid
    if verbose:
        print(f"num_pixel_issues: {int(flags.sum())} label issues among {int(valid.sum())} pixels")
    n = labels.shape[0]
    counted = valid.reshape(n, -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, 1.0 - flags.reshape(n, -1).sum(1) / counted, np.nan)


def get_label_quality_scores(labels: np.ndarray, pred_probs: np.ndarray, *, method: str = "softmin",
                             batch_size: int | None = None, n_jobs: int | None = None, verbose: bool = True,
                             **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Label quality score of every image and pixel, lower = label more likely wrong (cleanlab's).

    Args:
        labels: (N, H, W) or (N, X, Y, Z) given class indices 0..K-1; -1 marks ignored
            (unannotated) pixels, which get no score.
        pred_probs: (N, K, *S) predicted class probabilities (out-of-sample, as for cleanlab).
        method: "softmin" (Σ s·softmax((1 − s)/T) of the pixel scores s of an image) or
            "num_pixel_issues" (1 − the share of the image's pixels that confident learning over
            the whole dataset flags: the n lowest-self-confidence pixels, n the off-diagonal count
            of the confident joint).
        batch_size, n_jobs: accepted for cleanlab compatibility; the work runs in one torch pass.
        verbose: num_pixel_issues prints the number of flagged pixels.
        **kwargs: ``temperature`` (alias ``softmin_temperature``) T of softmin, default 0.1;
            ``downsample`` d of num_pixel_issues, default 1: confident learning on blocks of d
            pixels per axis (mean probabilities, majority label), flags kept where the pixel's
            label differs from the argmax. cleanlab's default is 1 too (its code; its docstring
            says 16); with d > 1 it rounds the mean class index of a block instead of taking the
            majority label, so the two image scores then agree only approximately.

    Returns:
        (image_scores (N,) float64 in [0, 1], pixel_scores (N, *S) = p(given label), NaN where
        ignored).

    Raises:
        ConfigError: unknown method or keyword argument, downsample not dividing the image.
        DataError: shapes or labels that do not fit.
    """
    if method not in QUALITY_METHODS:
        raise unknown_name("label quality method", method, QUALITY_METHODS)
    unknown = sorted(set(kwargs) - set(_KWARGS))
    if unknown:
        raise ConfigError(f"get_label_quality_scores: unknown keyword '{unknown[0]}' (accepted: {', '.join(_KWARGS)})")
    temperature = float(kwargs.get("temperature", kwargs.get("softmin_temperature", 0.1)))
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    labels, pred_probs = _check(labels, pred_probs)
    given = np.take_along_axis(pred_probs, np.maximum(labels, 0)[:, None], axis=1)[:, 0]
    pixel_scores = np.where(labels < 0, np.nan, given) if labels.size and labels.min() < 0 else given
    if method == "softmin":
        image_scores = np.array([_softmin(s, temperature) for s in pixel_scores], dtype=np.float64)
        return image_scores, pixel_scores
    d = kwargs.get("downsample", 1)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ConfigError(f"downsample must be a positive integer, got {d!r}")
    if any(s % d for s in labels.shape[1:]):
        raise ConfigError(f"downsample {d} must divide every spatial size {labels.shape[1:]}")
    return _num_pixel_issues(labels, pred_probs, pixel_scores, int(d), verbose), pixel_scores
