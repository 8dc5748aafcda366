"""Batch scoring with the local engine: mixed archive, resume, formats, crashes, folder-only mode, hygiene."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_batch_support import EXPECTED, GOOD, TRUNCATED, read_table, reference_table, shared_archive, without_time

from inference.batch import ScoreOptions, run_score, score_cli
from inference.batch.work import prepare
from inference.errors import InputError


@pytest.fixture(scope="module")
def batch_archive(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_archive(tiny_run, tmp_path_factory)


def _codes(rows: list[dict[str, str]]) -> list[str]:
    return [r["status"] if r["status"] == "ok" else r["error"].split(":")[0] for r in rows]


def test_mixed_archive_gives_ok_and_error_rows(batch_archive: Path, scoring_bundle: Path) -> None:
    rows, summary = reference_table(batch_archive, scoring_bundle)
    codes = _codes(rows)
    assert codes[4] in TRUNCATED
    assert [*codes[:4], "truncated", *codes[5:]] == EXPECTED
    assert list(rows[0])[:6] == ["study", "ntx", "bmd_tscore", "age", "sex", "site"]
    assert list(rows[0])[6:] == ["status", "probability", "error", "series_instance_uid", "model_version",
                                 "input_sha256", "scored_at"]
    for row in rows:
        assert "\n" not in row["error"]
        if row["status"] == "ok":
            assert 0.0 <= float(row["probability"]) <= 1.0 and len(row["input_sha256"]) == 64
            assert row["series_instance_uid"] and row["error"] == ""
        else:
            assert row["probability"] == "" and ": " in row["error"]
    assert rows[0]["probability"] == rows[8]["probability"]  # the duplicate row scores the same
    assert rows[2]["series_instance_uid"] and rows[2]["input_sha256"]  # a lab error after the study was read
    assert "NTX 900 is outside the valid range" in rows[2]["error"]
    assert summary["counts"] == {"ok": 3, "error": 6}
    assert summary["reasons"] == {"bad_lab": 1, "lab_out_of_range": 1, codes[4]: 1, "not_ct": 1, "not_dicom": 1,
                                  "not_found": 1}
    report = json.loads(Path(summary["report"]).read_text())
    assert report["model"]["sha256"] and report["versions"]["onnxruntime"] != "absent"
    assert report["peak_rss_mb"]["workers"] and all(m > 0 for m in report["peak_rss_mb"]["workers"])
    assert len(report["worker_cpu_s"]) == len(report["peak_rss_mb"]["workers"])
    assert all(s > 0 for s in report["worker_cpu_s"])  # each worker's CPU seconds, model included
    assert {"read", "crop", "hash", "inference"} <= set(report["mean_stage_s"])


def test_rerun_skips_rows_already_ok_and_rescores_changed_input(batch_archive: Path, scoring_bundle: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    opts = ScoreOptions(archive=batch_archive, manifest=batch_archive / "manifest.csv", out=out, workers=1,
                        model=scoring_bundle)
    first = run_score(opts)
    table1 = read_table(out)
    second = run_score(opts)
    assert second["this_run"]["skipped_already_ok"] == 3 and second["this_run"]["scored"] == 6
    table2 = read_table(out)
    assert [a for a in table1 if a["status"] == "ok"] == [b for b in table2 if b["status"] == "ok"]  # untouched
    assert without_time(table2) == without_time(table1)
    assert first["database"].endswith("r.sqlite")
    with sqlite3.connect(out.with_suffix(".sqlite")) as db:
        assert db.execute("select count(*) from vfrisk_results").fetchone()[0] == len(table1)


def test_changed_files_are_scored_again(batch_archive: Path, scoring_bundle: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a"
    (archive / "studies").mkdir(parents=True)
    import shutil

    shutil.copytree(batch_archive / "studies" / GOOD[0], archive / "studies" / GOOD[0])
    (archive / "m.csv").write_text("study,ntx,bmd_tscore,age,sex\nstudies/S00000,17.6,-0.88,57,M\n")
    opts = ScoreOptions(archive=archive, manifest=archive / "m.csv", out=tmp_path / "r.parquet", workers=1,
                        model=scoring_bundle)
    assert run_score(opts)["this_run"]["scored"] == 1
    assert run_score(opts)["this_run"]["scored"] == 0
    some_file = next((archive / "studies" / GOOD[0]).iterdir())
    os.utime(some_file, ns=(10**18, 10**18))
    assert run_score(opts)["this_run"]["scored"] == 1
    rows = read_table(tmp_path / "r.parquet")
    assert rows[0]["status"] == "ok" and isinstance(rows[0]["probability"], float) and rows[0]["age"] == 57


def crashing_prepare(task, spec, lab_ranges):  # type: ignore[no-untyped-def]
    """Stand-in worker stage: the row whose site is 'crash' kills its worker, like the OOM killer would."""
    if task.values.get("site") == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    return prepare(task, spec, lab_ranges)


def test_a_killed_worker_costs_its_row_only(batch_archive: Path, scoring_bundle: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    lines = ["study,ntx,bmd_tscore,age,sex,site"] + [f"studies/{g},20,-1,60,F,ok{i}" for i, g in enumerate(GOOD)]
    lines.insert(2, "studies/S00000,20,-1,60,F,crash")
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.csv"
    opts = ScoreOptions(archive=batch_archive, manifest=manifest, out=out, workers=2, model=scoring_bundle)
    summary = run_score(opts, prepare_fn=crashing_prepare)
    rows = read_table(out)
    assert [r["site"] for r in rows] == ["ok0", "crash", "ok1", "ok2"]
    assert _codes(rows) == ["ok", "worker_crashed", "ok", "ok"]
    assert summary["this_run"]["pool_restarts"] >= 1


def test_folder_only_mode_joins_labs_by_study_uid(batch_archive: Path, scoring_bundle: Path, tmp_path: Path) -> None:
    import pydicom

    uids = {}
    for name in (*GOOD, "mr"):
        first = next(p for p in sorted((batch_archive / "studies" / name).iterdir()))
        uids[name] = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    labs = tmp_path / "labs.csv"
    with labs.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study_instance_uid", "ntx", "bmd_tscore", "age", "sex"])
        w.writerow([uids["S00001"], "20", "-2", "", ""])
        w.writerow([uids["S00000"], "25", "-1", "70", "F"])
        w.writerow(["1.2.3.4.5", "25", "-1", "70", "F"])
    out = tmp_path / "r.csv"
    summary = score_cli(batch_archive, None, out, "local", 1, scoring_bundle, None, labs)
    rows = read_table(out)
    assert list(rows[0])[:6] == ["study_instance_uid", "study", "ntx", "bmd_tscore", "age", "sex"]
    by_uid = {r["study_instance_uid"]: r for r in rows}
    assert [r["study_instance_uid"] for r in rows[:3]] == [uids["S00001"], uids["S00000"], "1.2.3.4.5"]
    assert by_uid[uids["S00001"]]["status"] == "ok" and by_uid[uids["S00001"]]["study"] == "studies/S00001"
    assert by_uid["1.2.3.4.5"]["error"].startswith("not_found:")
    assert by_uid[uids["S00002"]]["error"].startswith("missing_lab:")  # found, but no labs
    assert by_uid[uids["mr"]]["error"].startswith("not_ct:")  # refused before its labs are looked at
    assert summary["rows"] == len(rows)


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"engine": "spark"}, "bad_usage"),
    ({"out_name": "r.xlsx"}, "bad_usage"),
    ({"manifest": None}, "bad_usage"),
    ({"manifest_text": "study,ntx\nx,1\n"}, "bad_manifest"),
    ({"manifest_text": "study,ntx,bmd_tscore,age,sex,status\nx,1,1,1,F,ok\n"}, "bad_manifest"),
])
def test_usage_errors_are_input_errors(batch_archive: Path, scoring_bundle: Path, tmp_path: Path,
                                       kwargs: dict[str, object], code: str) -> None:
    manifest: Path | None = batch_archive / "manifest.csv"
    if "manifest_text" in kwargs:
        manifest = tmp_path / "m.csv"
        manifest.write_text(str(kwargs["manifest_text"]))
    if "manifest" in kwargs:
        manifest = None
    out = tmp_path / str(kwargs.get("out_name", "r.csv"))
    with pytest.raises(InputError) as info:
        score_cli(batch_archive, manifest, out, str(kwargs.get("engine", "local")), 1, scoring_bundle, None, None)
    assert info.value.code == code


def test_batch_package_imports_no_torch_monai_or_gradio() -> None:
    code = ("import sys, inference.batch, inference.batch.local, inference.batch.ray_engine, "
            "inference.batch.discover; bad = {'torch', 'monai', 'gradio'} & set(sys.modules); print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_scan_without_the_spine_is_an_error_row(tmp_path: Path) -> None:
    """The batch applies the same anatomy-coverage rule as `vfrisk predict`: no silent number."""
    import numpy as np

    from inference.batch.work import Prepared, score
    from inference.crop import spine_crop
    from inference.engine import Engine
    from inference.labs import Labs
    from inference.spec import PreprocessSpec

    spec = PreprocessSpec()
    empty = np.full((120, 64, 64), -1000.0, dtype=np.float32)  # air: no spine at all

    class _Study:
        volume = empty
        spacing_mm = (3.0, 2.0, 2.0)

    crop = spine_crop(_Study(), spec)  # type: ignore[arg-type]
    engine = Engine()
    item = Prepared("k", crop, Labs(40.0, -1.0, 70.0, "F"), "1.2.3", "sha", {}, None)  # type: ignore[arg-type]
    out = score(engine.run, item)
    assert out.status == "error" and out.error.startswith("spine_not_covered")


def test_a_batch_row_counts_the_bodies_by_the_names_predict_reports() -> None:
    """Two bodies the model itself calls L3: the count along the spine names them L3 and L4 (two levels), as
    ``vfrisk predict`` reports them, so the batch scores the row too (by the bodies' own names it saw one level
    and refused it) and both say the same."""
    import numpy as np

    from inference.batch.work import Prepared, score
    from inference.crop import spine_crop
    from inference.findings import coverage_levels, find_bodies, level_findings, scanned_mm
    from inference.labs import Labs
    from inference.spec import LEVELS, OTHER, PreprocessSpec

    spec = PreprocessSpec()

    class _Study:
        volume = np.full((120, 64, 64), 40.0, dtype=np.float32)  # tissue everywhere: no edge cuts a body
        spacing_mm = (3.0, 2.0, 2.0)
        affine = np.diag([3.0, 2.0, 2.0, 1.0])[[2, 1, 0, 3]]

    crop = spine_crop(_Study(), spec)  # type: ignore[arg-type]
    classes = (*LEVELS, OTHER)
    n_z = int(crop.image.shape[0] * crop.spacing_mm[0] / 4.0)
    probs = np.zeros((len(classes) + 1, n_z))
    probs[-1] = 1.0
    pos = (np.arange(n_z) + 0.5) * 4.0
    for zc in (pos[n_z // 2] + 18.0, pos[n_z // 2] - 18.0):
        w = np.exp(-0.5 * ((pos - zc) / 3.0) ** 2)
        probs[classes.index("L3")] += 0.6 * w
        probs[classes.index("L2")] += 0.2 * w
        probs[classes.index("L4")] += 0.2 * w
        probs[-1] -= w
    out = {"name_probs": probs, "hu_profile": np.full(n_z, 120.0), "ratio_profile": np.full(n_z, 0.98),
           "profile_step_mm": np.asarray(4.0), "probability": np.asarray(0.05)}
    bodies = find_bodies(out, classes, scanned_mm(crop))
    assert [b.name for b in bodies] == ["L3", "L3"]
    present, narrow = coverage_levels(LEVELS, bodies, crop)
    assert len(present) == 2 and "L3" in present and narrow == {}
    reported, _, _ = level_findings(LEVELS, out, crop, _Study())  # type: ignore[arg-type]
    assert sorted(v.level for v in reported if v.present) == sorted(present)
    item = Prepared("k", crop, Labs(40.0, -1.0, 70.0, "F"), "1.2.3", "sha", {}, None)  # type: ignore[arg-type]
    row = score(lambda c, labs: out, item)
    assert row.status == "ok" and row.levels_found == 2
