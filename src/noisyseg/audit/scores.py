"""Label-quality scores from predicted class probabilities, shaped like cleanlab's API.

    scores_per_case, scores_per_voxel = label_quality(labels, probs, method="self_confidence")

Convention (unlike cleanlab, where high means *good*): every score here is an **error score**
in [0, 1], higher = the given label is more likely wrong. A voxel is *suspected* when its
score exceeds 0.5.

Voxel methods (p = predicted probabilities, ỹ = given label):
    self_confidence: 1 − p(ỹ). Suspected ⇔ p(ỹ) < 0.5.
    margin: (1 + max_{k≠ỹ} p(k) − p(ỹ)) / 2. Suspected ⇔ another class beats ỹ (argmax ≠ ỹ).
    threshold: CLCS-style per-class thresholds T: T(ỹ) / (T(ỹ) + p(ỹ)). Suspected ⇔ p(ỹ) < T(ỹ),
        i.e. exactly the voxels CLCS's clean-pixel selection rejects. T defaults to the
        confident-learning thresholds: the mean p(c) over the voxels labelled c (all cases
        together); a class with T = 0 never suspects a voxel.

Ignored (unannotated) voxels, label -1 (nnU-Net's "ignore"), get no score (NaN) and take no
part in thresholds or case scores.

Case aggregations (the per-case score):
    suspected_fraction (default): share of the case's voxels that are suspected; comparable
        to the changed fraction of a noisy label.
    mean_topk: mean of the top `top_percent` % voxel scores (at least one voxel); insensitive
        to the background's size, like cleanlab's soft-min pooling.
    mean: the mean voxel score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError, unknown_name

VOXEL_METHODS = ("self_confidence", "margin", "threshold")
CASE_SCORES = ("suspected_fraction", "mean_topk", "mean")
SUSPECT_LEVEL = 0.5


def _as_lists(labels, probs) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """Labels and probs as lists of per-case arrays; True if a single case was given."""
    single = False
    if isinstance(labels, np.ndarray) and isinstance(probs, np.ndarray):
        if probs.ndim == labels.ndim + 1 and probs.shape[1:] == labels.shape:  # one case
            labels, probs, single = [labels], [probs], True
        elif (probs.ndim == labels.ndim + 1 and labels.ndim >= 3 and probs.shape[0] == labels.shape[0]
              and probs.shape[2:] == labels.shape[1:]):  # a stacked batch (N, *S), (N, K, *S)
            labels, probs = list(labels), list(probs)
        else:
            raise DataError(f"probs shape {probs.shape} matches neither (K, *S) nor (N, K, *S) for "
                            f"labels of shape {labels.shape}")
    labels, probs = list(labels), list(probs)
    if len(labels) != len(probs):
        raise DataError(f"got {len(labels)} labels but {len(probs)} probability maps")
    if not labels:
        raise DataError("no cases to score")
    out_l, out_p = [], []
    k = None
    for i, (lab, p) in enumerate(zip(labels, probs)):
        lab, p = np.asarray(lab), np.asarray(p, dtype=np.float64)
        if p.ndim != lab.ndim + 1 or p.shape[1:] != lab.shape:
            raise DataError(f"case {i}: probs shape {p.shape} does not match label shape {lab.shape} as (K, *S)")
        if k is None:
            k = p.shape[0]
        elif p.shape[0] != k:
            raise DataError(f"case {i}: {p.shape[0]} classes in probs, earlier cases have {k}")
        if lab.dtype.kind not in "iub" and not np.all(np.isfinite(lab) & (lab == np.round(lab))):
            raise DataError(f"case {i}: label holds non-integer values")
        lab = lab.astype(np.int64)
        if lab.size and (lab.min() < -1 or lab.max() >= k):
            raise DataError(f"case {i}: label values must be in [0, {k - 1}] (or -1: ignored) for {k} classes, "
                            f"got [{lab.min()}, {lab.max()}]")
        if not np.all(np.isfinite(p)):
            raise DataError(f"case {i}: probs hold NaN or Inf")
        out_l.append(lab)
        out_p.append(p)
    return out_l, out_p, single


def given_probability(label: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """p(ỹ) per voxel (*S) from a label (*S) and probs (K, *S); NaN where the label is -1 (ignored)."""
    pg = np.take_along_axis(probs, np.maximum(label, 0)[None], axis=0)[0]
    return np.where(label < 0, np.nan, pg) if label.size and label.min() < 0 else pg


def class_thresholds(labels: Sequence[np.ndarray], probs: Sequence[np.ndarray]) -> np.ndarray:
    """Confident-learning per-class thresholds (K,): mean p(c) over all voxels labelled c
    (0 for a class no voxel carries)."""
    k = probs[0].shape[0]
    sums, counts = np.zeros(k), np.zeros(k)
    for lab, p in zip(labels, probs):
        keep = lab.reshape(-1) >= 0
        pg = given_probability(lab, p).reshape(-1)[keep]
        sums += np.bincount(lab.reshape(-1)[keep], weights=pg, minlength=k)
        counts += np.bincount(lab.reshape(-1)[keep], minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def voxel_scores(label: np.ndarray, probs: np.ndarray, method: str,
                 thresholds: np.ndarray | None = None) -> np.ndarray:
    """Error score per voxel (*S) in [0, 1] of one case (see the module doc); NaN where ignored."""
    ignored = label < 0
    label = np.maximum(label, 0)
    pg = given_probability(label, probs)
    if method == "self_confidence":
        s = 1.0 - pg
    elif method == "margin":
        others = probs.copy()
        np.put_along_axis(others, label[None], -np.inf, axis=0)
        s = 0.5 * (1.0 + others.max(axis=0) - pg)
    elif method == "threshold":
        if thresholds is None:
            raise ConfigError("method 'threshold' needs per-class thresholds")
        t = np.asarray(thresholds, dtype=np.float64)[label]
        s = np.where(t > 0, t / np.maximum(t + pg, 1e-12), 0.0)
    else:
        raise unknown_name("label-quality method", method, VOXEL_METHODS)
    s = np.clip(s, 0.0, 1.0)
    return np.where(ignored, np.nan, s).astype(np.float32)


def check_case_score(how: str, top_percent: float) -> None:
    """ConfigError (with a suggestion) for an unknown case score or a top_percent outside (0, 100]."""
    if how not in CASE_SCORES:
        raise unknown_name("case score", how, CASE_SCORES)
    if not 0 < top_percent <= 100:
        raise ConfigError(f"top_percent must be in (0, 100], got {top_percent}")


def case_score(scores: np.ndarray, how: str = "suspected_fraction", top_percent: float = 1.0) -> float:
    """One error score per case from its voxel scores (see the module doc); NaN voxels (ignored)
    are left out, and a case without any scored voxel scores NaN."""
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    flat = flat[~np.isnan(flat)]
    if not flat.size:
        return float("nan")
    if how == "suspected_fraction":
        return float(np.mean(flat > SUSPECT_LEVEL))
    if how == "mean":
        return float(flat.mean())
    if how == "mean_topk":
        n = max(1, int(np.ceil(flat.size * top_percent / 100.0)))
        return float(np.partition(flat, flat.size - n)[flat.size - n:].mean())
    raise unknown_name("case score", how, CASE_SCORES)


def label_quality(labels, probs, *, method: str = "self_confidence", case_score_method: str = "suspected_fraction",
                  top_percent: float = 1.0, thresholds: Sequence[float] | np.ndarray | None = None):
    """Error scores of given labels from predicted probabilities, per case and per voxel.

    Args:
        labels: one label (*S) of class indices, a stacked batch (N, *S), or a list of (*S)
            arrays (2D or 3D; cases may differ in shape).
        probs: matching probabilities: (K, *S), (N, K, *S) or a list of (K, *S).
        method: self_confidence, margin or threshold (see the module doc).
        case_score_method: suspected_fraction, mean_topk or mean.
        top_percent: for mean_topk, the share (%) of highest voxel scores averaged.
        thresholds: for method threshold, per-class thresholds (K,) (e.g. CLCS's T);
            default: the confident-learning class means.
    Returns:
        (scores_per_case (N,) float64, scores_per_voxel): a list of float32 arrays (*S) in
        [0, 1], higher = more likely wrong; for a single case the voxel scores are one array
        and the case scores have length 1.
    """
    if method not in VOXEL_METHODS:
        raise unknown_name("label-quality method", method, VOXEL_METHODS)
    check_case_score(case_score_method, top_percent)
    labs, ps, single = _as_lists(labels, probs)
    thr = None
    if method == "threshold":
        k = ps[0].shape[0]
        thr = class_thresholds(labs, ps) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if thr.shape != (k,) or not np.all(np.isfinite(thr)) or np.any(thr < 0):
            raise ConfigError(f"thresholds must be {k} finite non-negative values, got {np.asarray(thresholds).tolist()}")
    vox = [voxel_scores(l, p, method, thr) for l, p in zip(labs, ps)]
    cases = np.array([case_score(v, case_score_method, top_percent) for v in vox], dtype=np.float64)
    return cases, (vox[0] if single else vox)
