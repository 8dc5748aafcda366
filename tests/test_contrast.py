"""Contrast enhancement (issue 19): the aorta's lumen on small synthetic slabs and volumes, the header's contrast
tags (a missing tag is not given), how the two are joined, the corrected trabecular HU, the warning, and the real
scans in ../shared (the contrast-enhanced crop reads arterial, the unenhanced reference CT reads unenhanced)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from inference.contrast import (
    ARTERIAL_MIN_HU,
    CORRECTIONS,
    ENHANCED_MIN_HU,
    AortaReading,
    Contrast,
    assess,
    corrected,
    decide,
    header_says,
    lumen_hu,
    phase_of,
    read_aorta,
)
from inference.dicom.contrast import contrast_tags
from inference.findings import Measured, Vertebra
from inference.study import ContrastTags, Study
from tests.conftest import CORPUS, REPO

REAL = REPO.parent / "shared" / "real-spine" / "totalseg-extra"
REFERENCE = CORPUS / "accept_totalseg_nifti_with_vertebra_masks"
SPACING = (2.0, 1.0, 1.0)


def _disc(img: np.ndarray, centre: tuple[float, float], radius: float, value: float) -> None:
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    img[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2] = value


def slab(aorta_hu: float | None, ivc_hu: float | None = None, noise: float = 8.0, seed: int = 0) -> np.ndarray:
    """A 1 mm axial slab (rows anterior to posterior, columns right to left): body outline of fat and soft
    tissue, a vertebral body (cortex 700 HU, cancellous bone 180 HU) centred at (120, 100), the canal behind it,
    the aorta (radius 10 mm) in front of it and to its left, the vena cava to its right."""
    img = np.full((200, 200), -1000.0)
    yy, xx = np.mgrid[0:200, 0:200]
    img[((yy - 100) / 95) ** 2 + ((xx - 100) / 95) ** 2 <= 1] = -100.0  # fat
    img[((yy - 100) / 80) ** 2 + ((xx - 100) / 80) ** 2 <= 1] = 40.0  # soft tissue
    _disc(img, (85, 100), 26, -90.0)  # retroperitoneal fat round the great vessels
    _disc(img, (120, 100), 19, 700.0)
    _disc(img, (120, 100), 16, 180.0)
    _disc(img, (146, 100), 7, 10.0)  # canal
    img[146 - 9:146 + 10, 100 - 10:100 + 11][img[146 - 9:146 + 10, 100 - 10:100 + 11] == 40.0] = 600.0
    _disc(img, (146, 100), 7, 10.0)
    if aorta_hu is not None:
        _disc(img, (88, 115), 10, aorta_hu)
    if ivc_hu is not None:
        _disc(img, (90, 78), 10, ivc_hu)
    return img + np.random.default_rng(seed).normal(0.0, noise, img.shape)


COLUMN = (130, 100)
"""The column point of the synthetic slab (inside the body, near its back, as ``spine_center`` finds it)."""


@pytest.mark.parametrize("hu", [140.0, 180.0, 330.0, 450.0])
def test_an_enhanced_aorta_beside_the_body_is_read_at_its_hu(hu: float) -> None:
    assert lumen_hu(slab(hu, ivc_hu=hu * 0.8), SPACING[1:], COLUMN) == pytest.approx(hu, abs=6.0)


def test_no_lumen_in_an_unenhanced_slab_the_body_and_the_vena_cava_are_not_one() -> None:
    assert lumen_hu(slab(45.0), SPACING[1:], COLUMN) is None
    assert lumen_hu(slab(45.0, ivc_hu=170.0), SPACING[1:], COLUMN) is None  # right of the column: the vena cava
    bright_body = slab(45.0)
    _disc(bright_body, (120, 100), 16, 230.0)  # dense cancellous bone, ringed by cortex: not a lumen
    assert lumen_hu(bright_body, SPACING[1:], COLUMN) is None


def test_a_lumen_touching_the_body_stands_apart_at_a_higher_threshold() -> None:
    img = slab(None)
    _disc(img, (94, 112), 10, 320.0)  # pressed against the body's front, its edge on the cortex
    assert lumen_hu(img, SPACING[1:], COLUMN) == pytest.approx(320.0, abs=8.0)


def volume(aorta_hu: float | None, n: int = 40, tags: ContrastTags | None = None) -> Study:
    """A short axial volume of the slab (2 mm slices, the level centre at z = 40 mm)."""
    vol = np.stack([slab(aorta_hu, seed=k) for k in range(n)]).astype(np.float32)
    affine = np.array([[0, 0, SPACING[2], 0], [0, SPACING[1], 0, 0], [SPACING[0], 0, 0, 0], [0, 0, 0, 1.0]])
    return Study(volume=vol, spacing_mm=SPACING, affine=affine, study_instance_uid="1.2", series_instance_uid="1.2.3",
                 contrast_tags=tags)


def test_the_aorta_beside_the_levels_given_tells_the_phase() -> None:
    arterial = read_aorta(volume(300.0), [("L1", 40.0), ("L2", 20.0)], COLUMN)
    assert arterial.phase == "arterial" and arterial.levels == ("L1", "L2") and arterial.looked == 2
    assert arterial.hu == pytest.approx(300.0, abs=6.0)
    assert read_aorta(volume(160.0), [("L1", 40.0)], COLUMN).phase == "portal_venous"
    assert read_aorta(volume(45.0), [("L1", 40.0)], COLUMN) == AortaReading(None, (), 1)
    assert read_aorta(volume(300.0), [("L1", 500.0)], COLUMN).phase is None  # outside the scan: not told
    assert read_aorta(volume(300.0), [], COLUMN).phase is None


def test_the_aorta_not_in_view_is_not_told() -> None:
    study = volume(300.0)
    study.volume[:, :95, :] = -1000.0  # a small field of view that cuts through the aorta
    assert read_aorta(study, [("L1", 40.0)], COLUMN) == AortaReading(None, (), 0)


def test_phase_thresholds() -> None:
    assert phase_of(ENHANCED_MIN_HU - 1) == "none" and phase_of(ENHANCED_MIN_HU) == "portal_venous"
    assert phase_of(ARTERIAL_MIN_HU - 1) == "portal_venous" and phase_of(ARTERIAL_MIN_HU) == "arterial"


@pytest.mark.parametrize(("tags", "says"), [
    (None, None),  # no header (NIfTI)
    (ContrastTags(), None),  # no tags: not given, never "unenhanced"
    (ContrastTags(agent="OMNIPAQUE 350", route="IV"), True),
    (ContrastTags(agent="APPLIED"), True),
    (ContrastTags(route="INTRAVENOUS"), True),
    (ContrastTags(agent="NONE"), False),
    (ContrastTags(agent=" no "), False),
    (ContrastTags(agent="BARIUM", route="ORAL"), None),  # oral contrast does not enhance bone
])
def test_what_the_header_says(tags: ContrastTags | None, says: bool | None) -> None:
    assert header_says(tags) is says


def test_contrast_tags_are_read_as_written_and_missing_is_none() -> None:
    ds = Dataset()
    assert contrast_tags(ds) == ContrastTags()
    ds.ContrastBolusAgent = ""
    ds.ContrastBolusVolume = "90"
    ds.ContrastBolusRoute = "IV"
    ds.ContrastBolusStartTime = "101350"
    assert contrast_tags(ds) == ContrastTags(None, "IV", "101350", 90.0)
    item = Dataset()
    item.CodeMeaning = "Iohexol"
    ds.ContrastBolusAgentSequence = [item]
    assert contrast_tags(ds).agent == "Iohexol"


@pytest.mark.skipif(not (CORPUS / "accept_totalseg_abdomen_j2k_empty_uids").is_dir(), reason="no corpus")
def test_a_real_header_that_names_its_agent_applied() -> None:
    first = sorted((CORPUS / "accept_totalseg_abdomen_j2k_empty_uids").iterdir())[0]
    tags = contrast_tags(pydicom.dcmread(first, stop_before_pixels=True))
    assert tags.agent == "APPLIED" and tags.route is None and tags.volume_ml == 0.0
    assert header_says(tags) is True


@pytest.mark.parametrize(("hu", "looked", "header", "phase", "source"), [
    (320.0, 2, None, "arterial", "aorta"),
    (320.0, 2, True, "arterial", "both"),
    (160.0, 2, True, "portal_venous", "both"),
    (160.0, 2, False, "portal_venous", "aorta"),  # the image outweighs a header that says none
    (None, 2, None, "none", "aorta"),
    (None, 2, False, "none", "both"),
    (None, 2, True, "enhanced_unknown_phase", "header"),
    (None, 0, True, "enhanced_unknown_phase", "header"),  # no aorta to read, the header says contrast
    (None, 0, False, "none", "header"),
    (None, 0, None, None, None),  # nothing tells: not told
])
def test_the_aorta_and_the_header_joined(hu: float | None, looked: int, header: bool | None, phase: str | None,
                                         source: str | None) -> None:
    c = decide(AortaReading(hu, ("L1",) if hu else (), looked), header)
    assert (c.phase, c.source, c.header) == (phase, source, header)
    assert c.correction == (CORRECTIONS[phase] if phase not in (None, "none") else None)


def test_corrections_are_cited_per_phase() -> None:
    assert CORRECTIONS["arterial"].offset_hu == 13.5 and CORRECTIONS["arterial"].cite == "Pompe 2015"
    assert CORRECTIONS["portal_venous"].offset_hu == 11.2 and CORRECTIONS["portal_venous"].cite == "Pickhardt 2016"
    assert all(c.sd_hu == 19.2 and "Osteoporos Int 2016" in PICKHARDT for c, PICKHARDT in
               ((c, CORRECTIONS["portal_venous"].source) for c in CORRECTIONS.values()))


def test_the_corrected_hu_and_its_sd() -> None:
    arterial = decide(AortaReading(320.0, ("L1",), 1), None)
    m = corrected(Measured("ok", 150.0), arterial)
    assert m.trabecular_hu == 150.0 and m.trabecular_hu_corrected == 136.5 and m.trabecular_hu_corrected_sd == 19.2
    for unchanged in (Measured("ok", 150.0), Measured("body_not_found")):
        assert corrected(unchanged, decide(AortaReading(None, (), 3), None)) == unchanged
    assert corrected(Measured("body_not_found"), arterial) == Measured("body_not_found")


def test_the_warning_names_the_phase_and_the_unenhanced_training() -> None:
    (line,) = decide(AortaReading(160.0, ("L1",), 1), True).warnings()
    assert "portal venous phase" in line and "aorta and the header" in line
    assert "the model's risk is learned from unenhanced-bone HU relationships" in line and "\n" not in line
    assert decide(AortaReading(None, (), 2), None).warnings() == []
    assert decide(AortaReading(None, (), 0), None).warnings() == []


def test_the_json_round_trip() -> None:
    for c in (decide(AortaReading(320.0, ("T12", "L1"), 2), True), decide(AortaReading(None, (), 0), None)):
        assert Contrast.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_assess_reads_the_levels_found_above_the_bifurcation_and_the_header() -> None:
    """The column is found by the product's own finder; L5 (below the bifurcation) and levels not found are not
    looked at."""
    found = [Vertebra("L1", True, 0, 1.0, 150.0, 40.0), Vertebra("L5", True, 0, 1.0, 150.0, 500.0),
             Vertebra("L2", False, None, None, None, None)]
    c = assess(volume(300.0), found)
    assert (c.phase, c.source, c.aorta_levels, c.header) == ("arterial", "aorta", ("L1",), None)
    assert assess(volume(45.0), found).phase == "none"
    tagged = assess(volume(45.0, tags=ContrastTags(agent="VISIPAQUE 320", route="IV")), found)
    assert (tagged.phase, tagged.source, tagged.header) == ("enhanced_unknown_phase", "header", True)
    assert assess(volume(300.0), found[1:]).phase is None  # only L5 and a level not found: nothing to read


# Real scans (skipped where ../shared is absent)

@pytest.mark.skipif(not (REAL / "aortic_ct_crop.nii.gz").is_file(), reason="no real-spine material")
def test_the_real_contrast_enhanced_crop_reads_arterial() -> None:
    """The TotalSegmentator aortic crop (early arterial, ``aortic_ct_crop_contrast_phase.json``; a dissected aorta)
    at its T12, placed by its mask (the product finds no levels in this crop and refuses it)."""
    import nibabel as nib

    from inference.io import load_any
    from inference.nifti import _canonical

    study = load_any(REAL / "aortic_ct_crop.nii.gz")
    img = nib.load(str(REAL / "aortic_ct_crop_vertebrae_T12.nii.gz"))
    mask, _ = _canonical(np.asarray(img.dataobj), img.affine)
    k, row, col = (float(x) for x in np.array(np.nonzero(mask)).mean(axis=1))
    z = float((study.affine @ np.array([k, row, col, 1.0]))[2])
    reading = read_aorta(study, [("T12", z)], (round(row), round(col)))
    assert json.loads((REAL / "aortic_ct_crop_contrast_phase.json").read_text())["phase"].startswith("arterial")
    assert reading.phase == "arterial" and reading.hu is not None and reading.hu >= ARTERIAL_MIN_HU
    c = decide(reading, header_says(study.contrast_tags))
    assert (c.phase, c.source, c.header) == ("arterial", "aorta", None)


@pytest.mark.skipif(not (REFERENCE / "example_ct.nii.gz").is_file(), reason="no corpus")
def test_the_real_unenhanced_reference_ct_reads_unenhanced() -> None:
    """The reference CT (TotalSegmentator's example; its aorta mask reads 43 HU on the same patient's slab in
    ../shared/real-spine) at the level centres of its vertebra masks."""
    import nibabel as nib

    from inference.io import load_any
    from inference.nifti import _canonical

    study = load_any(REFERENCE / "example_ct.nii.gz")
    img = nib.load(str(REFERENCE / "totalseg.nii.gz"))
    labels, _ = _canonical(np.asarray(img.dataobj), img.affine)
    codes = {"T12": 32, "L1": 31, "L2": 30, "L3": 29, "L4": 28}
    levels = [(lv, float((study.affine @ np.array([np.nonzero(labels == c)[0].mean(), 0, 0, 1.0]))[2]))
              for lv, c in codes.items()]
    reading = read_aorta(study, levels)
    assert reading.looked >= 4 and reading.phase == "none"
    assert decide(reading, header_says(study.contrast_tags)).phase == "none"



@pytest.mark.skipif(not (REFERENCE / "example_ct.nii.gz").is_file(), reason="no corpus")
def test_the_product_reads_the_reference_ct_unenhanced(scoring_bundle: Path) -> None:
    """Through ``vfrisk predict``'s engine: the contrast is assessed at the levels the model finds, the result
    says unenhanced (NIfTI: no header), no correction, no contrast warning."""
    from inference.engine import Engine
    from inference.io import load_any
    from inference.labs import Labs

    result = Engine(scoring_bundle).predict(load_any(REFERENCE / "example_ct.nii.gz"), Labs(45.0, -1.8, 55.0, "M"))
    assert result.contrast is not None
    assert (result.contrast.phase, result.contrast.source, result.contrast.header) == ("none", "aorta", None)
    assert not any("unenhanced-bone" in w for w in result.warnings)
    assert all(v.measured.trabecular_hu_corrected is None for v in result.found_levels() if v.measured)
    assert result.to_json()["contrast"]["phase"] == "none"


def test_the_dicom_reader_carries_the_contrast_tags_of_the_chosen_series(tmp_path: Path) -> None:
    """Through ``load_any`` and the lazy crop path alike; a series without them reads all None (not given)."""
    from test_dicom_synth import phantom, write_series

    from inference.dicom import load_crop
    from inference.io import load_any
    from inference.spec import PreprocessSpec

    plain, tagged = tmp_path / "plain", tmp_path / "tagged"
    write_series(plain, phantom())
    for path in write_series(tagged, phantom()):
        ds = pydicom.dcmread(path)
        ds.ContrastBolusAgent, ds.ContrastBolusRoute, ds.ContrastBolusVolume = "OMNIPAQUE 350", "IV", "90"
        ds.save_as(path)
    assert load_any(plain).contrast_tags == ContrastTags()
    tags = ContrastTags(agent="OMNIPAQUE 350", route="IV", volume_ml=90.0)
    assert load_any(tagged).contrast_tags == tags
    assert load_crop(tagged, PreprocessSpec())[0].contrast_tags == tags
    assert header_says(load_any(plain).contrast_tags) is None and header_says(tags) is True


@pytest.fixture(scope="module")
def family_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four family B studies at a 128 matrix: arterial (header silent), unenhanced (a spine-centred slab), portal
    venous (header says so), unenhanced."""
    from data.synthetic.family_b.cohort import Options, write_cohort

    out = tmp_path_factory.mktemp("family_b") / "c"
    write_cohort(out, Options(n=4, seed=7, matrix=128, workers=1))
    return out


def test_the_check_tells_family_b_phases_and_corrects_toward_the_truth(family_b: Path) -> None:
    """``python -m training.contrast_check`` on family B: every phase told right, from the aorta (and the header
    where it says so), and the corrected HU nearer the unenhanced truth than the measured one."""
    from training.contrast_check import check, report

    out = check(family_b)
    assert out["studies"] == 4 and out["told"] == 4
    assert out["confusion"] == {"arterial|arterial": 1, "none|none": 2, "portal_venous|portal_venous": 1}
    assert [r["source"] for r in out["records"]] == ["aorta", "aorta", "both", "aorta"]
    hu = out["hu"]["arterial"]
    assert abs(hu["corrected_bias"]) < abs(hu["measured_bias"]) and hu["measured_bias"] > 10
    assert "false positives (unenhanced told enhanced): 0/2 told" in report(out)


def test_the_check_refuses_a_folder_without_truth_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "training.contrast_check", "--cohort", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: no truth.csv") and res.stderr.count("\n") == 1
