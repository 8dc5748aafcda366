"""The stored-value -> HU table gives exactly what apply_modality_lut gives pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from inference.dicom.parse import Frame
from inference.dicom.pixels import _hu_into


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
    _hu_into(out, stored, frame, {})
    assert np.array_equal(out, apply_modality_lut(stored, frame.lut).astype(np.float32))
