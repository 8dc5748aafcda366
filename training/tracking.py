"""Optional MLflow tracking of a finished run (the ``track`` extra).

The run folder is complete without it; with ``mlflow_uri`` set in the config, the first process logs the
config as parameters, the epoch history and the test metrics as metrics, and the run folder as artifacts.
Only what the run folder holds is sent: configuration, aggregate metrics, plots and the training log (study
UIDs, never names or IDs).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from inference.errors import InputError

EXPERIMENT = "vfrisk"


def require_mlflow(uri: str) -> None:
    """Refuse early (before hours of training) when tracking is asked for and MLflow is not installed."""
    if not uri:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise InputError("bad_config", "mlflow_uri is set but MLflow is not installed: "
                         "pip install 'vfrisk[track]'") from None


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts to dotted keys."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flat(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return {prefix: value}


def _local_artifacts(uri: str) -> str | None:
    """For a local SQLite store, keep the artifacts beside the database (MLflow's default is ./mlruns in the
    current directory); a tracking server decides for itself (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def track_run(run: Path, uri: str, experiment: str = EXPERIMENT) -> str:
    """Log the run folder ``run`` to the MLflow server or store at ``uri``; return the MLflow run id."""
    require_mlflow(uri)
    import mlflow

    config = json.loads((run / "config.json").read_text())
    report = json.loads((run / "run_report.json").read_text())
    history = json.loads((run / "history.json").read_text())
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=_local_artifacts(uri))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run.name) as active:
        mlflow.log_params({k: str(v)[:500] for k, v in _flat("", config).items()})
        mlflow.set_tags({"cohort": str(report.get("cohort", "")), "device": str(report.get("device", "")),
                         "command": str(report.get("command", ""))[:500]})
        for row in history:
            step = int(row["epoch"])
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=step)
        headline = {k: float(v) for k, v in report.get("headline", {}).items() if isinstance(v, int | float)}
        mlflow.log_metrics({f"test_{k}" if not k.startswith("test_") else k: v for k, v in headline.items()})
        mlflow.log_artifacts(str(run))
        return str(active.info.run_id)
