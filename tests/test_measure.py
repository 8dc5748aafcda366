"""Transparent per-vertebra measurements (inference.measure) on phantoms and on the reference real CT.

Run with ``-s`` to see the tables of measured vs reference values.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data.synthetic.cohort import CohortOptions, write_cohort
from inference.io import load_any
from inference.measure import Measurement, measure_levels

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "dicom-corpus"
REFERENCE = CORPUS / "accept_totalseg_nifti_with_vertebra_masks"
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
TOTALSEG_LABELS = {"T11": 33, "T12": 32, "L1": 31, "L2": 30, "L3": 29, "L4": 28, "L5": 27}
HU_TOL_SYNTH = 15.0
HU_TOL_REAL = 25.0
RATIO_TOL_REAL = 0.1


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small phantom studies (seed 7: all levels intact)."""
    out = tmp_path_factory.mktemp("measure") / "c"
    write_cohort(out, CohortOptions(n=4, seed=7, matrix=128, workers=1, extras=False))
    return out


@pytest.fixture(scope="module")
def synthetic_measured(synthetic: Path) -> tuple[list[tuple[Measurement, float, float]], int]:
    """Measurements at the true level centres with their true HU and height ratio, and the level count."""
    rows = list(csv.DictReader((synthetic / "truth.csv").open()))
    measured, total = [], 0
    print("\nstudy level  hu(meas) hu(true)  ratio(meas) ratio(true) tilt quality")
    for row in rows:
        study = load_any(synthetic / row["study"])
        result = measure_levels(study, [(lv, float(row[f"{lv}_z_mm"])) for lv in LEVELS])
        for m in result:
            total += 1
            true_hu, true_ratio = float(row[f"{m.level}_hu"]), float(row[f"{m.level}_height_ratio"])
            print(f"{row['study'][-6:]} {m.level:4} {m.trabecular_hu!s:>8} {true_hu:8.1f} "
                  f"{m.height_ratio!s:>11} {true_ratio:11.3f} {m.tilt_deg!s:>5} {m.quality}")
            if m.quality == "ok":
                measured.append((m, true_hu, true_ratio))
            else:
                assert m.trabecular_hu is None and m.height_ratio is None and m.reason
    return measured, total


def test_synthetic_hu(synthetic_measured: tuple[list[tuple[Measurement, float, float]], int]) -> None:
    """Using the true level centres: most levels are delineated and their HU is within 15 HU of truth."""
    measured, total = synthetic_measured
    errors = [m.trabecular_hu - hu for m, hu, _ in measured if m.trabecular_hu is not None]
    print(f"measured {len(measured)}/{total}; HU error mean {np.mean(errors):+.1f}, max |err| "
          f"{np.max(np.abs(errors)):.1f}")
    assert len(measured) >= 0.75 * total
    assert all(abs(e) <= HU_TOL_SYNTH for e in errors)


def test_synthetic_intact_bodies_are_not_called_deformed(
        synthetic_measured: tuple[list[tuple[Measurement, float, float]], int]) -> None:
    """No intact phantom body measures a height ratio below 0.75."""
    intact = [m.height_ratio for m, _, r in synthetic_measured[0] if r == 1.0 and m.height_ratio is not None]
    assert intact and min(intact) >= 0.75


def test_unmeasurable_level_is_flagged(synthetic: Path) -> None:
    """A level centre outside the scan gives a reason, never a number."""
    row = next(iter(csv.DictReader((synthetic / "truth.csv").open())))
    study = load_any(synthetic / row["study"])
    (m,) = measure_levels(study, [("L1", 1.0e4)])
    assert isinstance(m, Measurement) and m.quality == "outside_volume"
    assert m.trabecular_hu is None and m.height_ratio is None and m.genant_grade is None
    assert m.as_dict()["quality"] == "outside_volume"


