"""Write a rendered canonical HU volume as a valid CT Image Storage series.

Stored values come from HU through the series' rescale convention; the reader recovers HU only through
``pydicom.pixels.apply_modality_lut``. Everything (UIDs, dates, bytes) is a pure function of the inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
}


def det_uid(*parts: object) -> UID:
    """A deterministic UID under the 2.25 root from the given parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:15]
    return UID(f"2.25.{int.from_bytes(digest, 'big')}")


@dataclass(frozen=True)
class Rescale:
    """Stored-value convention: HU = stored * slope + intercept."""

    slope: float
    intercept: float
    signed: bool
    bits_stored: int = 16

    def to_stored(self, hu: np.ndarray) -> np.ndarray:
        """Quantise HU to the stored integer type, clipping to its range."""
        raw = np.rint((hu - self.intercept) / self.slope)
        if self.signed:
            lo, hi = -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
            return np.clip(raw, lo, hi).astype(np.int16)
        return np.clip(raw, 0, 2**self.bits_stored - 1).astype(np.uint16)


RESCALES: tuple[Rescale, ...] = (
    Rescale(1.0, -1024.0, signed=False, bits_stored=12),
    Rescale(1.0, -1024.0, signed=True),
    Rescale(1.0, 0.0, signed=True),
    Rescale(0.5, -1024.0, signed=False),
)


@dataclass(frozen=True)
class SeriesHeader:
    """Patient, study and series facts shared by every slice of a series."""

    patient_id: str
    age: int
    sex: str
    study_uid: str
    study_date: str
    series_uid: str
    frame_uid: str
    series_number: int
    description: str
    kernel: str
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")


@lru_cache(maxsize=8)
def base_dataset(h: SeriesHeader) -> Dataset:
    """Patient, study, series, equipment and frame-of-reference modules of a CT image (cached per series;
    callers copy it before adding per-image elements).
    """
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(h.image_type)
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = h.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "101500"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "vfrisk synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT ABDOMEN (synthetic)"
    ds.SeriesDescription = h.description
    ds.ManufacturerModelName = "phantom"
    ds.PatientName = f"SYNTH^{h.patient_id}"
    ds.PatientID = h.patient_id
    ds.PatientBirthDate = f"{int(h.study_date[:4]) - h.age - 1}0101"
    ds.PatientSex = h.sex
    ds.PatientAge = f"{h.age:03d}Y"
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = "120"
    ds.ConvolutionKernel = h.kernel
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = h.study_uid
    ds.SeriesInstanceUID = h.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = h.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = h.frame_uid
    ds.PositionReferenceIndicator = ""
    return ds


def slice_dataset(h: SeriesHeader, index: int, pixels: np.ndarray, rescale: Rescale,
                  ipp: tuple[float, float, float], iop: tuple[float, ...], spacing: tuple[float, float],
                  thickness: float) -> Dataset:
    """One CT image: the shared modules plus plane, pixel and CT image modules."""
    ds = base_dataset(h).copy()
    ds.SOPInstanceUID = det_uid(h.series_uid, index)
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [f"{c:.4f}" for c in ipp]
    ds.ImageOrientationPatient = [f"{c:.6f}" for c in iop]
    ds.PixelSpacing = [f"{s:.6f}" for s in spacing]
    ds.SliceThickness = f"{thickness:.4f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = rescale.bits_stored
    ds.HighBit = rescale.bits_stored - 1
    ds.PixelRepresentation = 1 if rescale.signed else 0
    ds.RescaleIntercept = f"{rescale.intercept:g}"
    ds.RescaleSlope = f"{rescale.slope:g}"
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(rescale.to_stored(pixels)).tobytes()
    return ds


def write_dataset(ds: Dataset, path: Path, syntax: str) -> None:
    """Write ``ds`` as a Part 10 file in the named transfer syntax (compressing if needed)."""
    tsuid = TRANSFER_SYNTAXES[syntax]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "VFRISK_SYNTH"
    ds.file_meta = meta
    if syntax in ("rle", "jpegls", "j2k"):
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        plugin = "pyjpegls" if syntax == "jpegls" else "pylibjpeg"
        ds.compress(tsuid, generate_instance_uid=False, encoding_plugin=plugin)
    else:
        meta.TransferSyntaxUID = tsuid
    ds.save_as(path, enforce_file_format=True, implicit_vr=(syntax == "implicit"), little_endian=True)
