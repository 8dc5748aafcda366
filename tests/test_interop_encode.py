"""``interop.dicom_encode``: the sequences of our DICOM objects, encoded in one pass, give pydicom's bytes, on every
report object and on the cases the encoder leaves to pydicom (text outside ASCII, person names, dates as
objects, undefined lengths, descriptors, retired group lengths)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.sequence import Sequence
from test_interop_support import Scored

from interop import reports as reports_mod
from interop.dicom_encode import encode_dataset, sequences_encoded
from interop.reports import save_dicom, write_reports

pytest_plugins = ["test_interop_support"]


def _pydicom_bytes(ds: Dataset) -> bytes:
    """``ds`` saved by pydicom alone."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _encoded_bytes(ds: Dataset, tmp_path: Path) -> bytes:
    """``ds`` saved by ``save_dicom`` (ambiguous VRs resolved, then the sequences encoded by
    ``sequences_encoded``)."""
    save_dicom(ds, tmp_path / "x.dcm")
    return (tmp_path / "x.dcm").read_bytes()


def test_every_report_object_is_written_as_pydicom_writes_it(scored: Scored, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The SEG, SR, Encapsulated PDF and key image of a scored study: ``save_dicom`` (which encodes the
    sequences) writes the bytes pydicom writes for the same object, and leaves the object as it was."""
    made: dict[str, Dataset] = {}

    def keep(ds: Dataset, path: Path) -> None:
        save_dicom(ds, path)
        made[path.name] = ds

    monkeypatch.setattr(reports_mod, "save_dicom", keep)
    written = write_reports(scored.result, scored.study, scored.source, tmp_path)
    assert {p.name for p in written.values()} >= {"seg.dcm", "sr.dcm", "report_pdf.dcm", "key_image.dcm"}
    assert len(made) == 4
    for name, ds in made.items():
        ours = (tmp_path / name.removeprefix(".").removesuffix(".part")).read_bytes()
        assert ours == _pydicom_bytes(ds), name  # the object is unchanged after the write, and pydicom agrees
        assert "PixelData" in ds or any(e.VR == "SQ" for e in ds)


def _tricky() -> Dataset:
    """A dataset whose sequences hold every case the encoder handles and every case it leaves to pydicom."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SpecificCharacterSet = "ISO_IR 192"
    inner = Dataset()
    inner.CodeValue = "T-11501"
    inner.CodeMeaning = "Vertèbre lombaire"  # outside ASCII: pydicom encodes it in the item's character set
    inner.CodingSchemeDesignator = "SRT"
    inner.add_new(0x00080000, "UL", 8)  # a retired group length: left out
    item = Dataset()
    item.PatientName = "Doe^Jane"
    item.ContentDate = dt.date(2026, 12, 7)  # a date object
    item.ContentTime = "101010"
    item.ImagePositionPatient = [-12.5, 3, "7.25"]
    item.ReferencedFrameNumber = [1, 2, 3]
    item.Rows, item.LargestImagePixelValue = 4, 1
    item.add_new(0x00281101, "US", [256, 0, 16])  # a LUT descriptor
    item.RealWorldValueLastValueMapped = 65000
    item.FloatPixelPaddingValue = 1.5
    item.add_new(0x00091010, "OB", b"\x01\x02\x03")  # odd length bytes
    item.ConceptNameCodeSequence = Sequence([inner])
    item.ReferencedSeriesSequence = Sequence([])
    item.ReferencedInstanceSequence = Sequence([Dataset()])
    undefined = Dataset()
    undefined.is_undefined_length_sequence_item = True
    undefined.ReferencedSOPInstanceUID = "1.2.3"  # odd length: NUL padded
    item.SourceImageSequence = Sequence([undefined])
    item["SourceImageSequence"].is_undefined_length = True
    ds.ContentSequence = Sequence([item, item])
    ds.AnatomicRegionSequence = Sequence([inner])
    return ds


def test_the_cases_left_to_pydicom_still_come_out_as_pydicom_writes_them(tmp_path: Path) -> None:
    ours = _encoded_bytes(_tricky(), tmp_path)
    assert ours == _pydicom_bytes(_tricky())
    again = pydicom.dcmread(io.BytesIO(ours))
    assert again.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Vertèbre lombaire"
    assert again.ContentSequence[1].ContentDate == "20261207"
    assert 0x00080000 not in again.AnatomicRegionSequence[0]  # the retired group length left out
    bad = _tricky()
    bad.ContentSequence[0].RealWorldValueLastValueMapped = 70000  # out of range for US: pydicom's own error
    with pytest.raises(OSError, match="ushort"):
        _encoded_bytes(bad, tmp_path)


def test_the_object_is_as_before_after_the_write_even_when_it_fails() -> None:
    ds = _tricky()
    correct_ambiguous_vr(ds, True)
    before = {e.tag: e for e in ds}
    with pytest.raises(RuntimeError), sequences_encoded(ds):
        assert ds.get_item(0x0040A730).is_raw  # inside: the sequence stands as its raw bytes
        raise RuntimeError
    assert {e.tag: e for e in ds} == before and not ds.get_item(0x0040A730).is_raw


def test_an_item_encodes_as_pydicom_writes_it_in_a_sequence() -> None:
    """``encode_dataset`` of one item: the bytes between its item header and the next in pydicom's file."""
    ds = _tricky()
    item = encode_dataset(ds.AnatomicRegionSequence[0], "ISO_IR 192")
    assert item in _pydicom_bytes(ds)
    assert "Vertèbre".encode() in item