def _reference_measurements() -> tuple[list[Measurement], dict[str, float]]:
    """Measure the reference CT at the level centres of its TotalSegmentator masks."""
    import nibabel as nib

    from inference.nifti import _canonical

    study = load_any(REFERENCE / "example_ct.nii.gz")
    img: Any = nib.load(str(REFERENCE / "totalseg.nii.gz"))
    labels, _ = _canonical(np.asarray(img.dataobj), img.affine)
    levels = []
    for level, label in TOTALSEG_LABELS.items():
        centroid = np.argwhere(labels == label).mean(axis=0)
        levels.append((level, float((study.affine @ np.r_[centroid, 1.0])[2])))
    report = json.loads((REFERENCE / "spine_report.json").read_text())["results"]
    return measure_levels(study, levels), report


KNOWN_MISSES = {
    "L2": "3 mm slices: the middle height shows no endplate concavity (ratio 0.98 vs 0.84)",
}


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="dicom-corpus not available")
@pytest.mark.parametrize("level", ["L1", "L2", "L3", "L4", "L5"])
def test_reference_ct_against_totalsegmentator(level: str, request: pytest.FixtureRequest) -> None:
    """Trabecular HU within 25 HU of the report's median and height ratio within 0.1 of the report's."""
    if level in KNOWN_MISSES:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_MISSES[level], strict=True))
    results, report = _reference_measurements()
    if level == "L1":  # print the whole table once
        print("\nlevel  HU ours/report   heights ours (a/m/p mm)   report (a/m/p)   ratio ours/report  quality")
        for r in results:
            if r.level not in ("L1", "L2", "L3", "L4", "L5"):
                continue
            ref_h = [report[f"vertebrae_{r.level}_height_{k}_mm"] for k in ("anterior", "middle", "posterior")]
            print(f"{r.level:5} {r.trabecular_hu!s:>6}/{report[f'vertebrae_{r.level}_intensity_median']:<6} "
                  f"{r.height_anterior_mm!s:>5}/{r.height_middle_mm!s:>5}/{r.height_posterior_mm!s:>5}   "
                  f"{ref_h[0]:5}/{ref_h[1]:5}/{ref_h[2]:5}   {r.height_ratio!s:>6}/{min(ref_h) / max(ref_h):.3f}  "
                  f"{r.quality}")
    m = next(r for r in results if r.level == level)
    ref_heights = [report[f"vertebrae_{level}_height_{k}_mm"] for k in ("anterior", "middle", "posterior")]
    assert m.quality == "ok", m.reason
    assert m.trabecular_hu is not None and m.height_ratio is not None
    assert abs(m.trabecular_hu - report[f"vertebrae_{level}_intensity_median"]) <= HU_TOL_REAL
    assert abs(m.height_ratio - min(ref_heights) / max(ref_heights)) <= RATIO_TOL_REAL


