"""pydicom's own test files (read from the installed package folder, never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.dicom import Limits, inspect_study, load_study
from inference.dicom.parse import read_file
from inference.dicom.pixels import decode_frame
from inference.errors import InputError

FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RELAXED = Limits(min_slices=1, min_extent_mm=0.0, check_body_part=False)
ALL = sorted(p for p in FILES.rglob("*") if p.is_file()) if FILES.is_dir() else []
pytestmark = pytest.mark.skipif(not ALL, reason="pydicom test files are not installed")


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(FILES)))
def test_every_file_is_read_or_refused_cleanly(path: Path) -> None:
    try:
        study = load_study(path, limits=RELAXED)
    except InputError as exc:
        assert exc.code and "\n" not in exc.message
        return
    assert study.volume.dtype == np.float32 and study.volume.ndim == 3
    assert np.isfinite(study.volume).all()


def test_ct_small_is_a_single_ct_slice() -> None:
    study = load_study(FILES / "CT_small.dcm", limits=RELAXED)
    assert study.volume.shape == (1, 128, 128)
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(study.volume[0], expected.astype(np.float32))
    with pytest.raises(InputError) as info:
        load_study(FILES / "CT_small.dcm")
    assert info.value.code == "too_few_slices"


MR_SMALL = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
]


def test_mr_small_decodes_identically_in_every_syntax() -> None:
    arrays = [decode_frame(read_file(FILES / name, RELAXED).frames[0]) for name in MR_SMALL]
    for arr in arrays[1:]:
        assert np.array_equal(arr, arrays[0])


def test_deflated_file_decodes() -> None:
    parsed = read_file(FILES / "image_dfl.dcm", RELAXED)
    assert parsed.ds is not None
    ref = pydicom.dcmread(FILES / "image_dfl.dcm").pixel_array
    assert np.array_equal(decode_frame(parsed.frames[0]), ref)


def test_j2k_ct_decodes_like_pydicom() -> None:
    study = load_study(FILES / "693_J2KI.dcm", limits=RELAXED)
    ds = pydicom.dcmread(FILES / "693_J2KI.dcm")
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(study.volume[0], expected.astype(np.float32))


def test_whole_folder_report() -> None:
    report = inspect_study(FILES, limits=RELAXED)
    codes = {s["set_aside"].split(":")[0] for s in report["series"] if s["set_aside"]}
    assert {"no_image_series", "not_ct", "localizer_only", "mixed_orientation"} <= codes
    assert report["files"]["non_dicom_skipped"] > 0
