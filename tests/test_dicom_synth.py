"""A tiny synthetic CT series writer for the DICOM tests, and checks that it writes what it says.

``phantom()`` is an asymmetric HU volume in the canonical orientation (Z inferior->superior, Y
anterior->posterior, X right->left); ``write_series()`` writes it as an axial, sagittal or coronal series with
the requested encoding, so that every variant must read back to the same canonical array.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SPACING = (4.0, 0.8, 0.7)  # Z, Y, X mm: 40 slices of 4 mm cover 156 mm (enough for the coverage rule)
ORIGIN = (-22.0, -30.0, -80.0)  # LPS of voxel (0, 0, 0): x, y, z


def phantom(nz: int = 40, ny: int = 64, nx: int = 48) -> np.ndarray:
    """Asymmetric int16 HU phantom: air, a body, a posterior 'spine', markers that reveal any flip."""
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx]
    vol = np.full((nz, ny, nx), -1000, dtype=np.int16)
    body = ((y - ny / 2) / (ny * 0.42)) ** 2 + ((x - nx / 2) / (nx * 0.45)) ** 2 <= 1
    vol[body] = 40
    spine = ((y - ny * 0.72) ** 2 + (x - nx / 2) ** 2) <= (nx * 0.1) ** 2
    vol[spine] = 200 + 10 * z[spine]  # HU rises head-wards: a z flip changes values
    vol[: nz // 4, ny // 5 : ny // 5 + 4, 3:7] = 1500  # inferior, anterior, right marker
    vol[-3:, -8:-4, -6:-2] = -500  # superior, posterior, left marker
    vol[nz // 2, ny // 2, nx // 2] = 3000
    return vol


@dataclass(frozen=True)
class Variant:
    """How to write the series."""

    plane: str = "axial"
    transfer_syntax: str = ExplicitVRLittleEndian
    slope: float = 1.0
    intercept: float = -1024.0
    signed: bool = False
    names: str = "ordered"  # ordered | shuffled
    instance_numbers: str = "normal"  # normal | reversed | constant
    photometric: str = "MONOCHROME2"
    modality: str = "CT"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    series_uid: str = ""
    study_uid: str = "1.2.826.0.1.3680043.8.498.1"


def _plane_images(
    vol: np.ndarray, plane: str
) -> tuple[list[np.ndarray], list[tuple[float, ...]], list[float], list[float]]:
    """Slices, their IPPs, the IOP and the pixel spacing for one plane."""
    nz, ny, nx = vol.shape
    sz, sy, sx = SPACING
    x0, y0, z0 = ORIGIN
    top = z0 + (nz - 1) * sz
    if plane == "axial":
        imgs = [vol[k] for k in range(nz)]
        ipps = [(x0, y0, z0 + k * sz) for k in range(nz)]
        return imgs, ipps, [1, 0, 0, 0, 1, 0], [sy, sx]
    if plane == "sagittal":
        imgs = [vol[::-1, :, i] for i in range(nx)]
        ipps = [(x0 + i * sx, y0, top) for i in range(nx)]
        return imgs, ipps, [0, 1, 0, 0, 0, -1], [sz, sy]
    if plane == "coronal":
        imgs = [vol[::-1, j, :] for j in range(ny)]
        ipps = [(x0, y0 + j * sy, top) for j in range(ny)]
        return imgs, ipps, [1, 0, 0, 0, 0, -1], [sz, sx]
    raise ValueError(plane)


def _stored(hu: np.ndarray, v: Variant) -> np.ndarray:
    stored = np.rint((hu.astype(np.float64) - v.intercept) / v.slope)
    return stored.astype(np.int16 if v.signed else np.uint16)


def _dataset(
    img: np.ndarray, ipp: tuple[float, ...], iop: list[float], ps: list[float], v: Variant
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.Modality = v.modality
    ds.ImageType = list(v.image_type)
    ds.StudyInstanceUID = v.study_uid
    ds.SeriesInstanceUID = v.series_uid or "1.2.826.0.1.3680043.8.498.2." + str(len(v.plane))
    ds.SeriesNumber = 2
    ds.PatientAge = "071Y"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "SPINE"
    ds.ConvolutionKernel = "STANDARD"
    ds.SliceThickness = SPACING[0]
    ds.ImagePositionPatient = [float(a) for a in ipp]
    ds.ImageOrientationPatient = [float(a) for a in iop]
    ds.PixelSpacing = [float(a) for a in ps]
    ds.RescaleSlope = v.slope
    ds.RescaleIntercept = v.intercept
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = v.photometric
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(v.signed)
    ds.PixelData = np.ascontiguousarray(_stored(img, v)).tobytes()
    return ds


def write_series(folder: Path, vol: np.ndarray, v: Variant = Variant()) -> list[Path]:
    """Write ``vol`` (canonical int16 HU) as one DICOM series in ``folder``; return the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    imgs, ipps, iop, ps = _plane_images(vol, v.plane)
    n = len(imgs)
    order = list(range(n))
    if v.names == "shuffled":
        random.Random(7).shuffle(order)
    paths = []
    for k in range(n):
        ds = _dataset(imgs[k], ipps[k], iop, ps, v)
        ds.InstanceNumber = {"normal": k + 1, "reversed": n - k, "constant": 1}[v.instance_numbers]
        if v.transfer_syntax != ExplicitVRLittleEndian:
            _encode(ds, v.transfer_syntax)
        path = folder / f"img{order[k]:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _encode(ds: Dataset, uid: str) -> None:
    if uid == pydicom.uid.DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = uid
    elif uid in (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian):
        ds.file_meta.TransferSyntaxUID = uid
        if uid == pydicom.uid.ExplicitVRBigEndian:
            arr = np.frombuffer(ds.PixelData, dtype="<i2" if ds.PixelRepresentation else "<u2")
            ds.PixelData = arr.byteswap().tobytes()
    else:
        ds.compress(uid)


def test_phantom_round_trips_uncompressed(tmp_path: Path) -> None:
    vol = phantom()
    paths = write_series(tmp_path, vol)
    assert len(paths) == vol.shape[0]
    ds = pydicom.dcmread(paths[3])
    assert np.array_equal(ds.pixel_array.astype(np.int32) - 1024, vol[3])
