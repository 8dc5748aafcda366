"""Evaluation metrics (numpy only): discrimination, calibration, intervals, per-vertebra agreement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from inference.thresholds import genant_grade as grade_of


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged)."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = _rank(np.asarray(p, dtype=float))
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _rank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(uniq) < len(x):
        sums = np.bincount(inv, weights=ranks)
        ranks = (sums / counts)[inv]
    return ranks


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step interpolation)."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=float), kind="mergesort")
    hits = y[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Equal-count bins: mean predicted, observed rate and count per bin."""
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, bins)
    return {
        "predicted": [float(np.mean(p[g])) for g in groups if len(g)],
        "observed": [float(np.mean(y[g])) for g in groups if len(g)],
        "count": [len(g) for g in groups if len(g)],
    }


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins."""
    r = reliability(np.asarray(y, dtype=float), np.asarray(p, dtype=float), bins)
    n = sum(r["count"])
    return float(sum(c * abs(a - b) for a, b, c in zip(r["predicted"], r["observed"], r["count"], strict=True)) / n)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation."""
    return float(np.corrcoef(_rank(np.asarray(a, float)), _rank(np.asarray(b, float)))[0, 1])


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decision-curve net benefit at each threshold probability."""
    y = np.asarray(y).astype(bool)
    n = len(y)
    out = []
    for t in thresholds:
        treat = p >= t
        tp, fp = np.sum(treat & y), np.sum(treat & ~y)
        out.append(tp / n - fp / n * t / (1 - t))
    return np.array(out)


def bootstrap_ci(fn: Callable[..., float], arrays: list[np.ndarray], n: int, seed: int,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(*arrays)`` over resampled rows."""
    rng = np.random.default_rng(seed)
    m = len(arrays[0])
    vals = []
    for _ in range(n):
        idx = rng.integers(0, m, m)
        v = fn(*[a[idx] for a in arrays])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def genant_grade(ratio: np.ndarray) -> np.ndarray:
    """Genant grade of every height ratio of an array (:func:`inference.thresholds.genant_grade`)."""
    r = np.asarray(ratio, dtype=float)
    return np.array([grade_of(float(x)) for x in r.ravel()], dtype=int).reshape(r.shape)


def cohen_kappa(a: np.ndarray, b: np.ndarray, k: int = 4) -> float:
    """Unweighted Cohen's kappa of two integer ratings in 0..k-1."""
    m = np.zeros((k, k))
    for i, j in zip(a.astype(int), b.astype(int), strict=True):
        m[i, j] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = (m.sum(0) * m.sum(1)).sum() / n**2
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def classification_metrics(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUROC and AUPRC with bootstrap intervals, Brier, ECE, N and events."""
    return {
        "n": len(y), "events": int(np.sum(y)),
        "auroc": auroc(y, p), "auroc_ci95": bootstrap_ci(auroc, [y, p], n_boot, seed),
        "auprc": auprc(y, p), "auprc_ci95": bootstrap_ci(auprc, [y, p], n_boot, seed + 1),
        "brier": brier(y, p), "brier_ci95": bootstrap_ci(brier, [y, p], n_boot, seed + 2),
        "ece": ece(y, p),
    }


def truth_metrics(p: np.ndarray, interval: np.ndarray, p_true: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Against the generator's true probability (synthetic cohorts only)."""
    return {
        "spearman_vs_p_true": spearman(p, p_true),
        "auroc_p_true": auroc(y, p_true),
        "auroc_ratio_vs_p_true": auroc(y, p) / auroc(y, p_true),
        "interval_coverage_of_p_true": float(np.mean((interval[:, 0] <= p_true) & (p_true <= interval[:, 1]))),
        "mean_abs_error_vs_p_true": float(np.mean(np.abs(p - p_true))),
    }
