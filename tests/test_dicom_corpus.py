"""Every case of ../shared/dicom-corpus gets the verdict its README gives (reading and scoring levels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.dicom import Limits, inspect_study, load_study
from inference.dicom.parse import read_file
from inference.dicom.pixels import decode_frame
from inference.errors import InputError

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "dicom-corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/dicom-corpus is not present")
RELAXED = Limits(min_slices=1, min_extent_mm=0.0, check_body_part=False)
"""Reading level: accept anything that is a true volume, however small (the scoring rules switched off)."""


def _facts() -> dict:
    return json.loads((CORPUS / "_reference_facts.json").read_text())


def _code(source: Path, limits: Limits | None = None) -> str:
    with pytest.raises(InputError) as info:
        load_study(source, limits=limits)
    return info.value.code


# --- scoring level: what load_study does with default limits --------------------------------------------
SCORING = {
    "accept_12bit_signed_unsigned": "not_ct",
    "accept_j2k_fragmented": "not_ct",
    "accept_jpeg_lossless_fragmented": "not_ct",
    "accept_same_image_9_transfer_syntaxes": "not_ct",
    "accept_dcmqi_ct3slice_GE": "too_few_slices",
    "accept_single_slice_CT_small_pydicom.dcm": "too_few_slices",
    "accept_totalseg_abdomen_j2k_empty_uids": "insufficient_coverage",
    "accept_pycerr_hn_constant_instancenumber": "",  # 132 mm: read; the model refuses it (tests/test_real_ct.py)
    "accept_folder_with_nondicom_DIRFILE_5mm": "insufficient_coverage",
    "accept_totalseg_nifti_with_vertebra_masks": "not_dicom",  # NIfTI: read by the NIfTI path, not here
    "flag_gantry_tilt_14deg_blanked": "too_few_slices",
    "flag_gantry_tilt_16deg_philips": "insufficient_coverage",
    "flag_gantry_tilt_18deg_variable_spacing_GE": "uneven_spacing",
    "reject_all_slices_same_position": "duplicate_positions",
    "reject_missing_slice_5_vs_10mm": "missing_slices",
    "reject_mixed_orientation": "mixed_orientation",
    "reject_mr_triplane_localizer": "mixed_orientation",
    "reject_or_split_two_series_one_folder": "too_few_slices",
    "reject_seg_object_liver.dcm": "no_image_series",
    "reject_wrong_modality_MR_series": "not_ct",
    "reject_broken_single_files": "too_few_slices",
}


def test_every_case_has_a_verdict() -> None:
    cases = {p.name for p in CORPUS.iterdir() if not p.name.startswith(("_", "README"))}
    assert cases == set(SCORING)


@pytest.mark.parametrize("case", sorted(SCORING))
def test_scoring_verdict(case: str) -> None:
    """The reader's verdict; "" where the reader reads the series and the coverage rule decides (a head-and-neck CT
    longer than the 50 mm two vertebral bodies need)."""
    if SCORING[case]:
        assert _code(CORPUS / case) == SCORING[case]
    else:
        assert load_study(CORPUS / case).volume.shape[0] > 0


# --- reading level: geometry and values a correct reader gives -------------------------------------------
@pytest.mark.parametrize(
    ("case", "shape", "spacing"),
    [
        ("accept_dcmqi_ct3slice_GE", (3, 512, 512), (1.0, 0.810547, 0.810547)),
        ("accept_folder_with_nondicom_DIRFILE_5mm", (28, 512, 512), (5.0, 0.451172, 0.451172)),
        ("accept_pycerr_hn_constant_instancenumber", (45, 511, 511), (3.0, 1.0, 1.0)),
        ("accept_totalseg_abdomen_j2k_empty_uids", (20, 512, 512), (2.0, 0.976563, 0.976563)),
        ("accept_single_slice_CT_small_pydicom.dcm", (1, 128, 128), (5.0, 0.661468, 0.661468)),
        ("flag_gantry_tilt_14deg_blanked", (4, 512, 512), (4.851, 0.417969, 0.417969)),
        ("flag_gantry_tilt_16deg_philips", (58, 512, 512), (2.397, 0.40625, 0.40625)),
    ],
)
def test_reading_geometry(case: str, shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    study = load_study(CORPUS / case, limits=RELAXED)
    assert study.volume.shape == shape
    assert np.allclose(study.spacing_mm, spacing, atol=2e-3)
    assert np.allclose(np.linalg.norm(study.affine[:3, :3], axis=0), spacing, atol=2e-3)
    assert study.affine[2, 0] > 0  # axis 0 runs inferior -> superior
    tilted = case.startswith("flag_")
    assert any("gantry tilt" in w for w in study.warnings) == tilted


def test_totalseg_hu_range_and_empty_uids() -> None:
    study = load_study(CORPUS / "accept_totalseg_abdomen_j2k_empty_uids", limits=RELAXED)
    assert study.volume.min() == -1024
    assert 1800 <= study.volume.max() <= 1900
    assert study.series_instance_uid == "" and study.study_instance_uid == ""


def test_constant_instance_numbers_sorted_by_position() -> None:
    case = CORPUS / "accept_pycerr_hn_constant_instancenumber"
    study = load_study(case, limits=RELAXED)
    by_z = sorted(case.iterdir(), key=lambda p: float(read_file(p, RELAXED).frames[0].position[2]))  # type: ignore[index]
    for k in (0, 17, 44):
        frame = read_file(by_z[k], RELAXED).frames[0]
        expected = decode_frame(frame).astype(np.float32) * float(frame.ds.RescaleSlope) + float(
            frame.ds.RescaleIntercept
        )
        assert np.array_equal(study.volume[k], expected)


def test_two_series_are_split_not_interleaved() -> None:
    report = inspect_study(CORPUS / "reject_or_split_two_series_one_folder", limits=RELAXED)
    spacings = sorted(s["spacing_mm"][0] for s in report["series"])
    assert [s["n_slices"] for s in report["series"]] == [10, 10]
    assert np.allclose(spacings, [1.0, 5.0])
    assert report["chosen"]["spacing_mm_zyx"][0] == pytest.approx(1.0)
    study = load_study(CORPUS / "reject_or_split_two_series_one_folder", limits=RELAXED)
    assert study.volume.shape[0] == 10


def test_dirfile_is_counted_and_set_aside() -> None:
    report = inspect_study(CORPUS / "accept_folder_with_nondicom_DIRFILE_5mm", limits=RELAXED)
    assert report["files"]["files"] == 29
    reasons = [s["set_aside"] for s in report["series"] if not s["chosen"]]
    assert reasons and reasons[0].startswith("no_image_series")


def test_tilted_series_reports_its_angle() -> None:
    report = inspect_study(CORPUS / "flag_gantry_tilt_16deg_philips", limits=RELAXED)
    assert report["chosen"]["tilt_deg"] == pytest.approx(16.5, abs=0.1)
    assert report["chosen"]["tilt_corrected"] is True


def test_tilt_beyond_the_limit_is_refused() -> None:
    limits = Limits(min_slices=1, min_extent_mm=0.0, check_body_part=False, max_tilt_deg=10.0)
    assert _code(CORPUS / "flag_gantry_tilt_16deg_philips", limits) == "gantry_tilt"


def _decode_all(folder: Path) -> list[np.ndarray]:
    out = []
    for path in sorted(folder.iterdir()):
        parsed = read_file(path, RELAXED)
        assert parsed.frames, path.name
        out.append(decode_frame(parsed.frames[0]))
    return out


def test_nine_transfer_syntaxes_decode_to_identical_pixels() -> None:
    arrays = _decode_all(CORPUS / "accept_same_image_9_transfer_syntaxes")
    assert len(arrays) == 9
    for arr in arrays[1:]:
        assert np.array_equal(arr, arrays[0])


@pytest.mark.parametrize("case", ["accept_j2k_fragmented", "accept_jpeg_lossless_fragmented"])
def test_fragmented_compressed_series_decode(case: str) -> None:
    arrays = _decode_all(CORPUS / case)
    assert len(arrays) == 10 and all(a.shape == (128, 128) for a in arrays)
    assert all(a.max() > 0 for a in arrays)


def test_12bit_signed_and_unsigned_ranges() -> None:
    folder = CORPUS / "accept_12bit_signed_unsigned"
    ranges = {p.name: decode_frame(read_file(p, RELAXED).frames[0]) for p in sorted(folder.iterdir())}
    signed = ranges["12bitSigned_0x0F0F.dcm"]
    assert (signed.min(), signed.max()) == (-2048, 2047)
    assert (ranges["12bitUnsigned.dcm"].min(), ranges["12bitUnsigned.dcm"].max()) == (0, 2908)
    unsigned_f = ranges["12bitUnsigned_0x0F0F.dcm"]
    assert (unsigned_f.min(), unsigned_f.max()) == (0, 4095)


def test_reference_facts_series_counts() -> None:
    facts = _facts()
    for case in ("accept_pycerr_hn_constant_instancenumber", "reject_wrong_modality_MR_series"):
        report = inspect_study(CORPUS / case, limits=RELAXED) if case.startswith("accept") else None
        n = next(iter(facts[case]["series"].values()))["n"]
        if report:
            assert report["series"][0]["n_slices"] == n


BROKEN = CORPUS / "reject_broken_single_files"


@pytest.mark.parametrize("name", sorted(p.name for p in BROKEN.iterdir()) if BROKEN.is_dir() else [])
def test_each_broken_file_is_refused_cleanly(name: str) -> None:
    code = _code(BROKEN / name, RELAXED)
    non_dicom = set(_facts()["reject_broken_single_files"]["non_dicom"])
    if name in non_dicom:
        assert code == "not_dicom"
    assert code in {
        "not_dicom",
        "unreadable",
        "decode_failed",
        "no_image_series",
        "missing_geometry",
        "not_ct",
        "duplicate_positions",
        "too_few_slices",
    }
