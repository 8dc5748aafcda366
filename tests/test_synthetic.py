"""The synthetic cohort: determinism, valid DICOM, HU round trip, fracture geometry, outcome model."""

from __future__ import annotations

import csv
import hashlib
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from data.synthetic.anatomy import BODY_MM, Grid, VertebraGeometry, draw_posterior, draw_vertebra, render
from data.synthetic.cohort import CohortOptions, draw_plan, write_cohort
from data.synthetic.model import GRADE_LOSS, ODDS_RATIOS, draw_patient, risk_logit


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical(tmp_path: Path, tiny_cohort: Path) -> None:
    again = tmp_path / "again"
    write_cohort(again, CohortOptions(n=6, seed=11, matrix=96, workers=2))
    assert _tree_digest(again) == _tree_digest(tiny_cohort)
    other = tmp_path / "other"
    write_cohort(other, CohortOptions(n=2, seed=12, matrix=96, workers=1))
    assert _tree_digest(other)["manifest.csv"] != _tree_digest(tiny_cohort)["manifest.csv"]


def test_layout_and_strict_read(tiny_cohort: Path) -> None:
    rows = list(csv.DictReader((tiny_cohort / "manifest.csv").open()))
    assert [r["study"] for r in rows] == [f"studies/S{i:05d}" for i in range(6)]
    assert set(rows[0]) == {"study", "ntx", "bmd_tscore", "age", "sex", "fracture_6m"}
    truth = list(csv.DictReader((tiny_cohort / "truth.csv").open()))
    assert {"p_true", "L1_grade", "L1_height_ratio", "L1_hu", "T11_z_mm"} <= set(truth[0])
    with pydicom.config.strict_reading():
        for path in sorted((tiny_cohort / "studies").rglob("*.dcm"))[:40]:
            ds = pydicom.dcmread(path)
            assert ds.Modality == "CT" and ds.PatientSex in ("F", "M") and ds.PatientAge.endswith("Y")
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


def test_hu_round_trip_through_stored_values(tmp_path: Path) -> None:
    """Stored values decoded with apply_modality_lut give back the rendered HU (quantisation only)."""
    from data.synthetic.cohort import make_study

    opts = CohortOptions(n=1, seed=5, matrix=64, extras=False)
    for index in range(4):  # several rescale conventions and transfer syntaxes
        rng = np.random.default_rng([5, index])
        patient = draw_patient(rng)
        plan = draw_plan(rng, opts)
        vol, grid, _ = render(patient, plan.acq, plan.body, rng, lungs=opts.lungs)
        make_study(tmp_path, 5, index, opts)
        folder = tmp_path / "studies" / f"S{index:05d}"
        for path in sorted(folder.glob("*.dcm"))[:5]:
            ds = pydicom.dcmread(path)
            hu = apply_modality_lut(ds.pixel_array, ds)
            if plan.sagittal_main:
                i = int(np.argmin(np.abs(grid.x - float(ds.ImagePositionPatient[0]))))
                ref = vol[::-1, :, i]
            else:
                k = int(np.argmin(np.abs(grid.z - float(ds.ImagePositionPatient[2]))))
                ref = vol[k]
            lo = float(ds.RescaleIntercept) + (-(2 ** (ds.BitsStored - 1)) if ds.PixelRepresentation else 0)
            expected = np.clip(ref, lo, None)
            assert np.abs(hu - expected).max() <= float(ds.RescaleSlope) / 2 + 1e-3


