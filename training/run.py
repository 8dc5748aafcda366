"""Orchestration of ``vfrisk train``: the run folder (config, log, history, checkpoint, metrics, plots,
run report) written from typed stage results.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.batch.report import library_versions as batch_library_versions
from inference.spec import PreprocessSpec
from models.full import ARCH_VERSION, VfriskModel
from training.config import TrainConfig
from training.data import read_manifest
from training.distributed import DistInfo, barrier, finish, init_distributed
from training.evaluate import evaluate_predictions, write_plots
from training.tracking import require_mlflow, track_run
from training.train import (
    finding_errors,
    fit_all_heads,
    load_splits,
    pick_device,
    predict_split,
    recalibrate_norm,
    seed_everything,
    timed,
    train_image_net,
)

log = logging.getLogger("vfrisk.train")
LIBRARIES = ("torch", "monai", "numpy", "pydicom", "onnx", "onnxruntime", "vfrisk")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a training run depends on."""
    return batch_library_versions(LIBRARIES)


def build_run_report(cfg: TrainConfig, device: torch.device, counts: dict[str, int], timings: dict[str, float],
                     metrics: dict[str, Any], cohort: Path | Sequence[Path]) -> dict[str, Any]:
    """Pure function: what was run, where, on what, how long, with what result."""
    fused = metrics["fused"]["classification"]
    return {
        "command": " ".join(sys.argv), "cohort": " + ".join(c.name for c in _cohorts(cohort)), "device": str(device),
        "threads": torch.get_num_threads(), "versions": library_versions(), "config": cfg.to_dict(),
        "counts": counts, "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "headline": {"test_auroc": fused["auroc"], "test_brier": fused["brier"], "test_ece": fused["ece"],
                     **metrics["fused"].get("vs_truth", {})},
    }


def _setup_logging(out: Path) -> None:
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("vfrisk")
    root.setLevel(logging.INFO)
    root.addHandler(handler)


def _cohorts(cohort: Path | Sequence[Path]) -> list[Path]:
    """One cohort or several, as a list."""
    return [cohort] if isinstance(cohort, Path) else list(cohort)


def train_run(cohort: Path | Sequence[Path], out: Path, config: Path | None, seed: int | None = None) -> dict[str, Any]:
    """Train, calibrate and evaluate on one cohort or a mixture of several; write the run folder; return the run
    report. ``seed``, when given, replaces the config's (the initial weights, every augmentation draw, and the
    patient split unless the config sets ``split_seed``): the same settings with several seeds show the spread
    between runs.

    Under ``torchrun`` every process trains the image network on its shard; the first one alone decodes the
    cache, writes the run folder and fits the heads; the others return an empty report."""
    cfg = TrainConfig.load(config)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    for c in _cohorts(cohort):
        read_manifest(c)  # refuse a missing or malformed cohort before anything is written
    require_mlflow(cfg.mlflow_uri)
    info = init_distributed(cfg.device)
    try:
        return _train(cohort, out, cfg, info)
    finally:
        finish(info)


RESUME = "resume.pt"
"""The image network's state after the last finished epoch, while a run is in progress."""


def cache_run(cohort: Path | Sequence[Path], config: Path | None) -> dict[str, Any]:
    """Decode every study of the cohort(s) into the training cache and stop (the first, resumable stage of
    ``make default-model``: a killed run keeps the studies it cached); returns the counts."""
    from training.data import build_cache, read_truth

    cfg = TrainConfig.load(config)
    cohorts = _cohorts(cohort)
    cached = failed = 0
    caches = []
    for c in cohorts:
        rows = read_manifest(c)
        if cfg.max_studies:
            rows = rows[: cfg.max_studies]
        cache = Path(cfg.cache_dir) / c.name if cfg.cache_dir and len(cohorts) > 1 else (
            Path(cfg.cache_dir) if cfg.cache_dir else c / ".vfrisk-cache")
        metas = build_cache(c, rows, read_truth(c), PreprocessSpec(), cache, cfg.workers)
        bad = sum("error" in m for m in metas)
        cached, failed = cached + len(metas) - bad, failed + bad
        caches.append(str(cache))
    return {"headline": {"cached": cached, "refused_by_reader": failed,
                         "cache": caches[0] if len(caches) == 1 else caches}}


