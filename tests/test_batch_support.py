"""Batch scoring: shared helpers (a mixed archive, table reading) and unit tests of the pure parts."""

from __future__ import annotations

import csv
import functools
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest

from inference.batch.run import ScoreOptions, is_done, run_score
from inference.batch.store import Record
from inference.batch.table import atomic_write, write_table
from inference.batch.tasks import Task, fingerprint, read_manifest, row_keys

GOOD = ("S00000", "S00001", "S00002")
MANIFEST = [
    # study, ntx, bmd_tscore, age, sex, site -> expected status or reason code
    ("studies/S00000", "17.6", "-0.88", "57", "M", "a"),
    ("studies/S00001", "29.4", "-3.24", "", "", "b"),  # age and sex from the header
    ("studies/S00002", "900", "-1.0", "60", "F", "c"),  # NTX outside the valid range
    ("studies/S00001", "abc", "-1.0", "60", "F", "d"),  # not a number
    ("studies/trunc", "20", "-1.0", "60", "F", "e"),  # one slice truncated
    ("studies/mr", "20", "-1.0", "60", "F", "f"),  # MR copy of a good study
    ("studies/rand", "20", "-1.0", "60", "F", "g"),  # random bytes
    ("studies/missing", "20", "-1.0", "60", "F", "h"),  # not in the archive
    ("studies/S00000", "17.6", "-0.88", "57", "M", "a"),  # an exact duplicate row
]
EXPECTED = ["ok", "ok", "lab_out_of_range", "bad_lab", "truncated", "not_ct", "not_dicom", "not_found", "ok"]
TRUNCATED = {"missing_slices", "decode_failed", "unreadable"}
"""Codes ingestion may give a series with one truncated file (depends on which slice it is)."""


def cohort_of(run: Path) -> Path:
    """The synthetic cohort of the conftest's tiny training run (24 studies, matrix 96)."""
    return run.parent / "cohort"


def make_archive(root: Path, cohort: Path) -> Path:
    """An archive of good, truncated, non-CT and random-bytes studies, with a manifest (MANIFEST)."""
    studies = root / "studies"
    studies.mkdir(parents=True)
    for name in GOOD:
        shutil.copytree(cohort / "studies" / name, studies / name)
    shutil.copytree(cohort / "studies" / "S00003", studies / "trunc")
    victim = sorted((studies / "trunc").iterdir())[len(list((studies / "trunc").iterdir())) // 2]
    os.truncate(victim, 3000)
    shutil.copytree(cohort / "studies" / "S00004", studies / "mr")
    for path in (studies / "mr").iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)
    (studies / "rand").mkdir()
    (studies / "rand" / "IM0001.dcm").write_bytes(os.urandom(100_000))
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study", "ntx", "bmd_tscore", "age", "sex", "site"])
        writer.writerows(MANIFEST)
    return root


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or Parquet results table."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows minus ``scored_at`` (the only column allowed to differ between equivalent runs)."""
    return [{k: v for k, v in row.items() if k != "scored_at"} for row in rows]


@functools.cache
def reference_table(archive: Path, bundle: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An uninterrupted local run over ``archive`` (computed once per session), next to the archive."""
    out = archive.parent / "reference" / "reference.csv"
    out.parent.mkdir(exist_ok=True)
    summary = run_score(ScoreOptions(archive=archive, manifest=archive / "manifest.csv", out=out, workers=2,
                                     model=bundle))
    return read_table(out), summary


def shared_archive(run: Path, factory: pytest.TempPathFactory) -> Path:
    """The mixed archive from the tiny run's cohort, built once per session (the manifest, written last, marks it
    complete); it is scored with the bundled default model (``scoring_bundle``)."""
    root = factory.getbasetemp() / "batch" / "archive"
    if not (root / "manifest.csv").is_file():
        shutil.rmtree(root, ignore_errors=True)
        make_archive(root, cohort_of(run))
    return root


@pytest.fixture(scope="module")
def batch_archive(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed archive (every batch test module has this same fixture)."""
    return shared_archive(tiny_run, tmp_path_factory)


# --- unit tests of the pure parts ----------------------------------------------------------------------------


def test_row_keys_are_stable_and_number_duplicates() -> None:
    keys = row_keys([["a", "1"], ["b", "2"], ["a", "1"]])
    assert keys == row_keys([["a", "1"], ["b", "2"], ["a", "1"]])
    assert len(set(keys)) == 3 and keys[0].endswith("-0") and keys[2].endswith("-1")
    assert keys[0].split("-")[0] == keys[2].split("-")[0]


def test_fingerprint_follows_names_sizes_and_mtimes(tmp_path: Path) -> None:
    study = tmp_path / "s"
    study.mkdir()
    (study / "a.dcm").write_bytes(b"x" * 10)
    first = fingerprint([study])
    assert fingerprint([study]) == first
    os.utime(study / "a.dcm", ns=(1, 1))
    touched = fingerprint([study])
    assert touched != first
    (study / "b.dcm").write_bytes(b"y")
    assert fingerprint([study]) not in (first, touched)


def test_manifest_paths_are_confined_to_the_archive(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    (tmp_path / "m.csv").write_text("study,ntx,bmd_tscore,age,sex\ns1,1,1,1,F\n../s1,1,1,1,F\n/etc,1,1,1,F\n"
                                    "nope,1,1,1,F\n")
    plan = read_manifest(tmp_path / "m.csv", tmp_path)
    assert [t.problem[0] if t.problem else "" for t in plan.tasks] == ["", "bad_path", "bad_path", "not_found"]


def test_resume_rule_needs_ok_same_model_and_same_input() -> None:
    model = {"name": "m", "version": "v1", "sha256": "h1"}
    plan_task = Task(0, "k", {}, ("x",), "fp")
    rec = Record("k", 0, "ok", 0.5, "", "1.2", "v1", "h1", "sha", "fp", "t")
    assert is_done(rec, plan_task, model)
    assert not is_done(None, plan_task, model)
    assert not is_done(replace(rec, status="error"), plan_task, model)
    assert not is_done(replace(rec, model_version="v0"), plan_task, model)
    assert not is_done(replace(rec, model_sha256="h0"), plan_task, model)
    assert not is_done(replace(rec, source_fingerprint="other"), plan_task, model)


def test_tables_are_written_atomically_in_both_formats(tmp_path: Path) -> None:
    rows = [{"study": "s", "ntx": "12", "age": "", "status": "ok", "probability": 0.25, "error": "",
             "series_instance_uid": "1.2", "model_version": "v", "input_sha256": "h", "scored_at": "t"},
            {"study": "t", "ntx": "x", "age": "61", "status": "error", "probability": None,
             "error": "not_ct: the series is MR, not CT", "series_instance_uid": "", "model_version": "v",
             "input_sha256": "", "scored_at": "t"}]
    write_table(tmp_path / "r.csv", ["study", "ntx", "age"], rows)
    write_table(tmp_path / "r.parquet", ["study", "ntx", "age"], rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.parquet"]  # no temporary left
    csv_rows = read_table(tmp_path / "r.csv")
    assert csv_rows[0]["probability"] == "0.25" and csv_rows[1]["probability"] == ""
    pq_rows = read_table(tmp_path / "r.parquet")
    assert pq_rows[0]["age"] is None and pq_rows[1]["age"] == 61 and pq_rows[1]["ntx"] == "x"
    assert pq_rows[1]["probability"] is None
    atomic_write(tmp_path / "r.csv", b"new\n")
    assert (tmp_path / "r.csv").read_text() == "new\n"
