"""The fast header reader gives, element by element, the dataset pydicom's own reader gives, or declines."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from inference.dicom.fastread import fast_read
from inference.dicom.parse import DEFER_BYTES
from tests.conftest import CORPUS


def _files(tiny_cohort: Path) -> list[Path]:
    files = [Path(p) for p in get_testdata_files("*")]
    files += sorted(CORPUS.rglob("*.dcm"))[:400] if CORPUS.is_dir() else []
    files += sorted(tiny_cohort.rglob("*.dcm"))[:300]
    return [p for p in files if p.is_file()]


def _same(fast: pydicom.Dataset, ref: pydicom.Dataset) -> None:
    assert list(fast.keys()) == list(ref.keys())
    for tag in ref.keys():  # noqa: SIM118 - iterating a Dataset yields elements, not tags
        a, b = fast[tag], ref[tag]
        assert a.VR == b.VR, tag
        assert a.value == b.value, tag  # Pixel Data: both read through the deferred path


def test_fast_reader_matches_dcmread_or_declines(tiny_cohort: Path) -> None:
    taken = declined = 0
    for path in _files(tiny_cohort):
        fast = fast_read(path)
        if fast is None:
            declined += 1
            continue
        taken += 1
        ref = pydicom.dcmread(path, defer_size=DEFER_BYTES)
        _same(fast.file_meta, ref.file_meta)
        _same(fast, ref)
        assert fast.preamble == ref.preamble
        assert fast.original_encoding == ref.original_encoding
        assert fast.original_character_set == ref.original_character_set
    print(f"\nfast path taken on {taken} files, declined on {declined}")
    assert taken >= 100 and declined >= 20


@pytest.mark.parametrize("cut", [0, 100, 131, 140, 300])
def test_truncated_or_foreign_bytes_are_declined(tiny_cohort: Path, tmp_path: Path, cut: int) -> None:
    source = next(p for p in sorted(tiny_cohort.rglob("*.dcm")) if fast_read(p) is not None)
    data = source.read_bytes()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[:cut] + b"\x00" * 7)
    assert fast_read(broken) is None
    extra = tmp_path / "trailing.dcm"
    extra.write_bytes(data + b"\xfc\xff\xfc\xffOB\x00\x00\x02\x00\x00\x00ab")  # trailing padding element
    assert fast_read(extra) is None