def _profile(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_disc_edge_does_not_take_a_band_inside_the_body_for_a_disc() -> None:
    """The reference CT's L1 in miniature (3 mm samples, the level centre at index 10): below the centre a real
    disc (75 HU) under the body, above it a low-density band (95 HU) under a compacted, bright upper part. The
    band scores higher (the bright block is within reach) but its edge lies above the centre; the darker disc
    is the endplate."""
    from inference.measure import disc_edge

    q = _profile([190, 200, 120, 80, 75, 175, 165, 115, 100, 100, 95, 160, 265, 285, 290, 120, 80, 90, 185, 110])
    edge = disc_edge(q, (2.0, 9.5), +1, 3.0)
    assert 4.0 < edge < 5.0  # from the disc (index 4) into the body, not at 11-12


def test_disc_edge_refuses_when_only_a_brighter_dip_remains() -> None:
    """When the best dip's edge passes the centre and the only other dip is brighter than it, no endplate is
    made up: endplates_not_found."""
    from inference.measure import _FailedError, disc_edge

    q = _profile([190, 200, 150, 130, 125, 175, 165, 115, 100, 100, 95, 160, 265, 285, 290, 120, 80, 90, 185, 110])
    with pytest.raises(_FailedError):
        disc_edge(q, (2.0, 9.5), +1, 3.0)


def test_a_run_that_never_starts_ends_where_it_starts_and_a_canal_search_fails_cleanly() -> None:
    """A profile already below the threshold at the start, its next sample a hair different: the run ends at the
    start (interpolating between the two put it 450,000 samples away), and the canal search through it fails
    as a body not found instead of crashing on an empty slice (a study of the family-A test cohort did)."""
    from inference.measure import _canal_row, _FailedError, _run_end

    flat = -50.0 - 1e-4 * np.arange(60)
    assert _run_end(flat, 0, 1, -5.0, gap=1) == 0.0
    assert _run_end(flat, 30, -1, -5.0) == 30.0
    ramp = np.r_[np.full(10, 400.0), np.linspace(400.0, 0.0, 5), np.zeros(10)]
    assert 10.0 < _run_end(ramp, 0, 1, 200.0) < 14.0  # an ordinary crossing is interpolated as before
    try:
        row = _canal_row(flat, 1.0, 30)
    except _FailedError as exc:
        assert exc.code == "body_not_found"
    else:
        assert 0 <= row < flat.size


def test_a_middle_taller_than_both_edges_is_an_endplate_missed_not_a_deformity() -> None:
    """A sagittal patch of three bodies whose middle band's upper endplate lies 6 mm above the anterior and
    posterior ones (a neighbour's endplate taken on the middle profile): no height ratio is made of it (an intact
    phantom body measured 0.66 this way on a coarse 3.6 mm study); the same bodies with flat endplates measure."""
    from inference.measure import PROFILE_AT, _FailedError, profile_heights

    img = np.zeros((110, 40))

    def body(lo: int, hi: int, cols: slice = slice(None)) -> None:
        img[lo:hi, cols] = 250.0
        img[lo:lo + 2, cols] = img[hi - 2:hi, cols] = 600.0

    for lo, hi in ((10, 40), (48, 78), (86, 106)):
        body(lo, hi)
    heights, _ = profile_heights(img, (5.0, 35.0), ((48, 63), (63, 86)), 1.0, 1.0, 1.0)
    assert heights == pytest.approx((30.6, 28.9, 30.6), abs=0.5)
    mid = round(PROFILE_AT[1] * 30 + 5)
    cols = slice(mid - 4, mid + 5)
    img[78:92, cols] = 0.0
    body(48, 84, cols)
    body(90, 106, cols)
    with pytest.raises(_FailedError, match="middle height 35 mm exceeds") as err:
        profile_heights(img, (5.0, 35.0), ((48, 63), (63, 86)), 1.0, 1.0, 1.0)
    assert err.value.code == "endplates_not_found"


def test_disc_edge_finds_an_ordinary_disc() -> None:
    """Intact body between two discs: the lower endplate is where the profile climbs out of the lower disc."""
    from inference.measure import disc_edge

    q = _profile([200, 210, 90, 70, 80, 220, 200, 190, 200, 195, 200, 190, 205, 200, 215, 80, 70, 210, 200, 190])
    assert 4.0 < disc_edge(q, (1.0, 9.5), +1, 3.0) < 5.0
    assert 14.0 < disc_edge(q, (10.5, 18.0), -1, 3.0) < 15.0


def test_measure_check_summarises_a_cohort(synthetic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m training.measure_check`` at the true centres: every figure comes from the cohort (all intact
    here, so no fractured level), and a folder without truth.csv is a usage error."""
    from training.measure_check import check, main

    out = check(synthetic, "truth")
    assert out["studies"] == 4 and out["levels"] == 28 and 0 < out["measured"] <= 28
    assert out["fractured_measured"] == 0 and out["intact"] == out["measured"]
    assert out["hu_mae"] < 10.0 and out["intact_below_0.8"] <= out["intact"]
    main(["--cohort", str(synthetic), "--levels", "truth", "--n", "2"])
    assert "2 studies (0 skipped): measured" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--cohort", str(synthetic / "studies")])


def test_measure_check_skips_a_bad_study_and_refuses_a_bad_truth(synthetic: Path, tmp_path: Path) -> None:
    """A study the reader refuses (here: missing) is reported and skipped, the rest measured; a truth.csv without
    the per-level columns, or ``--n 0``, is a usage error, not a traceback."""
    import shutil

    from training.measure_check import check, main

    cohort = tmp_path / "c"
    shutil.copytree(synthetic / "studies" / "S00000", cohort / "studies" / "S00000")
    shutil.copy(synthetic / "truth.csv", cohort / "truth.csv")  # S00001-S00003 are not there
    out = check(cohort, "truth")
    assert out["studies"] == 4 and out["skipped"] == 3 and out["levels"] == 7 and out["measured"] > 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "truth.csv").write_text("study,p_true\nstudies/X,0.1\n")
    for argv in (["--cohort", str(tmp_path / "bad")], ["--cohort", str(cohort), "--n", "0"]):
        with pytest.raises(SystemExit):
            main(argv)


def _whole_band(vol: np.ndarray, col: float, half: float, rows: tuple[int, int] | None = None,
                slices: tuple[int, int] | None = None) -> np.ndarray:
    """The mid-sagittal band as it was computed before (issue 20): over the whole volume, whatever is read."""
    from inference.measure import _band

    return _band(np.moveaxis(vol, 2, 0), col, half, axis=0)


def _whole_grid_trabecular_hu(vol: np.ndarray, sp: tuple[float, float, float], body: Any,
                              edges: tuple[float, float]) -> tuple[float, int]:
    """:func:`inference.measure.trabecular_hu` as it was before (issue 20): the ellipse on the whole slice grid."""
    from inference.measure import CORTEX_MARGIN_MM, MIN_ROI_VOXELS, ROI_FRACTION, _FailedError

    half_y, half_x = (body.y_post - body.y_ant) / 2.0, (body.x_left - body.x_right) / 2.0
    ry = min(ROI_FRACTION * half_y, half_y - CORTEX_MARGIN_MM / sp[1])
    rx = min(ROI_FRACTION * half_x, half_x - CORTEX_MARGIN_MM / sp[2])
    mid, half_z = (edges[0] + edges[1]) / 2.0, 0.2 * (edges[1] - edges[0])
    ks = np.arange(max(0, int(np.ceil(mid - half_z))), min(vol.shape[0], int(np.floor(mid + half_z)) + 1))
    if ry <= 0 or rx <= 0 or ks.size == 0:
        raise _FailedError("roi_too_small", "the body is too small for a trabecular ROI")
    yy, xx = np.mgrid[0:vol.shape[1], 0:vol.shape[2]]
    values = vol[ks][:, ((yy - body.yc) / ry) ** 2 + ((xx - body.xc) / rx) ** 2 <= 1.0]
    if values.size < MIN_ROI_VOXELS:
        raise _FailedError("roi_too_small", f"only {values.size} voxels in the trabecular ROI")
    return float(np.median(values)), int(values.size)


def _whole_slab_bands(vol: np.ndarray, sp: tuple[float, float, float], k0: float) -> np.ndarray:
    """The axial slab as :func:`inference.measure.find_body` read it before (issue 20): all of it, smoothed."""
    from scipy import ndimage

    half, k = max(0, int(4.0 / sp[0])), round(k0)
    sub = vol[max(0, k - half): min(vol.shape[0], k + half + 1)].astype(np.float64)
    return np.asarray(ndimage.gaussian_filter(sub.mean(axis=0), (1.0 / sp[1], 1.0 / sp[2])))


def test_measurement_on_the_slabs_equals_the_whole_volume_one(synthetic: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The heights and the ROI read only the block of the volume each level needs (issue 20: the reports'
    measurement of a 512 x 512 x 300 study took 0.24 s, mostly means over the whole volume); every measurement
    of every phantom level, tilted bodies included, is bit for bit the one of the whole-volume computation."""
    from inference import measure

    counts = {"upright": 0, "own frame": 0}
    for row in csv.DictReader((synthetic / "truth.csv").open()):
        study = load_any(synthetic / row["study"])
        levels = [(lv, float(row[f"{lv}_z_mm"])) for lv in LEVELS]
        for path, tilted_deg in (("upright", measure.TILTED_DEG), ("own frame", 0.0)):  # 0: all in their frame
            monkeypatch.setattr(measure, "TILTED_DEG", tilted_deg)
            new = measure_levels(study, levels)
            with monkeypatch.context() as m:
                m.setattr(measure, "sagittal_band", _whole_band)
                m.setattr(measure, "trabecular_hu", _whole_grid_trabecular_hu)
                m.setattr(measure, "AxialBands", _whole_slab_bands)
                old = measure_levels(study, levels)
            assert new == old
            counts[path] += sum(x.quality == "ok" for x in new)
    print(f"\nbodies measured the same way: {counts}")
    assert min(counts.values()) >= 15


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_sagittal_patch_on_a_block_equals_the_whole_volume_one(dtype: type,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A tilted body's patch samples the band only where it reads it, near the volume's ends included (where
    the interpolation clamps to the edge): the same patch as from the whole volume's band, bit for bit."""
    from inference import measure

    rng = np.random.default_rng(20)
    vol = rng.normal(100.0, 300.0, (60, 90, 80)).astype(dtype)
    sp = (1.25, 0.8, 0.7)
    for k0, row0, tilt, col in [(30.0, 45.0, 20.0, 40.3), (2.0, 5.0, -35.0, 1.0), (58.5, 88.0, 48.0, 79.2),
                                (-30.0, 45.0, 10.0, 40.0), (95.0, 120.0, 0.0, 60.0)]:
        frame = measure.SagittalFrame(k0, row0, tilt)
        new = frame.sample(vol, sp, col)
        with monkeypatch.context() as m:
            m.setattr(measure, "sagittal_band", _whole_band)
            old = frame.sample(vol, sp, col)
        assert not np.isnan(new).any()
        np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_axial_bands_equal_the_whole_slabs(dtype: type) -> None:
    """Each band find_body reads, computed on its rows or columns and the smoothing's reach, equals the band of
    the whole smoothed slab bit for bit: in the middle, at the slab's edges (where the smoothing reflects) and
    for bands of one pixel; the slab itself is the one of numpy's float64 mean."""
    from inference import measure

    rng = np.random.default_rng(21)
    vol = rng.normal(100.0, 300.0, (30, 96, 80)).astype(dtype)
    for sp in [(1.0, 0.78125, 0.78125), (2.5, 0.7, 1.3), (0.6, 2.0, 0.5)]:
        for k0 in (0.0, 14.4, 29.0):
            whole = _whole_slab_bands(vol, sp, k0)
            np.testing.assert_array_equal(measure.axial_slab(vol, sp, k0), whole)
            bands = measure.AxialBands(vol, sp, k0)
            for axis in (0, 1):
                for centre, half in [(40.3, 5.1), (0.0, 3.0), (1.2, 0.2), (95.0, 6.0), (79.0, 7.5), (50.0, 0.0)]:
                    np.testing.assert_array_equal(bands.band(centre, half, axis),
                                                  measure._band(whole, centre, half, axis))


def test_a_body_located_off_the_column_is_not_measured() -> None:
    """A body delineated far in front of the line through its neighbours (a T11 found 45 mm in front of T12 and
    L1 on a phantom with lungs, measured 42 HU too dense) is taken out, and only it; a smooth lordosis bending 10 mm
    a level keeps every body."""
    from types import SimpleNamespace

    from inference.measure import OFF_LINE_MM, _Body, off_line

    study = SimpleNamespace(spacing_mm=(1.0, 1.0, 1.0))

    def bodies(ys: list[float]) -> dict[int, tuple[float, _Body]]:
        return {i: (35.0 * i, _Body(y - 15.0, y + 15.0, 0.0, 40.0, 150.0)) for i, y in enumerate(ys)}

    curve = [200.0 + 10.0 * i - 1.0 * i * i for i in range(7)]  # the y step changes by 2 mm a level
    assert off_line(study, bodies(curve)) == {}
    bad = list(curve)
    bad[6] -= 45.0
    out = off_line(study, bodies(bad))
    assert list(out) == [6] and "off the line" in out[6]
    bad = list(curve)
    bad[3] += OFF_LINE_MM + 5.0
    assert list(off_line(study, bodies(bad))) == [3]
    assert off_line(study, bodies([200.0, 260.0])) == {}
