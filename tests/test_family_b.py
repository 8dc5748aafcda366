"""Phantom family B (issue 19): independent of family A's anatomy, truth consistent with what the reader loads,
fields of view, transitional spines and contrast phases drawn, deterministic and resumable."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from data.synthetic.family_b.cohort import REPORT_LEVELS, TRUTH_COLUMNS, Options, write_cohort
from data.synthetic.family_b.plan import FOV_KINDS, plan_study

REPO = Path(__file__).resolve().parents[1]
FAMILY_B = REPO / "data" / "synthetic" / "family_b"
FAMILY_A_MODULES = ("data.synthetic.anatomy", "data.synthetic.cohort")
ALLOWED_SYNTHETIC = ("data.synthetic.model", "data.synthetic.dicom_writer", "data.synthetic.family_b")
COUNTED = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6")


def _imports(path: Path) -> list[str]:
    """Every module a file imports (relative imports resolved against the family B package)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["data", "synthetic", "family_b"][: 4 - node.level] + ([base] if base else []))
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            out.append("<dynamic import>")
    return out


def _defined(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_family_b_imports_nothing_of_family_a() -> None:
    """The AST of every family B module: no import of family A's anatomy or cohort (rendering, fields of view),
    no dynamic import, data.synthetic only through the shared patient model and the DICOM encoder; and no
    function or class named as one of family A's drawing functions."""
    files = sorted(FAMILY_B.glob("*.py"))
    assert len(files) >= 8
    a_names = _defined(REPO / "data" / "synthetic" / "anatomy.py") | {"draw_fov", "draw_plan", "spine_levels"}
    for path in files:
        for module in _imports(path):
            assert module != "<dynamic import>", f"{path.name} imports dynamically"
            assert not any(module == a or module.startswith(a + ".") for a in FAMILY_A_MODULES), (path.name, module)
            if module.startswith("data.synthetic"):
                assert module.startswith(ALLOWED_SYNTHETIC), (path.name, module)
        borrowed = _defined(path) & a_names
        assert not borrowed, f"{path.name} defines family A's {sorted(borrowed)}"


def test_importing_family_b_loads_no_family_a_module() -> None:
    code = ("import sys, data.synthetic.family_b.cohort, data.synthetic.family_b.derive; "
            "print(sorted(m for m in sys.modules if m.startswith('data.synthetic')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    assert not any(m in loaded for m in FAMILY_A_MODULES), loaded


def test_derived_statistics_are_small_attributed_and_match_the_real_facts() -> None:
    path = FAMILY_B / "stats.json"
    assert path.stat().st_size < 12_000
    stats = json.loads(path.read_text())
    licences = {s["licence"] for s in stats["sources"]}
    assert licences == {"CC BY-SA 4.0", "Apache-2.0"}
    kp = stats["keypoints"]
    assert kp["n_scans"] == 2116
    assert kp["top_level"]["T9"] + kp["top_level"]["T10"] == 1051  # the real-spine README's facts
    assert kp["bottom_level"]["L5"] == 1839 and kp["level_counts"]["L6"] == 48
    curve = kp["curve"]
    assert len(curve["mean"]) == len(curve["levels"]) - 1 == 16
    assert all(len(c) == 48 for c in curve["components"])
    assert stats["verse004"]["interpolated_from_neighbours"] == ["L1"]  # verse004's L1 is crushed


@pytest.mark.skipif(not (REPO.parent / "shared" / "real-spine" / "vid-keypoints").is_dir(),
                    reason="no ../shared/real-spine")
def test_the_committed_statistics_are_what_the_script_derives() -> None:
    from data.synthetic.family_b.derive import REAL, verse_stats

    stats = json.loads((FAMILY_B / "stats.json").read_text())
    assert json.loads(json.dumps(verse_stats(REAL / "verse004-masks"))) == stats["verse004"]


def test_plans_draw_every_field_of_view_transitional_spines_and_contrast_phases() -> None:
    plans = [plan_study(3, i, 96) for i in range(400)]
    assert {p.scan.kind for p in plans} == set(FOV_KINDS)
    lumbar = [p.spine.lumbar for p in plans]
    assert 0.01 < lumbar.count(4) / len(plans) < 0.08 and 0.01 < lumbar.count(6) / len(plans) < 0.08
    phases = [p.series.phase for p in plans]
    assert {"none", "arterial", "portal_venous"} == set(phases)
    enhanced = [p for p in plans if p.series.phase != "none"]
    said = sum(p.series.header_says_contrast for p in enhanced)
    assert 0 < said < len(enhanced)  # the header says so for most enhanced series, not all
    assert all(p.tissues.bone_offset == 0 for p in plans if p.series.phase == "none")
    assert 8 < np.mean([p.tissues.bone_offset for p in enhanced]) < 20
    spine_fov = [p for p in plans if p.scan.kind == "lumbar"]
    assert spine_fov and all(150 <= p.scan.fov_mm <= 250 and p.scan.spine_centred for p in spine_fov)


def _spans(plan: object) -> dict[str, tuple[float, float]]:
    return {s.level: s.z_span() for s in plan.spine.segments}  # type: ignore[attr-defined]


def test_fields_of_view_show_what_their_kind_promises() -> None:
    for i in range(300):
        plan = plan_study(8, i, 96)
        z = plan.z_positions()
        lo, hi = float(z[0]), float(z[-1])
        spans = _spans(plan)
        whole = [lv for lv in COUNTED if lv in spans and lo <= spans[lv][0] and spans[lv][1] <= hi]
        low = f"L{plan.spine.lumbar}"
        kind = plan.scan.kind
        if kind == "none":
            assert not whole, (i, whole)
        elif kind == "whole":
            assert {"T10", low}.issubset(whole) and lo <= spans["S1"][0], i
        elif kind == "chest":
            assert "T10" in whole and low not in whole and hi > spans["T1"][1], i
        elif kind in ("abdomen", "lumbar"):
            assert {"L2", "L3", "L4"}.issubset(whole), i
        assert len(z) >= 24 and hi - lo >= 50.0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six studies at a 64 matrix: lumbar-spine CT, whole, pelvis-only and chest-only scans, spines with four and
    six lumbar vertebrae, portal venous phase with and without the header saying so."""
    out = tmp_path_factory.mktemp("family_b") / "c"
    write_cohort(out, Options(n=6, seed=5, matrix=64, workers=1))
    return out


def _rows(root: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((root / name).open()))


def test_layout_and_truth_schema_match_family_a(cohort: Path) -> None:
    manifest = _rows(cohort, "manifest.csv")
    assert list(manifest[0]) == ["study", "ntx", "bmd_tscore", "age", "sex", "fracture_6m"]
    truth = _rows(cohort, "truth.csv")
    assert list(truth[0]) == list(TRUTH_COLUMNS)
    needed = {"study", "p_true", "l1_hu", "worst_grade", "n_fractures", "fov_kind", "lumbar_count", "transitional",
              "scan_bottom_mm", "scan_top_mm", "contrast_phase"}
    per_level = {f"{lv}_{k}" for lv in REPORT_LEVELS
                 for k in ("grade", "height_ratio", "hu", "shape", "z_mm", "y_mm", "x_mm", "in_view")}
    assert needed | per_level <= set(truth[0])
    assert [r["study"] for r in truth] == [f"studies/S{i:05d}" for i in range(6)]
    assert {r["lumbar_count"] for r in truth} == {"4", "5", "6"}
    for r in truth:
        lumbar = int(r["lumbar_count"])
        assert r["L6_z_mm"] == "" if lumbar < 6 else r["L6_in_view"] in ("0", "1")
        assert r["L5_z_mm"] == "" if lumbar < 5 else r["L5_grade"] != ""
        assert r["T10_grade"] == "" and r["T10_z_mm"] != "" and r["S1_z_mm"] != ""  # as family A writes them
        for lv in ("T11", "T12", "L1", "L2", "L3", "L4"):
            assert abs(float(r[f"{lv}_hu_enhanced"]) - float(r[f"{lv}_hu"]) - float(r["contrast_offset_hu"])) < 12
    summary = json.loads((cohort / "cohort.json").read_text())
    assert summary["family"] == "b" and sum(summary["fov_kinds"].values()) == 6


def test_the_reader_loads_the_scan_range_the_truth_records(cohort: Path) -> None:
    from inference.io import load_any

    for r in _rows(cohort, "truth.csv"):
        study = load_any(cohort / r["study"])
        zs = [float((study.affine @ np.array([k, 0, 0, 1.0]))[2]) for k in (0, study.volume.shape[0] - 1)]
        assert min(zs) == pytest.approx(float(r["scan_bottom_mm"]), abs=0.01)
        assert max(zs) == pytest.approx(float(r["scan_top_mm"]), abs=0.01)
        assert study.volume.shape[1:] == (64, 64)
        assert study.spacing_mm[0] == pytest.approx(float(r["slice_spacing"]), abs=1e-3)


def test_bodies_sit_at_their_truth_centres_in_the_loaded_volume(cohort: Path) -> None:
    """Through the product's reader: at each recorded centre inside the scan, the loaded HU is bone of about the
    recorded (enhanced) trabecular density."""
    from inference.io import load_any

    checked = 0
    for r in _rows(cohort, "truth.csv"):
        study = load_any(cohort / r["study"])
        inv = np.linalg.inv(study.affine)
        for lv in ("T11", "T12", "L1", "L2", "L3", "L4", "L5"):
            if r[f"{lv}_in_view"] != "1":
                continue
            centre = np.array([float(r[f"{lv}_x_mm"]), float(r[f"{lv}_y_mm"]), float(r[f"{lv}_z_mm"]), 1.0])
            k, j, i = np.rint(inv @ centre)[:3].astype(int)
            roi = study.volume[max(k - 1, 0): k + 2, j - 1: j + 2, i - 1: i + 2]
            assert abs(float(roi.mean()) - float(r[f"{lv}_hu_enhanced"])) < 60, (r["study"], lv, float(roi.mean()))
            checked += 1
    assert checked >= 12


def test_in_view_matches_the_loaded_volume_and_the_training_helpers_accept_it(cohort: Path) -> None:
    from inference.io import load_any
    from inference.spec import LEVELS
    from training.data import level_truth_in_crop
    from training.fov_check import in_view

    for r in _rows(cohort, "truth.csv"):
        lo, hi = float(r["scan_bottom_mm"]), float(r["scan_top_mm"])
        seen = in_view(r)
        for lv in seen:
            assert lo < float(r[f"{lv}_z_mm"]) < hi
        if r["fov_kind"] == "none":
            assert not [lv for lv in seen if lv != "S1"]
        study = load_any(cohort / r["study"])
        z, flags = level_truth_in_crop(study, (0, 0, 0), r)
        for i, lv in enumerate(LEVELS):
            if r[f"{lv}_z_mm"] == "":
                assert np.isnan(z[i]) and np.isnan(flags[i])
                continue
            assert flags[i] == float(r[f"{lv}_in_view"])
            assert z[i] == pytest.approx(float(r[f"{lv}_z_mm"]) - lo, abs=0.05)


def test_contrast_is_recorded_in_the_header_only_when_the_series_says_so(cohort: Path) -> None:
    for r in _rows(cohort, "truth.csv"):
        ds = pydicom.dcmread(next((cohort / r["study"]).glob("02*.dcm")), stop_before_pixels=True)
        says = r["contrast_in_header"] == "1"
        assert ("ContrastBolusAgent" in ds) == says
        assert says <= (r["contrast_phase"] != "none")
        if says:
            assert ds.ContrastBolusRoute == "IV" and len(ds.ContrastBolusStartTime) == 6


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_an_interrupted_run_resumes(tmp_path: Path) -> None:
    opts = Options(n=3, seed=4, matrix=64, workers=1)
    first, second = tmp_path / "a", tmp_path / "b"
    write_cohort(first, opts)
    write_cohort(second, opts)
    assert _digest(first) == _digest(second)
    for name in ("cohort.json", "truth.csv", "manifest.csv"):  # killed before the end: one study lost too
        (second / name).unlink()
    shutil.rmtree(second / "studies" / "S00002")
    (second / ".progress" / "S00002").unlink()
    write_cohort(second, opts)
    assert _digest(first) == _digest(second)
    with pytest.raises(Exception, match="exists and is not empty"):
        write_cohort(second, opts)


def test_the_prone_series_reads_in_patient_space(tmp_path: Path) -> None:
    """Seed 30, study 5 is a slab written prone (image rows and columns reversed): the reader's canonical volume
    puts its bone where the truth says."""
    from data.synthetic.family_b.cohort import make_study
    from inference.io import load_any

    _, row = make_study(tmp_path, 30, 5, Options(n=6, seed=30, matrix=64))
    assert row["prone"] == 1
    ds = pydicom.dcmread(next((tmp_path / row["study"]).glob("02*.dcm")), stop_before_pixels=True)
    assert [round(float(v)) for v in ds.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]
    study = load_any(tmp_path / row["study"])
    inv = np.linalg.inv(study.affine)
    inside = [lv for lv in COUNTED if row[f"{lv}_in_view"] == 1]
    assert inside
    for lv in inside:
        k, j, i = np.rint(inv @ np.array([float(row[f"{lv}_x_mm"]), float(row[f"{lv}_y_mm"]),
                                            float(row[f"{lv}_z_mm"]), 1.0]))[:3].astype(int)
        assert abs(study.volume[k, j - 1: j + 2, i - 1: i + 2].mean() - row[f"{lv}_hu_enhanced"]) < 60


def test_the_command_line_writes_family_b_and_keeps_family_a(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vfrisk.cli import app

    result = CliRunner().invoke(app, ["synth", "--family", "b", "--out", str(tmp_path / "b"), "--n", "1",
                                      "--seed", "2", "--matrix", "64", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["family"] == "b"
    assert (tmp_path / "b" / "truth.csv").is_file()
    bad = CliRunner().invoke(app, ["synth", "--family", "c", "--out", str(tmp_path / "c"), "--n", "1"])
    assert bad.exit_code == 2
    mixed = CliRunner().invoke(app, ["synth", "--family", "b", "--fov", "mixed", "--out", str(tmp_path / "d")])
    assert mixed.exit_code == 2 and not (tmp_path / "d").exists()
