"""The stored-value -> HU table gives exactly what apply_modality_lut gives pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from inference.dicom.parse import Frame
from inference.dicom.pixels import hu_into


def _frame(slope: str, intercept: str) -> Frame:
    lut = Dataset()
    lut.RescaleSlope, lut.RescaleIntercept = slope, intercept
    return Frame(Path("x.dcm"), 0, lut, lut, None, None, None, 8, 8, None)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.int8])
@pytest.mark.parametrize(
    ("slope", "intercept"), [("1", "-1024"), ("0.5", "-1000.25"), ("2.5", "0"), ("1", "0")]
)
def test_table_matches_apply_modality_lut(dtype: type, slope: str, intercept: str) -> None:
    info = np.iinfo(dtype)
    stored = np.random.default_rng(0).integers(info.min, info.max, (8, 8), endpoint=True).astype(dtype)
    frame = _frame(slope, intercept)
    out = np.empty((8, 8), np.float32)
    hu_into(out, stored, frame, {})
    assert np.array_equal(out, apply_modality_lut(stored, frame.lut).astype(np.float32))


@pytest.mark.parametrize("allocated,stored", [(16, 16), (16, 12), (16, 13), (8, 8), (8, 6)])
@pytest.mark.parametrize("signed", [0, 1])
@pytest.mark.parametrize("syntax", ["explicit", "implicit"])
def test_native_fast_path_equals_pydicom_decoder(allocated: int, stored: int, signed: int, syntax: str) -> None:
    """Uncompressed frames read straight from their bytes give exactly pydicom's decoded array, junk in the
    unused high bits included; anything else is left to the decoder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import get_decoder
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    from inference.dicom.parse import Frame
    from inference.dicom.pixels import decode_frame, native_frame

    uid = ExplicitVRLittleEndian if syntax == "explicit" else ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 7, 5, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, signed
    rng = np.random.default_rng(allocated * 100 + stored * 10 + signed)
    ds.PixelData = rng.integers(0, 2**allocated, 35, dtype=np.uint64).astype(f"<u{allocated // 8}").tobytes()
    frame = Frame(Path("x.dcm"), 0, ds, ds, None, None, None, 7, 5, None)
    expected, _ = get_decoder(uid).as_array(ds)
    fast = native_frame(frame)
    assert fast is not None and fast.dtype == expected.dtype and np.array_equal(fast, expected)
    assert np.array_equal(decode_frame(frame), expected)
    ds.file_meta.TransferSyntaxUID = RLELossless
    assert native_frame(frame) is None
