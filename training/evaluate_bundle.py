"""``vfrisk evaluate``: score a labelled cohort with a model bundle (the ONNX path users run) and write the
metrics JSON and plots. Reading and cropping run in worker processes; the ONNX session runs here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inference.crop import Crop, spine_crop
from inference.errors import InputError
from inference.spec import PreprocessSpec
from inference.workers import init_worker
from training.data import read_manifest, read_truth
from training.evaluate import evaluate_predictions, write_plots


def _read_and_crop(args: tuple[str, dict[str, Any]]) -> tuple[Crop | None, int | None, str | None, str]:
    """Worker: load and crop one study; errors come back as a one-line reason."""
    from inference.io import load_any

    path, spec_d = args
    try:
        study = load_any(Path(path))
    except InputError as exc:
        return None, None, None, exc.one_line()
    return spine_crop(study, PreprocessSpec.from_dict(spec_d)), study.age, study.sex, ""


def evaluate_bundle(model: Path | None, cohort: Path, out: Path, workers: int = 0, n_boot: int = 1000,
                    compare: list[Path] | None = None) -> dict[str, Any]:
    """Metrics of a bundle on a cohort with ``fracture_6m`` labels (and truth.csv when synthetic).

    ``compare`` bundles (baselines) are scored on the same decoded studies; ``versus`` then gives each one's
    metrics and the paired bootstrap interval of the differences (model minus baseline) in AUROC and Brier.
    """
    from inference.engine import OUTPUTS, Engine
    from inference.labs import Labs

    engine = Engine(model)
    others = {p.name: Engine(p) for p in compare or []}
    other_p: dict[str, list[float]] = {name: [] for name in others}
    rows = read_manifest(cohort)
    if "fracture_6m" not in rows[0]:
        raise InputError("bad_cohort", "the manifest has no fracture_6m column to evaluate against")
    truth = read_truth(cohort)
    jobs = [(str(cohort / r["study"]), engine.spec.to_dict()) for r in rows]
    collected: dict[str, list[Any]] = {k: [] for k in OUTPUTS}
    labels, truths, errors = [], [], {}
    n = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(os.getpid(),)) as pool:
        for row, (crop, age, sex, err) in tqdm(zip(rows, pool.map(_read_and_crop, jobs, chunksize=2), strict=True),
                                               total=len(rows), desc="evaluate", unit="study"):
            if crop is None:
                errors[row["study"]] = err
                continue
            labs = Labs(float(row["ntx"]), float(row["bmd_tscore"]), float(row["age"] or age or 0),
                        row["sex"] or sex or "F")
            outputs = engine.run(crop, labs)
            for name, other in others.items():
                other_p[name].append(float(other.run(crop, labs)["probability"]))
            for k in OUTPUTS:
                collected[k].append(outputs[k])
            labels.append(int(row["fracture_6m"]))
            truths.append(truth.get(row["study"], {}))
    if len(labels) < 2:
        raise InputError("bad_cohort", "fewer than 2 studies could be scored")
    preds = {"probability": np.array(collected["probability"]), "interval": np.array(collected["interval"]),
             "level_hu": np.array(collected["level_hu"]), "level_ratio": np.array(collected["level_height_ratio"]),
             "level_presence": np.array(collected["level_presence"])}
    y = np.array(labels)
    metrics = evaluate_predictions(y, preds, truths, n_boot, seed=0)
    metrics |= {"model": engine.bundle.identity, "cohort": cohort.name, "scored": len(labels),
                "errors": errors}
    if others:
        metrics["versus"] = {name: versus(y, preds["probability"], np.array(p), n_boot)
                             for name, p in other_p.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_plots(out / "plots", y, {"model": preds["probability"]} | {n: np.array(p) for n, p in other_p.items()})
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
