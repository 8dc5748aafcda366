"""Per field of view: how many bodies the product finds and names, how sure it is, and what it scores or refuses.

``python -m training.fov_check --cohort DIR [--model BUNDLE] [--workers N] [--out FILE]`` runs every study of a
cohort with level truth (``vfrisk synth --fov mixed``: ``{level}_z_mm`` and ``{level}_in_view`` per level,
``fov_kind``) through the product pipeline (:func:`training.evaluate_bundle.score_row`, what ``vfrisk predict``
runs) and prints, per kind of field of view and over all:

- **studies**: total; *eligible* (two or more whole bodies of T10-L5/L6 in view) and how many of them were scored;
  *not eligible* and how many of them were refused (the coverage rule);
- **per vertebra** (every body of T10-L6 and S1 wholly in view): found (a reported body within 10 mm of its
  centre; over all studies, those a ``spine_not_covered`` refusal found among them, and over the *eligible*
  studies the rule must score),
  named right, marked uncertain, and of the names reported as sure (confidence >= 0.9, an anchor of the numbering
  in view, no confident name overruled by the count), how many are right;
- **showing none**: studies with no whole body of T10-L5/L6 in view, and how many were refused;
- **per level**: bodies in view, found, named right;
- the same rates **per contrast phase** where the truth records one (family B's phases; family A's opacified
  vessels as ``enhanced``);
- **risk** on whole (every level T10-S1 of the spine in view) and partial scans: Spearman with the true
  probability (beside the ceiling: a logistic fit on the *true* findings of the levels in view plus the labs,
  two-fold cross-fitted on the same scans), AUROC beside the true probability's, interval coverage of the true
  probability and mean width.

No torch at scoring: ONNX Runtime in worker processes, as ``vfrisk evaluate``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from inference.spec import COUNTED_LEVELS, LEVELS
from training import metrics as M
from training.command import run_check
from training.data import read_manifest, read_truth
from training.evaluate_bundle import Scored, _score_all

FOUND_MM = 10.0
"""A true body counts as found when a reported body lies within this distance of its centre."""


def in_view(truth: dict[str, Any], levels: tuple[str, ...] = LEVELS) -> list[str]:
    """The levels whose whole body is in the scan (the truth's ``{level}_in_view``)."""
    return [lv for lv in levels if str(truth.get(f"{lv}_in_view", "")) == "1"]


def study_counts(truth: dict[str, Any], scored: Scored, levels: tuple[str, ...] = LEVELS) -> dict[str, int]:
    """Per-vertebra counts of one study (of its bodies of ``levels``): bodies in view, found, named right,
    uncertain, and the sure names (with an anchor in view) and how many of them are right."""
    out = dict.fromkeys(("bodies", "found", "named", "uncertain", "sure", "sure_right"), 0)
    pred = scored.predictions[0] if scored.predictions else None
    bodies = scored.refused_found if pred is None else pred.vertebrae  # a refusal's too few bodies count too
    reported = [v for v in bodies if v.present and v.z_mm is not None]
    for lv in in_view(truth, levels):
        zc = float(truth[f"{lv}_z_mm"])
        out["bodies"] += 1
        near = min(reported, key=lambda v: abs(float(v.z_mm or 0) - zc), default=None)
        if near is None or abs(float(near.z_mm or 0) - zc) > FOUND_MM:
            continue
        out["found"] += 1
        out["named"] += near.level == lv
        out["uncertain"] += near.name_uncertain
        if not near.name_uncertain:  # reported as sure: confidence >= SURE, an anchor in view, nothing overruled
            out["sure"] += 1
            out["sure_right"] += near.level == lv
    return out


def _row_features(truth: dict[str, Any], manifest: dict[str, str]) -> list[float]:
    """The ideal fit's features: the *true* findings of the levels in view (reference HU as the model reads it:
    L1, else T12/L2, else the mean; worst grade; fractured count) and the labs."""
    seen = [lv for lv in in_view(truth, COUNTED_LEVELS) if truth.get(f"{lv}_hu") not in (None, "")]
    hu = {lv: float(truth[f"{lv}_hu"]) for lv in seen}
    ref = hu.get("L1") or np.mean([hu[lv] for lv in ("T12", "L2") if lv in hu] or list(hu.values()) or [150.0])
    grades = [int(truth[f"{lv}_grade"]) for lv in seen]
    worst = max(grades, default=0)
    labs = [math.log2(float(manifest["ntx"]) / 40.0), float(manifest["bmd_tscore"]),
            float(manifest.get("age") or 70) / 10.0, float(manifest.get("sex") == "M")]
    return [float(ref) / 35.0, worst == 1, worst == 2, worst == 3, sum(g > 0 for g in grades), len(seen), *labs]


def ideal_spearman(feats: np.ndarray, p_true: np.ndarray) -> float:
    """Spearman with the true probability of an ideal fit on the same scans: a least-squares fit of the true
    logit on the *true* findings in view and the labs, two-fold cross-fitted (each half scored by the fit on the
    other half). What is not in view (a fracture below the field) limits it, as it limits the model."""
    n = len(p_true)
    if n < 20:
        return float("nan")
    target = np.log(p_true / (1 - p_true))
    x = np.c_[feats, np.ones(n)]
    part = np.arange(n) % 2 == 0
    q = np.zeros(n)
    for p in (part, ~part):
        w, *_ = np.linalg.lstsq(x[~p], target[~p], rcond=None)
        q[p] = x[p] @ w
    return M.spearman(q, p_true)


def risk_metrics(rows: list[tuple[dict[str, str], dict[str, Any], Scored]]) -> dict[str, Any]:
    """Spearman (with the ideal fit's beside it), AUROC beside the true probability's, interval coverage and mean
    width on the scored studies of ``rows``."""
    kept = [(m, t, s.predictions[0]) for m, t, s in rows if s.predictions]
    if len(kept) < 10:
        return {"scored": len(kept)}
    p = np.array([pr.probability for _, _, pr in kept])
    iv = np.array([pr.interval for _, _, pr in kept])
    pt = np.array([float(t["p_true"]) for _, t, _ in kept])
    y = np.array([int(m["fracture_6m"]) for m, _, _ in kept])
    feats = np.array([_row_features(t, m) for m, t, _ in kept], dtype=np.float64)
    auc = M.auroc(y, p) if 0 < y.sum() < len(y) else float("nan")
    auc_true = M.auroc(y, pt) if 0 < y.sum() < len(y) else float("nan")
    return {"scored": len(kept), "spearman_vs_p_true": round(M.spearman(p, pt), 4),
            "ideal_fit_spearman": round(ideal_spearman(feats, pt), 4),
            "auroc": round(auc, 4), "auroc_p_true": round(auc_true, 4),
            "auroc_ratio": round(auc / auc_true, 4) if auc_true > 0 else float("nan"),
            "interval_coverage": round(float(np.mean((iv[:, 0] <= pt) & (pt <= iv[:, 1]))), 4),
            "interval_mean_width": round(float(np.mean(iv[:, 1] - iv[:, 0])), 4)}


def is_whole(truth: dict[str, Any]) -> bool:
    """Every level of the spine from T10 to S1 wholly in view."""
    have = [lv for lv in LEVELS if str(truth.get(f"{lv}_in_view", "")) != ""]
    return bool(have) and all(str(truth[f"{lv}_in_view"]) == "1" for lv in have)


def summarise(rows: list[tuple[dict[str, str], dict[str, Any], Scored]]) -> dict[str, Any]:
    """Study and per-vertebra rates of ``rows`` (manifest row, truth row, pipeline outcome)."""
    eligible = [(m, t, s) for m, t, s in rows if len(in_view(t, COUNTED_LEVELS)) >= 2]
    others = [(m, t, s) for m, t, s in rows if len(in_view(t, COUNTED_LEVELS)) < 2]
    counts = dict.fromkeys(("bodies", "found", "named", "uncertain", "sure", "sure_right"), 0)
    for _, t, s in rows:
        for k, v in study_counts(t, s).items():
            counts[k] += v
    in_eligible = dict.fromkeys(("bodies", "found"), 0)
    for _, t, s in eligible:
        c = study_counts(t, s)
        in_eligible["bodies"] += c["bodies"]
        in_eligible["found"] += c["found"]
    nothing = [s for _, t, s in others if not in_view(t, COUNTED_LEVELS)]

    def rate(a: int, b: int) -> float:
        return round(a / b, 4) if b else float("nan")

    return {
        "studies": len(rows),
        "eligible": len(eligible), "eligible_scored": sum(bool(s.predictions) for _, _, s in eligible),
        "eligible_scored_rate": rate(sum(bool(s.predictions) for _, _, s in eligible), len(eligible)),
        "not_eligible": len(others), "not_eligible_refused": sum(bool(s.refusal) for _, _, s in others),
        "not_eligible_refused_rate": rate(sum(bool(s.refusal) for _, _, s in others), len(others)),
        "none_in_view": len(nothing), "none_in_view_refused": sum(bool(s.refusal) for s in nothing),
        "none_in_view_refused_rate": rate(sum(bool(s.refusal) for s in nothing), len(nothing)),
        "bodies_in_view": counts["bodies"], "found_rate": rate(counts["found"], counts["bodies"]),
        "bodies_in_eligible": in_eligible["bodies"],
        "found_rate_eligible": rate(in_eligible["found"], in_eligible["bodies"]),
        "named_right_rate": rate(counts["named"], counts["found"]),
        "uncertain_rate": rate(counts["uncertain"], counts["found"]),
        "sure_names": counts["sure"], "sure_right_rate": rate(counts["sure_right"], counts["sure"]),
        "refusals": sorted({s.refusal.split(":", 1)[0] for _, _, s in rows if s.refusal}),
    }


def by_level(rows: list[tuple[dict[str, str], dict[str, Any], Scored]]) -> dict[str, dict[str, Any]]:
    """Per level of T10-S1 (and an L6) wholly in view in ``rows``: bodies, found, named right of those found."""
    out: dict[str, dict[str, Any]] = {}
    for lv in LEVELS:
        c = dict.fromkeys(("bodies", "found", "named"), 0)
        for _, t, s in rows:
            for k, v in study_counts(t, s, (lv,)).items():
                if k in c:
                    c[k] += v
        if c["bodies"]:
            out[lv] = {"bodies": c["bodies"], "found_rate": round(c["found"] / c["bodies"], 4),
                       "named_right_rate": round(c["named"] / c["found"], 4) if c["found"] else float("nan")}
    return out


def contrast_phase(t: dict[str, Any]) -> str | None:
    """The study's contrast phase from its truth: family B's ``contrast_phase``, family A's ``contrast`` (1:
    ``enhanced``, 0: ``none``), None where the truth records neither."""
    phase = t.get("contrast_phase")
    if phase:
        return str(phase)
    return {"1": "enhanced", "0": "none"}.get(str(t.get("contrast", "")))


def check(cohort: Path, model: Path | None = None, workers: int = 0, limit: int = 0) -> dict[str, Any]:
    """The per-field-of-view table (see the module docstring); the first ``limit`` studies when given."""
    manifest = read_manifest(cohort)
    if limit:
        manifest = manifest[:limit]
    truth = read_truth(cohort)
    if not truth or "fov_kind" not in next(iter(truth.values())):
        raise SystemExit("error: the cohort has no field-of-view truth (make it with vfrisk synth --fov mixed)")
    results = _score_all(cohort, manifest, (str(model or ""),), workers)
    rows = [(m, truth[m["study"]], s) for m, s in zip(manifest, results, strict=True)]
    kinds = sorted({t["fov_kind"] for _, t, _ in rows})
    out: dict[str, Any] = {"cohort": cohort.name, "studies_checked": len(rows), "model": next(
        (s.predictions[0].model.to_json() for _, _, s in rows if s.predictions), None)}
    out["by_kind"] = {k: summarise([r for r in rows if r[1]["fov_kind"] == k]) for k in kinds}
    phases = sorted({p for _, t, _ in rows if (p := contrast_phase(t))})
    if phases:
        out["by_phase"] = {p: summarise([r for r in rows if contrast_phase(r[1]) == p]) for p in phases}
    out["all"] = summarise(rows)
    out["by_level"] = by_level(rows)
    anchored = [r for r in rows if "S1" in in_view(r[1]) or {"T12", "L1"} <= set(in_view(r[1]))]
    out["anchor_in_view"] = summarise(anchored)
    out["transitional"] = summarise([r for r in rows if str(r[1].get("transitional")) == "1"])
    whole = [r for r in rows if is_whole(r[1])]
    partial = [r for r in rows if not is_whole(r[1]) and len(in_view(r[1], COUNTED_LEVELS)) >= 2]
    out["risk"] = {"whole": risk_metrics(whole), "partial": risk_metrics(partial)}
    return out


def print_table(result: dict[str, Any]) -> None:
    """The table on stdout."""
    cols = ("studies", "eligible_scored_rate", "not_eligible_refused_rate", "none_in_view_refused_rate",
            "bodies_in_view", "found_rate", "found_rate_eligible", "named_right_rate", "uncertain_rate", "sure_names",
            "sure_right_rate")
    print(f"{'field of view':16s} " + " ".join(f"{c[:14]:>14s}" for c in cols))
    phases = [(f"contrast {p}", row) for p, row in result.get("by_phase", {}).items()]
    for name, row in [*result["by_kind"].items(), ("ALL", result["all"]), ("anchor in view", result["anchor_in_view"]),
                      ("transitional", result["transitional"]), *phases]:
        print(f"{name:16s} " + " ".join(f"{row[c]:>14}" for c in cols))
    if "by_level" in result:
        print("found per level: " + ", ".join(f"{lv} {100 * r['found_rate']:.1f} % of {r['bodies']}"
                                              for lv, r in result["by_level"].items()))
    for name, r in result["risk"].items():
        print(f"risk {name}: " + json.dumps(r))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="only the first N studies of the manifest")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    run_check(lambda: check(args.cohort, args.model, args.workers, args.limit), print_table, args.out)


if __name__ == "__main__":
    main()

