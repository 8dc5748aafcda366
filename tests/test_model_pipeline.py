"""Training run folder, export check, bundle loader refusals and the predict CLI on a tiny real model."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.bundle import CARD_KEY, load_bundle
from inference.errors import InputError
from training.config import TrainConfig

VFRISK = [sys.executable, "-m", "vfrisk.cli"]


def test_run_folder_is_complete(tiny_run: Path) -> None:
    for name in ("config.json", "metrics.json", "history.json", "train.log", "checkpoint.pt", "run_report.json",
                 "plots/roc.png", "plots/reliability.png", "plots/decision_curve.png", "plots/training.png"):
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert {"fused", "labs_only", "image_only"} <= set(metrics)
    fused = metrics["fused"]
    assert {"auroc", "auprc", "brier", "ece", "auroc_ci95"} <= set(fused["classification"])
    assert "spearman_vs_p_true" in fused["vs_truth"] and "vertebrae" in fused
    # one epoch names few bodies for sure; the chain along the spine may call them all "other" (no level named):
    # the per-vertebra metrics are then empty, never made up
    assert not fused["vertebrae"] or "grade_kappa" in fused["vertebrae"]
    report = json.loads((tiny_run / "run_report.json").read_text())
    assert report["versions"]["torch"] == "2.14.1" and report["counts"]["train"] > 0


def test_export_embeds_card_and_matches_torch(tiny_bundle: Path) -> None:
    card = json.loads((tiny_bundle / "model.json").read_text())
    day, spec_hash, weights = card["version"].split("-")  # the same day and spec, other weights: another version
    assert len(day) == 10 and spec_hash == card["preprocessing"]["sha256"][:8] and len(weights) == 8
    assert card["export_check"]["max_abs_dp"] <= 1e-5 and card["export_check"]["studies"] >= 1
    sess = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    embedded = json.loads(sess.get_modelmeta().custom_metadata_map[CARD_KEY])
    assert embedded["preprocessing"] == card["preprocessing"]
    assert [i.name for i in sess.get_inputs()] == ["image", "spacing", "labs"]
    # dynamic batch and crop size
    out = sess.run(None, {"image": np.full((2, 1, 50, 30, 30), -1000, np.float32),
                          "spacing": np.ones((2, 3), np.float32),
                          "labs": np.array([[40, -1, 70, 1], [90, -3, 80, 0]], np.float32)})
    assert out[0].shape == (2,) and out[1].shape == (2, 2) and np.all((out[0] >= 0) & (out[0] <= 1))
    assert np.all(out[1][:, 0] <= out[0] + 1e-6) and np.all(out[0] <= out[1][:, 1] + 1e-6)


def test_loader_refuses_tampered_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    load_bundle(tiny_bundle)
    bad = tmp_path / "b1"
    shutil.copytree(tiny_bundle, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match="hash") as exc:
        load_bundle(bad)
    assert exc.value.code == "bad_bundle"
    bad2 = tmp_path / "b2"
    shutil.copytree(tiny_bundle, bad2)
    card = json.loads((bad2 / "model.json").read_text())
    card["preprocessing"]["spec"]["version"] = 999
    (bad2 / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="spec version"):
        load_bundle(bad2)


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"epochs": 2, "learning_rat": 1}')
    with pytest.raises(InputError, match="learning_rat"):
        TrainConfig.load(cfg)
    (tmp_path / "c.toml").write_text("epochs = 3\nsplit = [0.6, 0.2, 0.2]\n")
    assert TrainConfig.load(tmp_path / "c.toml").split == (0.6, 0.2, 0.2)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VFRISK, *args], capture_output=True, text=True, timeout=300, check=False)


def test_predict_cli_result_and_errors(tiny_bundle: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    """The result of ``vfrisk predict`` with the bundled model; the one-epoch tiny bundle places levels at random
    (the level check may withdraw them and refuse the scan), so with it a result or a one-line refusal."""
    from inference.bundle import default_bundle

    study = tiny_cohort / "studies" / "S00000"
    tiny = _run("predict", str(study), "--ntx", "55", "--bmd-tscore", "-2.6", "--model", str(tiny_bundle))
    assert tiny.returncode == 0 or (tiny.returncode == 2 and tiny.stderr.startswith("error: ")
                                    and tiny.stderr.count("\n") == 1), tiny.stderr
    if tiny.returncode == 0:
        assert json.loads(tiny.stdout)["model"]["sha256"] == load_bundle(tiny_bundle).onnx_sha256
    if not (default_bundle() / "model.onnx").is_file():
        pytest.skip("no default bundle")
    res = _run("predict", str(study), "--ntx", "55", "--bmd-tscore", "-2.6", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    for key in ("probability", "interval", "model", "study_instance_uid", "series_instance_uid", "input",
                "labs", "vertebrae", "suggestion", "warnings", "disclaimer"):
        assert key in result, key
    assert 0 <= result["interval"][0] <= result["probability"] <= result["interval"][1] <= 1
    assert [v["level"] for v in result["vertebrae"] if v["level"] != "L6"] == [
        "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]  # L6 is listed only when found
    assert all(0.0 <= v["name_confidence"] <= 1.0 for v in result["vertebrae"] if v["present"])
    assert result["model"]["sha256"] == load_bundle(default_bundle()).onnx_sha256
    assert "not a diagnosis" in result["disclaimer"]
    assert (tmp_path / "out" / "result.json").is_file() or (tmp_path / "out").iterdir()
    bad = _run("predict", str(study), "--ntx", "5000", "--bmd-tscore", "-2", "--model", str(tiny_bundle))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr
    missing = _run("predict", str(tmp_path / "nope"), "--ntx", "50", "--bmd-tscore", "-2")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_cli_stubs_and_usage_errors(tmp_path: Path) -> None:
    res = _run("suggest", "--context", str(tmp_path / "missing.json"))
    assert res.returncode == 2 and res.stderr.startswith("error: ")
    (tmp_path / "bad.json").write_text("{not json")
    res = _run("suggest", "--context", str(tmp_path / "bad.json"))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_evaluate_bundle_on_a_cohort(tiny_run: Path, scoring_bundle: Path, tiny_cohort: Path, tmp_path: Path) -> None:
    """``vfrisk evaluate`` runs the product pipeline (the bundled model; the one-epoch tiny bundle places levels at
    random and the pipeline rightly refuses its scans), a baseline scored on the same studies."""
    base = tmp_path / "labs_only"
    res = _run("export", "--run", str(tiny_run), "--out", str(base), "--variant", "labs_only")
    assert res.returncode == 0, res.stderr
    assert json.loads((base / "model.json").read_text())["name"].endswith("baseline-labs_only")
    res = _run("evaluate", "--model", str(scoring_bundle), "--cohort", str(tiny_cohort), "--out",
               str(tmp_path / "ev"), "--compare", str(base))
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["total"] == 6 and metrics["scored"] + metrics["refused"] == 6 and metrics["scored"] >= 2
    assert sum(metrics["refusals_by_reason"].values()) == metrics["refused"] == len(metrics["errors"])
    assert "spearman_vs_p_true" in metrics["vs_truth"] and (tmp_path / "ev" / "plots" / "roc.png").is_file()
    versus = metrics["versus"]["labs_only"]
    assert versus["delta_brier_ci95"][0] <= versus["delta_brier"] <= versus["delta_brier_ci95"][1]
    bad = _run("export", "--run", str(tiny_run), "--out", str(tmp_path / "x"), "--variant", "nope")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


@pytest.mark.parametrize("args", [("predict",), ("score", "--bogus", "1"), ("nosuchcmd",),
                                  ("synth", "--n", "x", "--out", "q")])
def test_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    res = _run(*args)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("world", [1, 2, 3])
def test_torchrun_shards_are_equal_disjoint_and_in_order(world: int) -> None:
    import torch

    from training.distributed import DistInfo, shard

    perm = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    parts = [shard(perm, DistInfo(rank, world)) for rank in range(world)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == 23 // world
    joined = torch.cat(parts)
    assert len(set(joined.tolist())) == len(joined)
    assert set(joined.tolist()) <= set(perm[: len(joined)].tolist())


def test_torchrun_two_processes_train_one_run(tiny_run: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m vfrisk.cli train`` (Gloo on CPU): one run folder, one report."""
    cohort = tiny_run.parent / "cohort"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 1, "members": 3, "bootstrap": 20, "workers": 1, "device": "cpu",
                               "split": [0.5, 0.25, 0.25]}))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "vfrisk.cli", "train", "--cohort", str(cohort), "--out", str(out), "--config",
                          str(cfg)], capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    headline = json.loads(res.stdout)  # exactly one JSON document: only the first process prints
    assert 0.0 <= headline["test_auroc"] <= 1.0
    report = json.loads((out / "run_report.json").read_text())
    assert report["counts"]["processes"] == 2
    assert (out / "checkpoint.pt").is_file() and len(json.loads((out / "history.json").read_text())) == 1


