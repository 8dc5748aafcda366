"""Real CT and anatomy coverage with the bundled default model.

Every accept_* case of the corpus goes through ``vfrisk predict`` to a result or to a one-line refusal (never a
crash); scans that do not show the thoracolumbar spine are refused as spine_not_covered, naming what was found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.bundle import default_bundle
from inference.errors import InputError
from inference.io import load_any
from inference.labs import Labs
from inference.spec import COUNTED_LEVELS
from inference.study import z_slab
from tests.conftest import CORPUS
from training.real_check import body_at, check_scan, mask_bodies, predict, scan_named

pytestmark = pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle")
ACCEPT = sorted(p for p in CORPUS.glob("accept_*")) if CORPUS.is_dir() else []
REFERENCE = CORPUS / "accept_totalseg_nifti_with_vertebra_masks"


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from inference.engine import Engine

    return Engine()


@pytest.mark.parametrize("case", ACCEPT, ids=[p.name for p in ACCEPT])
def test_every_accept_case_scores_or_is_refused_cleanly(case: Path) -> None:
    target = case / "example_ct.nii.gz" if (case / "example_ct.nii.gz").is_file() else case
    res = subprocess.run([sys.executable, "-m", "vfrisk.cli", "predict", str(target), "--ntx", "45",
                          "--bmd-tscore", "-1.8", "--age", "55", "--sex", "M"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode in (0, 2), res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    if res.returncode == 2:
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    else:
        result = json.loads(res.stdout)
        assert sum(v["present"] and v["level"] in COUNTED_LEVELS for v in result["vertebrae"]) >= 2


def _reference(engine):  # type: ignore[no-untyped-def]
    """The model's result on the reference CT and TotalSegmentator's level centres (LPS z, mm), as
    ``python -m training.real_check`` computes them."""
    scan = scan_named("example_ct", REFERENCE.parent.parent)
    result = predict(engine, scan)
    assert isinstance(result, dict), result
    ref = {b.level: b.z_mm for b in mask_bodies(scan)}
    report = json.loads((REFERENCE / "spine_report.json").read_text())["results"]
    return result["vertebrae"], ref, report


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no corpus")
@pytest.mark.parametrize("level", ["L1", "L2", "L3", "L4", "L5"])
def test_reference_ct_bodies_found_named_and_hu(engine, level: str,  # type: ignore[no-untyped-def]
                                               request: pytest.FixtureRequest) -> None:
    """On the real T12-S1 CT every whole body TotalSegmentator's masks show (L1-L5) is found within 10 mm of the
    mask's centre and named right or marked uncertain; its trabecular HU (the transparent ROI) is within 25 HU of
    the report's median."""
    if level in NOT_FOUND:
        request.applymarker(pytest.mark.xfail(reason=NOT_FOUND[level], strict=True))
    found, ref, report = _reference(engine)
    body = body_at(found, ref[level])
    print(f"\n{level}: mask centre {ref[level]:.1f} mm; reported "
          f"{body and (body['level'], body['z_mm'], body['name_confidence'], body['name_uncertain'])}; HU learned "
          f"{body and body['trabecular_hu']}, measured {body and body['measured']['trabecular_hu']}, report "
          f"{report[f'vertebrae_{level}_intensity_median']}")
    assert body is not None, f"no body reported within 10 mm of {level}"
    assert body["level"] == level or body["name_uncertain"]
    assert abs(body["measured"]["trabecular_hu"] - report[f"vertebrae_{level}_intensity_median"]) < 25.0


WHOLE = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
"""The bodies the reference CT's masks show whole (``training.real_check.mask_bodies``): T12's posterior elements
touch the top slice, its body is whole, as on the 90 mm slab cut from the top of this scan; T11 is a sliver."""
WHOLE_MISSES: dict[str, str] = {
    "S1": "the default models since 2026.12.07 find no body at the real reference CT's S1 (steeper and further "
          "back than any phantom's; a model of 2026.12.06 found it, named L6 and uncertain)",
}
"""Whole bodies of the masks the default model misses (strict expected failures: a model that finds them again
fails the test until the entry is removed)."""


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no corpus")
@pytest.mark.parametrize("level", WHOLE)
def test_reference_ct_every_whole_body_of_the_masks(engine, level: str,  # type: ignore[no-untyped-def]
                                                    request: pytest.FixtureRequest) -> None:
    """Every whole body the reference CT's masks show, S1 included, is found within 10 mm and named right or
    marked uncertain (the figures of ``python -m training.real_check``)."""
    if level in WHOLE_MISSES:
        request.applymarker(pytest.mark.xfail(reason=WHOLE_MISSES[level], strict=True))
    scan = scan_named("example_ct", REFERENCE.parent.parent)
    assert tuple(b.level for b in mask_bodies(scan) if b.whole) == WHOLE
    body = next(b for b in check_scan(scan, predict(engine, scan)).bodies if b.level == level)
    assert body.found, f"no body reported within 10 mm of {level}"
    assert body.reported == level or body.uncertain, f"{level} named {body.reported} and sure"


MEASURE_MISSES = {"L2": "3 mm slices: no endplate concavity in the middle height (ratio 0.99 vs the report's 0.84)"}
NOT_FOUND: dict[str, str] = {}
"""Real-CT misses of the default model, kept visible as strict expected failures (README, "Real scans"); the
issue-19 model's L5, found 7 mm high and not delineated by the measurement, is found and measured by this one."""


