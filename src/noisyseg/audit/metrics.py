"""Detection metrics of error maps (numpy / scipy only): AUROC, average precision, Spearman."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr


def _flat(truth, scores) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"truth and scores differ in size: {t.size} vs {s.size}")
    return t, s


def auroc(truth, scores) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula; ties count one half.
    NaN when truth holds only one class."""
    t, s = _flat(truth, scores)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(truth, scores) -> float:
    """Average precision Σ (R_n − R_{n−1}) P_n over the distinct score thresholds (highest
    first; tied scores form one threshold), as sklearn's average_precision_score. NaN when
    there is no positive."""
    t, s = _flat(truth, scores)
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # end of each tie group
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def spearman(a, b) -> float:
    """Spearman rank correlation (NaN when either side is constant or has < 2 values)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)