def test_mlflow_tracking_of_a_run(tiny_run: Path, tmp_path: Path) -> None:
    """A finished run logged to a local MLflow store: parameters, epoch metrics and the run folder."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from training.tracking import track_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = track_run(tiny_run, uri)
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params["epochs"] == "1" and run.data.params["split"].startswith("[")
    # the epoch history (val_found is always defined; val_hu_mae is NaN, and not logged, when a one-epoch model
    # names no body right) and the test metrics
    assert "val_found" in run.data.metrics and "test_auroc" in run.data.metrics
    history = json.loads((tiny_run / "history.json").read_text())
    logged = {k for k, v in history[-1].items() if k != "epoch" and math.isfinite(v)}
    assert logged <= set(run.data.metrics), logged - set(run.data.metrics)
    names = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"config.json", "metrics.json", "checkpoint.pt"} <= names
    assert (tmp_path / "mlartifacts").is_dir() and not Path("mlruns").exists()  # nothing outside tmp_path


def test_mlflow_uri_without_mlflow_is_refused_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from training.tracking import require_mlflow

    real = builtins.__import__

    def no_mlflow(name: str, *args: object, **kwargs: object) -> object:
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(InputError, match="track"):
        require_mlflow("file:///tmp/x")
    require_mlflow("")  # no tracking asked: nothing needed


def test_a_tracking_failure_keeps_the_run(tiny_run: Path, tmp_path: Path) -> None:
    """An MLflow store that cannot be written is reported in the run report; the run folder is complete."""
    pytest.importorskip("mlflow")
    from training.run import train_run

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder would be\n")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 1, "members": 3, "bootstrap": 20, "workers": 1, "max_studies": 24,
                               "split": [0.5, 0.25, 0.25], "mlflow_uri": f"sqlite:///{blocker}/mlflow.db"}))
    report = train_run(tiny_run.parent / "cohort", tmp_path / "run", cfg)
    assert report["mlflow_error"] and "mlflow_run_id" not in report
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "metrics.json").is_file()


def test_a_bundle_version_changes_with_the_weights() -> None:
    """The version's last part hashes the parameters: the same weights give the same hash, one changed weight
    another (a retrain on the same day with the same spec is no longer the same version)."""
    import torch

    from inference.spec import PreprocessSpec
    from models.full import VfriskModel
    from training.export import weights_sha256

    model = VfriskModel(PreprocessSpec())
    first = weights_sha256(model)
    assert weights_sha256(model) == first
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert weights_sha256(model) != first


def test_train_seed_option_replaces_the_configs_seed(tiny_run: Path, tmp_path: Path) -> None:
    """``vfrisk train --seed N`` trains with seed N whatever the config says (the run folder records it), so one
    config run with several seeds shows the spread between runs."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"seed": 0, "epochs": 1, "members": 3, "bootstrap": 20, "workers": 1,
                               "max_studies": 24, "split": [0.5, 0.25, 0.25]}))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "vfrisk.cli", "train", "--cohort", str(tiny_run.parent / "cohort"),
                          "--out", str(out), "--config", str(cfg), "--seed", "7"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["seed"] == 7
    assert json.loads(cfg.read_text())["seed"] == 0  # the config file itself is untouched