@pytest.fixture(scope="module")
def reference_result(engine):  # type: ignore[no-untyped-def]
    """What a user gets from ``vfrisk predict`` on the reference CT, with TotalSegmentator's report."""
    named, ref, report = _reference(engine)
    found = {lv: body for lv in ("L1", "L2", "L3", "L4", "L5") if (body := body_at(named, ref[lv])) is not None}
    print("\nthe whole pipeline (the bodies the model found, transparent measurement) on the reference CT:")
    print("level  HU measured/learned/report   heights ours a/m/p (mm)   report a/m/p   ratio ours/report")
    for level in found:
        m, ref_h = found[level]["measured"], [report[f"vertebrae_{level}_height_{k}_mm"]
                                              for k in ("anterior", "middle", "posterior")]
        print(f"{level:5}  {m['trabecular_hu']!s:>6}/{found[level]['trabecular_hu']!s:>6}/"
              f"{report[f'vertebrae_{level}_intensity_median']:<6}  {m['height_anterior_mm']!s:>5}/"
              f"{m['height_middle_mm']!s:>5}/{m['height_posterior_mm']!s:>5}   {ref_h[0]}/{ref_h[1]}/{ref_h[2]}"
              f"   {m['height_ratio']!s:>6}/{min(ref_h) / max(ref_h):.3f}")
    return found, report


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no corpus")
@pytest.mark.parametrize("level", ["L1", "L2", "L3", "L4", "L5"])
def test_reference_ct_measured_through_the_pipeline(reference_result, level: str,  # type: ignore[no-untyped-def]
                                                    request: pytest.FixtureRequest) -> None:
    """The transparent measurement a user sees (at the bodies the model found, without TotalSegmentator's
    masks): trabecular HU within 25 HU of the report's median and height ratio within 0.1 of the report's."""
    if level in MEASURE_MISSES or level in NOT_FOUND:
        request.applymarker(pytest.mark.xfail(reason=MEASURE_MISSES.get(level) or NOT_FOUND[level], strict=True))
    found, report = reference_result
    assert level in found, f"no body found within 10 mm of {level}"
    m = found[level]["measured"]
    heights = [report[f"vertebrae_{level}_height_{k}_mm"] for k in ("anterior", "middle", "posterior")]
    assert m["quality"] == "ok"
    assert abs(m["trabecular_hu"] - report[f"vertebrae_{level}_intensity_median"]) <= 25.0
    assert abs(m["height_ratio"] - min(heights) / max(heights)) <= 0.1


def test_pelvis_only_slab_is_refused(engine, tiny_cohort: Path) -> None:  # type: ignore[no-untyped-def]
    import csv

    truth = next(iter(csv.DictReader((tiny_cohort / "truth.csv").open())))
    study = load_any(tiny_cohort / truth["study"])
    slab = z_slab(study, -1e9, float(truth["L5_z_mm"]) - 20)
    with pytest.raises(InputError) as exc:
        engine.predict(slab, Labs(45.0, -1.8, 70.0, "F"))
    assert exc.value.code == "spine_not_covered" and "levels found" in exc.value.message


def test_chest_ct_stopping_at_t10_is_refused(engine, tiny_chest_cohort: Path) -> None:  # type: ignore[no-untyped-def]
    """A chest scan that ends at the T10/T11 disc (T8-T10 of a phantom with lungs only): spine_not_covered,
    naming the levels found, never a number."""
    import csv

    for truth in list(csv.DictReader((tiny_chest_cohort / "truth.csv").open()))[:3]:
        study = load_any(tiny_chest_cohort / truth["study"])
        t11, t12 = float(truth["T11_z_mm"]), float(truth["T12_z_mm"])
        chest = z_slab(study, t11 + (t11 - t12) / 2, 1e9)
        with pytest.raises(InputError) as exc:
            engine.predict(chest, Labs(45.0, -1.8, 70.0, "F"))
        assert exc.value.code == "spine_not_covered" and "levels found" in exc.value.message


@pytest.mark.skipif(not (CORPUS / "accept_pycerr_hn_constant_instancenumber").is_dir(), reason="no corpus")
def test_head_and_neck_ct_is_refused_by_anatomy(engine) -> None:  # type: ignore[no-untyped-def]
    """Even read with relaxed coverage limits, a head-and-neck CT gets no number: spine_not_covered."""
    scan = scan_named("accept_pycerr_hn_constant_instancenumber", CORPUS.parent)
    assert scan.relaxed and not scan.masks
    result = predict(engine, scan, relaxed=True)
    assert isinstance(result, str) and result.startswith("spine_not_covered: "), result


@pytest.mark.skipif(not (CORPUS / "accept_totalseg_abdomen_j2k_empty_uids").is_dir(), reason="no corpus")
def test_twenty_slice_abdomen_is_refused_by_the_reader_and_by_anatomy(engine) -> None:  # type: ignore[no-untyped-def]
    """The real 20-slice abdominal slab (38 mm at about T11-T12): the reader refuses it (insufficient_coverage,
    naming the extent), and read with relaxed limits the model's anatomy check refuses it too (spine_not_covered,
    naming the levels found); never a number."""
    scan = scan_named("accept_totalseg_abdomen_j2k_empty_uids", CORPUS.parent)
    result = predict(engine, scan)
    assert isinstance(result, str) and result.startswith("insufficient_coverage: ") and "38 mm" in result, result
    result = predict(engine, scan, relaxed=True)
    assert isinstance(result, str) and result.startswith("spine_not_covered: ") and "levels found" in result, result