def _heights(v: VertebraGeometry, res: float = 0.2) -> tuple[float, float, float]:
    """Anterior, middle and posterior heights of the drawn body, measured on a fine grid."""
    g = Grid(z=np.arange(v.z_bottom - 3, v.z_bottom + v.height + 3, res),
             y=np.arange(v.yc - v.depth / 2 - 2, v.yc + v.depth / 2 + 2, res),
             x=np.array([v.xc]))
    vol = np.zeros(g.shape, dtype=np.float32)
    draw_vertebra(vol, g, v, 1000.0, np.random.default_rng(0))
    bone = vol[:, :, 0] > 500  # the shell outlines the body, endplates included
    cols = np.where(bone.any(axis=0))[0]
    def h(j: int) -> float:
        zs = np.where(bone[:, j])[0]
        return float((zs.max() - zs.min() + 1) * res)
    a, p = cols.min() + int(1.5 / res), cols.max() - int(1.5 / res)
    return h(a), h((a + p) // 2), h(p)


@pytest.mark.parametrize("shape", ["wedge", "biconcave", "crush"])
@pytest.mark.parametrize("grade", [1, 2, 3])
def test_fracture_geometry_matches_grade(shape: str, grade: int) -> None:
    lo, hi = GRADE_LOSS[grade]
    loss = (lo + hi) / 2
    h0 = 26.0
    slot = h0 * (1 - loss) if shape == "crush" else h0
    v = VertebraGeometry("L1", 0.0, 0.0, 0.0, slot, 43.0, 31.0, loss, shape, 120.0)
    ha, hm, hp = _heights(v)
    ref = h0  # the expected (intact) height of this body
    worst = min(ha, hm, hp) if shape != "crush" else hp
    measured_loss = 1 - worst / ref
    assert lo - 0.03 <= measured_loss <= hi + 0.03, (ha, hm, hp)
    if shape == "wedge":
        assert ha < hm < hp
    if shape == "biconcave":
        assert hm < ha and hm < hp


def _process_reach(level: str) -> float:
    """How far (mm) the bone of one vertebra's posterior elements reaches left or right of the midline."""
    w, d, h, _ = BODY_MM[level]
    v = VertebraGeometry(level, 0.0, 0.0, 0.0, h, w, d, 0.0, "none", 150.0)
    g = Grid(z=np.arange(-15.0, h + 10.0, 1.0), y=np.arange(0.0, 90.0, 1.0), x=np.arange(-70.0, 70.5, 1.0))
    vol = np.zeros(g.shape, dtype=np.float32)
    draw_posterior(vol, g, v, 400.0, level.startswith("L"))
    cols = np.where((vol > 300).any(axis=(0, 1)))[0]
    return float(max(abs(g.x[cols[0]]), abs(g.x[cols[-1]])))


def test_lumbar_transverse_processes_are_long_and_thoracic_ones_short() -> None:
    """Family A's lumbar transverse processes reach as far as real ones (L3's the longest, about 40-48 mm from the
    midline), further than a thoracic vertebra's processes (where the ribs attach): a model must not learn that
    any long bony process beside a body is a rib."""
    reach = {lv: _process_reach(lv) for lv in ("T10", "T11", "L1", "L3", "L5")}
    assert 40.0 <= reach["L3"] <= 48.0, reach
    assert reach["L3"] >= max(reach["L1"], reach["L5"]), reach
    assert max(reach["T10"], reach["T11"]) <= 32.0 < reach["L1"], reach


def _air_beside(vol: np.ndarray, g: Grid, v: VertebraGeometry, reach: float = 70.0) -> tuple[float, float]:
    """Share of air (< -500 HU) within ``reach`` mm right and left of body ``v``, at its centre slice."""
    sl = vol[int(np.argmin(np.abs(g.z - v.z_center)))]
    near = np.abs(g.y - v.yc)[:, None] < 40
    out = []
    for side in (-1, 1):
        band = (side * (g.x - v.xc) > v.width / 2 + 3) & (side * (g.x - v.xc) < reach)
        out.append(float((sl[near & band[None, :]] < -500).mean()))
    return out[0], out[1]


def test_a_chest_shows_lungs_beside_the_thoracic_spine_down_to_the_diaphragm() -> None:
    """Family A's ``--lungs`` variant draws both lungs: air beside every thoracic body above the domes (T6-T9),
    the posterior recesses beside T12 within 45 mm of the midline, none beside a lumbar body below L1; the bodies stay
    bone. Without the option there is no lung (the cohorts stay as they were)."""
    from dataclasses import replace

    from data.synthetic.anatomy import ScanRange
    from data.synthetic.cohort import spine_levels

    for index in range(3):
        rng = np.random.default_rng([9, index])
        patient = draw_patient(rng)
        plan = draw_plan(rng, CohortOptions(n=1, seed=9, matrix=128, extras=False))
        acq = replace(plan.acq, scan=ScanRange("T6", 10.0, "L3", -10.0), pixel_spacing=3.0)
        vol, g, spine = render(patient, acq, plan.body, rng, spine_levels(5), lungs=True)
        air = {v.level: _air_beside(vol, g, v) for v in spine}
        for level in ("T6", "T7", "T8", "T9"):
            assert min(air[level]) > 0.2, (index, level, air[level])
        assert max(air["L2"]) == 0.0 and max(air["L3"]) == 0.0
        assert max(air["L1"]) < min(air["T8"])
        # the recesses are deepest at the back, beside the spine too: lung in both paravertebral gutters at T12's
        # centre (inside the model's crop), as the real reference CT shows
        t12 = next(v for v in spine if v.level == "T12")
        sl = vol[int(np.argmin(np.abs(g.z - t12.z_center)))]
        gutter_y = (g.y > t12.yc) & (g.y < t12.yc + 35.0)
        for side in (-1, 1):
            gutter_x = (side * (g.x - t12.xc) > t12.width / 2) & (side * (g.x - t12.xc) < 50.0)
            assert (sl[np.ix_(gutter_y, gutter_x)] < -500).mean() > 0.05, (index, side)
        plain, g0, spine0 = render(patient, acq, plan.body, np.random.default_rng([9, index, 1]), spine_levels(5))
        assert all(max(_air_beside(plain, g0, v)) == 0.0 for v in spine0 if v.level in ("T6", "T8"))
        for v in spine:
            if v.level in ("T7", "T12", "L2"):
                k, j, i = (int(np.argmin(np.abs(a - c))) for a, c in ((g.z, v.z_center), (g.y, v.yc), (g.x, v.xc)))
                assert vol[k, j, i] > 0.0, v.level  # the body (trabecular bone) is drawn over the lungs


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Plain IRLS logistic regression (intercept first)."""
    xx = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(xx.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-xx @ beta))
        w = p * (1 - p)
        beta += np.linalg.solve(xx.T @ (xx * w[:, None]), xx.T @ (y - p))
    return beta


def test_outcome_rates_and_effect_sizes() -> None:
    rng = np.random.default_rng(2024)
    pts = [draw_patient(rng) for _ in range(60000)]
    p = np.array([q.p_true for q in pts])
    y = np.array([q.fracture_6m for q in pts])
    # the outcome is drawn from p_true: the event rate matches the mean probability
    assert abs(y.mean() - p.mean()) < 4 * math.sqrt(p.mean() / len(p))
    assert 0.03 < p.mean() < 0.12 and np.median(p) < 0.06  # a base 6-month risk of a few percent
    hu = np.array([q.l1_hu for q in pts])
    t = np.array([q.tscore for q in pts])
    ntx = np.array([q.ntx for q in pts])
    assert 0.55 < np.corrcoef(hu, t)[0, 1] < 0.85
    assert -0.45 < np.corrcoef(hu, np.log(ntx))[0, 1] < -0.15
    age = np.array([q.age for q in pts])
    young = hu[(age < 55) & (age >= 45)].mean()
    old = hu[(age >= 80) & (age < 90)].mean()
    assert 70 < young - old < 110  # about 2.5 HU a year
    # refitting the outcome recovers the documented odds ratios
    g = np.array([q.worst_grade for q in pts])
    x = np.column_stack([(150 - hu) / 35, -1.5 - t, np.log2(ntx / 40), (age - 70) / 10,
                         [q.sex == "M" for q in pts], g == 1, g == 2, g == 3])
    extra = np.array([max(0, sum(v.grade > 0 for v in q.vertebrae) - 1) for q in pts])
    beta = _logistic_fit(np.column_stack([x, extra]).astype(float), y.astype(float))
    expected = [ODDS_RATIOS[k] for k in ("hu_per_sd_lower", "tscore_per_sd_lower", "ntx_per_doubling",
                                          "age_per_decade", "male", "grade_1", "grade_2", "grade_3",
                                          "each_further_fracture")]
    assert np.allclose(np.exp(beta[1:5]), expected[:4], rtol=0.15), np.exp(beta[1:])
    assert np.exp(beta[7]) > np.exp(beta[6]) > 1.5


def test_risk_logit_is_monotone() -> None:
    base = risk_logit(150, -1.5, 40, 70, "F", [])
    assert risk_logit(110, -1.5, 40, 70, "F", []) > base
    assert risk_logit(150, -1.5, 80, 70, "F", []) > base
    assert risk_logit(150, -1.5, 40, 70, "F", [3]) > risk_logit(150, -1.5, 40, 70, "F", [1]) > base


@pytest.mark.system
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed (make system-deps)")
def test_dciodvfy_reports_no_errors(tiny_cohort: Path) -> None:
    files = sorted((tiny_cohort / "studies").rglob("*.dcm"))
    picked = {f.parent.name + f.name[:3]: f for f in files}  # one file per series
    for path in picked.values():
        res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{path.name}: {errors[:3]}"


def test_import_boundary() -> None:
    """inference/ and clinical/ never pull in torch, MONAI or Gradio."""
    code = (
        "import sys, pkgutil, importlib, inference, clinical\n"
        "for pkg in (inference, clinical):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'monai', 'gradio') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    import sys
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ideal_predictors_bound_the_fused_margin() -> None:
    """On the generative model itself, ideal logistic predictors on the true findings rank as expected and the
    ideal fused one reaches the true probability: the margins the baselines can be beaten by are small."""
    from training.ceiling import ceiling

    res = ceiling(30_000, 3)
    assert res["labs_only"][0] < res["image_only"][0] < res["fused"][0] <= res["p_true"][0] + 0.005
    assert res["p_true"][1] <= res["fused"][1] < res["image_only"][1] < res["labs_only"][1]
    assert res["fused"][0] - res["image_only"][0] < 0.03  # the gap a test cohort has to resolve