def test_a_seed_numpy_cannot_take_is_refused_before_any_work(tmp_path: Path) -> None:
    """``--seed -1`` (or a config's) is one clear line and nothing written, not a crash after the cache is built."""
    from training.config import TrainConfig

    with pytest.raises(InputError, match="seed must be"):
        TrainConfig(seed=-1)
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "vfrisk.cli", "train", "--cohort", str(tmp_path), "--out", str(out),
                          "--seed", "-1"], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "seed must be" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_a_split_seed_holds_the_patient_split_whatever_the_seed(tiny_run: Path, tmp_path: Path) -> None:
    """``split_seed`` alone decides which patients train, calibrate and test: runs that differ only in ``seed``
    then see the same patients; absent, ``seed`` decides as before. A bad one is refused like a bad seed."""
    from inference.spec import PreprocessSpec
    from training.config import TrainConfig
    from training.train import load_splits

    def split_of(**kw: object) -> dict[str, list[str]]:
        cfg = TrainConfig(split=(0.5, 0.25, 0.25), workers=1, cache_dir=str(tmp_path / "cache"),
                          **kw)  # type: ignore[arg-type]
        splits = load_splits(tiny_run.parent / "cohort", cfg, PreprocessSpec())  # the run's 24 studies
        return {name: sorted(r.study for r in s.rows) for name, s in splits.items()}

    def studies(split: dict[str, list[str]]) -> list[str]:
        return sorted(s for names in split.values() for s in names)

    held = split_of(seed=5)
    assert split_of(seed=1, split_seed=5) == held == split_of(seed=2, split_seed=5)
    own = split_of(seed=1)
    assert own != held and studies(own) == studies(held)  # seed 1's own split: the same studies, dealt otherwise
    with pytest.raises(InputError, match="split_seed must be"):
        TrainConfig(split_seed=-3)
