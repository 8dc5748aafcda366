"""The PDF report as a DICOM Encapsulated PDF (PS3.3 A.45.1) in the scored study, so that a PACS viewer shows it.

Patient and study attributes are copied from the scored series (the PACS files the document with the study);
the document has its own series (modality DOC). The PDF holds the patient's name and ID in its header, so
Burned In Annotation is YES. Nothing here logs the patient.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from interop.source import SourceSeries
from vfrisk.result import Result

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
MANUFACTURER = "vfrisk"
DOC_SERIES_NUMBER = 9903
DOC_SERIES_DESCRIPTION = "vfrisk report (PDF, decision support)"
DOCUMENT_TITLE = "Vertebral fracture risk - CT decision support report"
PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                 "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                 "AccessionNumber", "StudyDescription")
"""Copied from the scored series when present."""
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")
"""Type 2 attributes of the Patient and General Study modules: present, empty when the source has none."""


def _copy_patient_study(ds: Dataset, source: Dataset) -> None:
    for keyword in PATIENT_STUDY:
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)  # type: ignore[union-attr]
    for keyword in TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")


def _source_reference(source: SourceSeries) -> DicomSequence:
    items = []
    for image in source.datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        items.append(item)
    return DicomSequence(items)


def build_encapsulated_pdf(result: Result, source: SourceSeries, pdf: bytes, *, when: dt.datetime | None = None,
                           instance_number: int = 1) -> Dataset:
    """The Encapsulated PDF dataset of the report ``pdf`` (bytes of a PDF file) for the scored series."""
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("not a PDF document")
    now = when or dt.datetime.now(dt.UTC).astimezone()
    sop_uid = str(hd.UID())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = source.first.get("SpecificCharacterSet", "ISO_IR 192")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    _copy_patient_study(ds, source.first)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = hd.UID()
    ds.SeriesNumber = DOC_SERIES_NUMBER
    ds.SeriesDescription = DOC_SERIES_DESCRIPTION
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = result.model.name
    ds.SoftwareVersions = result.model.version
    ds.ConversionType = "WSD"
    ds.InstanceNumber = instance_number
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.SourceInstanceSequence = _source_reference(source)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def write_encapsulated_pdf(result: Result, source: SourceSeries, pdf: bytes, path: Path) -> Path:
    """Write the Encapsulated PDF to ``path`` (DICOM Part 10); return ``path``."""
    build_encapsulated_pdf(result, source, pdf).save_as(path, enforce_file_format=True)
    return path


def pdf_of(ds: Dataset) -> bytes:
    """The PDF document held by an Encapsulated PDF dataset (the padding byte removed)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    return data[: int(length)] if length is not None else data
