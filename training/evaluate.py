"""Evaluation shared by ``vfrisk train`` (torch path on the test split) and ``vfrisk evaluate`` (the ONNX
bundle on any labelled cohort): metrics JSON and ROC / reliability / decision-curve plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inference.spec import LEVELS
from training import metrics as M


def level_truth(truths: list[dict[str, Any]], key: str) -> np.ndarray:
    """(N, L) per-level truth values from truth.csv rows (NaN when absent). HU is the bone as imaged:
    ``{level}_hu_enhanced`` where a contrast-enhanced study records it (family B), so that the model learns and is
    judged on the HU in the image and the contrast correction (``inference.contrast``) is applied once, after it."""
    out = np.full((len(truths), len(LEVELS)), np.nan)
    for i, t in enumerate(truths):
        for j, lv in enumerate(LEVELS):
            v = t.get(f"{lv}_{key}_enhanced") if key == "hu" else None
            v = v if v not in (None, "") else t.get(f"{lv}_{key}")
            if v not in (None, ""):
                out[i, j] = float(v)
    return out


def vertebra_metrics(pred_hu: np.ndarray, pred_ratio: np.ndarray, presence: np.ndarray,
                     truths: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-vertebra agreement where the level was found: grade kappa/accuracy, HU and ratio errors."""
    hu, ratio = level_truth(truths, "hu"), level_truth(truths, "height_ratio")
    grade = level_truth(truths, "grade")
    ok = np.isfinite(hu) & (presence > 0.5)
    if not ok.any():
        return {}
    g_pred = M.genant_grade(pred_ratio[ok])
    g_true = grade[ok].astype(int)
    fx_true, fx_pred = g_true > 0, g_pred > 0
    return {
        "levels_scored": int(ok.sum()),
        "grade_accuracy": float(np.mean(g_pred == g_true)),
        "grade_kappa": M.cohen_kappa(g_pred, g_true),
        "fracture_sensitivity": float(np.mean(fx_pred[fx_true])) if fx_true.any() else float("nan"),
        "fracture_specificity": float(np.mean(~fx_pred[~fx_true])) if (~fx_true).any() else float("nan"),
        "hu_mae": float(np.mean(np.abs(pred_hu[ok] - hu[ok]))),
        "hu_bias": float(np.mean(pred_hu[ok] - hu[ok])),
        "height_ratio_mae": float(np.mean(np.abs(pred_ratio[ok] - ratio[ok]))),
        "level_presence_rate": float(np.mean(presence[np.isfinite(hu)] > 0.5)),
    }


def evaluate_predictions(y: np.ndarray, preds: dict[str, np.ndarray], truths: list[dict[str, Any]],
                         n_boot: int, seed: int) -> dict[str, Any]:
    """All metrics for one model on one cohort."""
    p, interval = preds["probability"], preds["interval"]
    out: dict[str, Any] = {"classification": M.classification_metrics(y, p, n_boot, seed),
                           "reliability": M.reliability(y.astype(float), p)}
    out["interval_mean_width"] = float(np.mean(interval[:, 1] - interval[:, 0]))
    if truths and all(t.get("p_true") not in (None, "") for t in truths):
        p_true = np.array([float(t["p_true"]) for t in truths])
        out["vs_truth"] = M.truth_metrics(p, interval, p_true, y)
    if "level_hu" in preds and truths:
        out["vertebrae"] = vertebra_metrics(preds["level_hu"], preds["level_ratio"], preds["level_presence"],
                                            truths)
    return out


def write_plots(out_dir: Path, y: np.ndarray, curves: dict[str, np.ndarray]) -> list[str]:
    """ROC, reliability and decision-curve plots for each named probability vector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p in curves.items():
        order = np.argsort(-p)
        tpr = np.concatenate([[0], np.cumsum(y[order]) / max(1, y.sum())])
        fpr = np.concatenate([[0], np.cumsum(1 - y[order]) / max(1, (1 - y).sum())])
        ax.plot(fpr, tpr, label=f"{label} (AUROC {M.auroc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(fontsize=8)
    names.append(_save(fig, out_dir / "roc.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p in curves.items():
        r = M.reliability(y.astype(float), p)
        ax.plot(r["predicted"], r["observed"], "o-", label=f"{label} (ECE {M.ece(y, p):.3f})")
    top = max(float(np.max(next(iter(curves.values())))), 0.05)
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="Reliability (equal-count bins)")
    ax.legend(fontsize=8)
    names.append(_save(fig, out_dir / "reliability.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    th = np.linspace(0.01, 0.5, 50)
    prev = float(np.mean(y))
    ax.plot(th, prev - (1 - prev) * th / (1 - th), "k--", lw=0.8, label="treat all")
    ax.axhline(0, color="k", lw=0.8, label="treat none")
    for label, p in curves.items():
        ax.plot(th, M.net_benefit(y, p, th), label=label)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title="Decision curve",
           ylim=(-0.02, max(0.02, prev * 1.1)))
    ax.legend(fontsize=8)
    names.append(_save(fig, out_dir / "decision_curve.png"))
    return names


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name