def _train(cohort: Path | Sequence[Path], out: Path, cfg: TrainConfig, info: DistInfo) -> dict[str, Any]:
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        _setup_logging(out)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    seed_everything(cfg.seed)
    device = pick_device(cfg, info)
    spec = PreprocessSpec()
    timings: dict[str, float] = {}
    if not info.main:
        barrier(info)  # the first process fills the decode cache; the others then read it
    splits, timings["decode"] = timed(load_splits, cohort, cfg, spec)
    if info.main:
        barrier(info)
    counts = {name: len(s.rows) for name, s in splits.items()}
    counts |= {f"{name}_events": int(s.labels().sum()) for name, s in splits.items()}
    log.info("splits %s; processes %d", counts, info.world)
    model = VfriskModel(spec, width=cfg.width, n_members=cfg.members)
    history, timings["image_net"] = timed(train_image_net, model, splits, cfg, device, info, out / RESUME)
    if info.main:
        recalibrate_norm(model, splits["train"], cfg, device)
        log.info("after re-estimating the batch-norm statistics: %s",
                 json.dumps(finding_errors(model, splits["cal"], device)))
    if not info.main:
        return {}
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    variants, timings["risk_heads"] = timed(fit_all_heads, model, splits, cfg, device)
    test = splits["test"]
    y = test.labels()
    truths = [r.truth for r in test.rows]
    preds = {name: predict_split(v, test, device) for name, v in variants.items()}
    metrics = {name: evaluate_predictions(y, p, truths, cfg.bootstrap, cfg.seed) for name, p in preds.items()}
    metrics["split_counts"] = counts
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_plots(out / "plots", y, {n: p["probability"] for n, p in preds.items()})
    _plot_history(out / "plots" / "training.png", history)
    torch.save({"spec": spec.to_dict(), "config": cfg.to_dict(),
                "state": {n: v.state_dict() for n, v in variants.items()},
                "risk_z": model.risk.z, "cohort": _cohort_description(cohort, counts),
                "cohort_path": str(_cohorts(cohort)[0].resolve()), "arch_version": ARCH_VERSION},
               out / "checkpoint.pt")
    (out / RESUME).unlink(missing_ok=True)  # the checkpoint is written: nothing left to resume
    report = build_run_report(cfg, device, counts | {"processes": info.world}, timings, metrics, cohort)
    (out / "run_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    if cfg.mlflow_uri:  # the run folder is complete already: a tracking failure costs the tracking only
        try:
            report["mlflow_run_id"] = track_run(out, cfg.mlflow_uri)
            log.info("tracked in MLflow as run %s", report["mlflow_run_id"])
        except Exception as exc:
            report["mlflow_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            log.warning("MLflow tracking failed (the run folder is complete): %s", report["mlflow_error"])
    return report


def _cohort_description(cohort: Path | Sequence[Path], counts: dict[str, int]) -> dict[str, Any]:
    """What the model was trained on (from each cohort's own summary when synthetic; a mixture lists its
    parts under ``mixture``)."""
    cohorts = _cohorts(cohort)

    def one(c: Path) -> dict[str, Any]:
        d: dict[str, Any] = {"name": c.name}
        summary = c / "cohort.json"
        if summary.is_file():
            d["synthetic"] = json.loads(summary.read_text())
        return d

    parts = [one(c) for c in cohorts]

    def said(d: dict[str, Any]) -> str:
        syn = d.get("synthetic")
        if not isinstance(syn, dict):
            return f"{d['name']} (real or unlabelled cohort)"
        family = "family B, data/synthetic/family_b" if syn.get("family") == "b" else \
            "family A, data/synthetic/anatomy.py"
        return f"{syn.get('n', '?')} synthetic studies of phantom {family} (seed {syn.get('seed', '?')})"

    synthetic = all(isinstance(d.get("synthetic"), dict) for d in parts)
    description = ("Trained on synthetic phantoms only: " if synthetic else "Trained on: ") + "; ".join(
        said(d) for d in parts) + "."
    if len(cohorts) == 1:
        return parts[0] | {"counts": counts, "description": description}
    return {"name": " + ".join(c.name for c in cohorts), "counts": counts, "mixture": parts,
            "description": description}


def _plot_history(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    ep = [h["epoch"] for h in history]
    for key in ("train_names", "train_hu", "train_ratio"):
        axes[0].plot(ep, [h.get(key, np.nan) for h in history], label=key)
    axes[0].set(title="training losses", xlabel="epoch")
    axes[0].legend(fontsize=7)
    axes[1].plot(ep, [h["val_hu_mae"] for h in history])
    axes[1].set(title="cal split: trabecular HU MAE", xlabel="epoch")
    axes[2].plot(ep, [h["val_ratio_mae"] for h in history])
    axes[2].set(title="cal split: height ratio MAE", xlabel="epoch")
    for key in ("val_found", "val_named"):
        axes[3].plot(ep, [h.get(key, np.nan) for h in history], label=key)
    axes[3].set(title="cal split: bodies found, named right", xlabel="epoch")
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["train_run"]
