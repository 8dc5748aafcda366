"""``vfrisk evaluate``: score a labelled cohort through the product's own pipeline and write the metrics JSON and
plots.

Each study goes through :func:`inference.pipeline.score_source`, exactly what ``vfrisk predict`` runs: the reader,
the one lab validator (age and sex from the header unless the manifest gives them, never filled with a default),
the re-centred crop, the level check, the measurement and the ``spine_not_covered`` refusal. A refused study is
counted by its reason and left out of the metrics, which state n scored / n total. Reading and scoring run in
worker processes, each with its own single-threaded ONNX Runtime session per bundle.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inference.errors import InputError
from inference.findings import NotCoveredError, Vertebra
from inference.result import Prediction
from inference.spec import LEVELS
from inference.workers import init_worker
from training.data import read_manifest, read_truth
from training.evaluate import evaluate_predictions, write_plots

_ENGINES: dict[str, Any] = {}


@dataclass(frozen=True)
class Scored:
    """One manifest row through the pipeline: the model's prediction and the baselines' probabilities, or a
    refusal."""

    study: str
    predictions: tuple[Prediction, ...] = ()
    baselines: tuple[float, ...] = ()
    """Each baseline bundle's probability for the same study."""
    refusal: str = ""
    """One line ``code: message`` when the pipeline refused the study."""
    refused_found: tuple[Vertebra, ...] = ()
    """The bodies a ``spine_not_covered`` refusal found (too few to score): where they are and their names."""


def _engine(bundle: str) -> Any:
    from inference.engine import Engine

    if bundle not in _ENGINES:
        _ENGINES[bundle] = Engine(Path(bundle) if bundle else None, threads=1)
    return _ENGINES[bundle]


def score_row(args: tuple[str, str, dict[str, str], tuple[str, ...]]) -> Scored:
    """Worker: the product pipeline on one manifest row with the model; each baseline bundle's probability on the
    same study and labs (its own located crop; the product's refusal rules are the model's, not the baseline's)."""
    from inference.labs import LabInput, resolve_labs
    from inference.pipeline import read_study, score_study

    path, key, row, bundles = args
    try:
        given = LabInput.from_cells(row)
        study = read_study(Path(path))
        prediction = score_study(study, given, _engine(bundles[0]))
    except NotCoveredError as exc:
        return Scored(key, refusal=exc.one_line(), refused_found=exc.found)
    except InputError as exc:
        return Scored(key, refusal=exc.one_line())
    baselines = []
    for bundle in bundles[1:]:
        engine = _engine(bundle)
        _, out = engine.locate(study, resolve_labs(given, study, engine.lab_ranges))
        baselines.append(float(out["probability"]))
    return Scored(key, (prediction,), tuple(baselines))


def level_arrays(predictions: list[Prediction]) -> dict[str, np.ndarray]:
    """(N, L) learned HU, height ratio and presence per level of :data:`inference.spec.LEVELS` (NaN/0 where a
    level was not found)."""
    hu = np.full((len(predictions), len(LEVELS)), np.nan)
    ratio, presence = hu.copy(), np.zeros_like(hu)
    index = {lv: j for j, lv in enumerate(LEVELS)}
    for i, pred in enumerate(predictions):
        for v in pred.found_levels():
            j = index[v.level]
            presence[i, j] = 1.0
            hu[i, j] = np.nan if v.trabecular_hu is None else v.trabecular_hu
            ratio[i, j] = np.nan if v.height_ratio is None else v.height_ratio
    return {"level_hu": hu, "level_ratio": ratio, "level_presence": presence}


def _score_all(cohort: Path, rows: list[dict[str, str]], bundles: tuple[str, ...], workers: int) -> list[Scored]:
    jobs = [(str(cohort / r["study"]), r["study"], r, bundles) for r in rows]
    n = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(os.getpid(),)) as pool:
        return list(tqdm(pool.map(score_row, jobs, chunksize=2), total=len(jobs), desc="evaluate", unit="study"))


def evaluate_bundle(model: Path | None, cohort: Path, out: Path, workers: int = 0, n_boot: int = 1000,
                    compare: list[Path] | None = None) -> dict[str, Any]:
    """Metrics of a bundle on a cohort with ``fracture_6m`` labels (and truth.csv when synthetic), from the
    product pipeline; refused studies are counted by reason (``scored`` of ``total``).

    ``compare`` bundles (baselines) go through the same pipeline on the same studies; ``versus`` then gives each
    one's metrics and the paired bootstrap interval of the differences (model minus baseline) in AUROC and Brier,
    on the studies every bundle scored.
    """
    rows = read_manifest(cohort)
    if "fracture_6m" not in rows[0]:
        raise InputError("bad_cohort", "the manifest has no fracture_6m column to evaluate against")
    truth = read_truth(cohort)
    bundles = (str(model or ""), *(str(p) for p in compare or []))
    results = _score_all(cohort, rows, bundles, workers)
    kept = [(row, r) for row, r in zip(rows, results, strict=True) if not r.refusal]
    if len(kept) < 2:
        raise InputError("bad_cohort", f"fewer than 2 of {len(rows)} studies could be scored")
    main = [r.predictions[0] for _, r in kept]
    preds = {"probability": np.array([p.probability for p in main]),
             "interval": np.array([p.interval for p in main])} | level_arrays(main)
    y = np.array([int(row["fracture_6m"]) for row, _ in kept])
    metrics = evaluate_predictions(y, preds, [truth.get(row["study"], {}) for row, _ in kept], n_boot, seed=0)
    refused = {f"row {i + 2}: {r.study}": r.refusal for i, r in enumerate(results) if r.refusal}  # CSV line
    metrics |= {"model": main[0].model.to_json(), "cohort": cohort.name, "total": len(rows), "scored": len(kept),
                "refused": len(refused), "refusals_by_reason": dict(Counter(v.split(":", 1)[0]
                                                                            for v in refused.values())),
                "errors": refused}
    others = {Path(b).name: np.array([r.baselines[k] for _, r in kept]) for k, b in enumerate(bundles[1:])}
    if others:
        metrics["versus"] = {name: versus(y, preds["probability"], p, n_boot) for name, p in others.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_plots(out / "plots", y, {"model": preds["probability"]} | others)
    return metrics


def versus(y: np.ndarray, p: np.ndarray, q: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """Baseline metrics and paired bootstrap 95 % intervals of (model - baseline) AUROC and Brier."""
    from training import metrics as M

    rng = np.random.default_rng(seed)
    d_auc, d_brier = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            d_auc.append(M.auroc(y[i], p[i]) - M.auroc(y[i], q[i]))
            d_brier.append(M.brier(y[i], p[i]) - M.brier(y[i], q[i]))
    return {
        "baseline": M.classification_metrics(y, q, n_boot, seed),
        "delta_auroc": M.auroc(y, p) - M.auroc(y, q),
        "delta_auroc_ci95": [float(v) for v in np.quantile(d_auc, [0.025, 0.975])],
        "delta_brier": M.brier(y, p) - M.brier(y, q),
        "delta_brier_ci95": [float(v) for v in np.quantile(d_brier, [0.025, 0.975])],
    }
