"""Metamorphic tests: one synthetic study re-encoded many ways reads back to the same canonical HU volume."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid as uids
import pytest
from test_dicom_synth import ORIGIN, SPACING, Variant, phantom, write_series

from inference.dicom import Limits, inspect_study, load_study
from inference.study import Study

VOL = phantom()


def _check(study: Study, tol: float = 1.0) -> None:
    assert study.volume.shape == VOL.shape
    assert study.volume.dtype == np.float32
    assert np.max(np.abs(study.volume - VOL)) <= tol
    assert np.allclose(study.spacing_mm, SPACING, atol=1e-4)
    assert np.allclose(study.affine[:3, :3], _diag(), atol=1e-4)
    assert np.allclose(study.affine[:3, 3], ORIGIN, atol=1e-3)


def _diag() -> np.ndarray:
    """Expected 3x3 part of the affine: axis 0 -> +z, axis 1 -> +y, axis 2 -> +x (LPS)."""
    m = np.zeros((3, 3))
    m[2, 0], m[1, 1], m[0, 2] = SPACING
    return m


def test_reference_axial(tmp_path: Path) -> None:
    write_series(tmp_path, VOL)
    study = load_study(tmp_path)
    _check(study)
    assert study.orientation == "axial"
    assert (study.age, study.sex) == (71, "F")
    assert study.warnings == ()


@pytest.mark.parametrize(
    "syntax",
    [
        uids.ImplicitVRLittleEndian,
        uids.ExplicitVRBigEndian,
        uids.DeflatedExplicitVRLittleEndian,
        uids.RLELossless,
        uids.JPEGLSLossless,
        uids.JPEG2000Lossless,
    ],
    ids=lambda u: uids.UID(u).name,
)
def test_transfer_syntaxes(tmp_path: Path, syntax: str) -> None:
    write_series(tmp_path, VOL, Variant(transfer_syntax=syntax))
    _check(load_study(tmp_path))


@pytest.mark.parametrize(
    "variant",
    [
        Variant(slope=0.5, intercept=-1024.0),
        Variant(slope=1.0, intercept=0.0, signed=True),
        Variant(slope=2.0, intercept=-2048.0),
        Variant(photometric="MONOCHROME1"),
        Variant(names="shuffled"),
        Variant(instance_numbers="reversed"),
        Variant(instance_numbers="constant", names="shuffled"),
    ],
    ids=["slope0.5", "signed", "slope2", "monochrome1", "shuffled", "reversed_in", "constant_in"],
)
def test_header_variants(tmp_path: Path, variant: Variant) -> None:
    write_series(tmp_path, VOL, variant)
    tol = 1.0 if variant.slope <= 1 else 1.0 + variant.slope / 2
    _check(load_study(tmp_path), tol)


@pytest.mark.parametrize("plane", ["sagittal", "coronal"])
def test_other_planes_give_the_same_canonical_volume(tmp_path: Path, plane: str) -> None:
    write_series(tmp_path, VOL, Variant(plane=plane))
    study = load_study(tmp_path)
    _check(study)
    assert study.orientation == plane


def test_junk_files_and_a_scout_are_ignored(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", VOL)
    scout = Variant(series_uid="1.2.826.0.1.3680043.8.498.9", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    write_series(tmp_path / "scout", VOL[:, :, :1].copy(), replace(scout, plane="sagittal"))
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "ct" / "junk.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300)
    (tmp_path / "DICOMDIR.bin").write_bytes(bytes(range(256)) * 3)
    _check(load_study(tmp_path))
    report = inspect_study(tmp_path)
    assert report["files"]["non_dicom_skipped"] == 3
    reasons = {s["series_instance_uid"]: s["set_aside"] for s in report["series"]}
    assert reasons["1.2.826.0.1.3680043.8.498.9"].startswith("localizer_only")


def test_zipped_study(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", VOL, Variant(names="shuffled"))
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, f"patient/series/{p.name}")
    _check(load_study(archive))


def test_list_of_files(tmp_path: Path) -> None:
    paths = write_series(tmp_path, VOL, Variant(names="shuffled"))
    _check(load_study([str(p) for p in reversed(paths)]))


def test_two_series_choose_the_thinner_not_interleave(tmp_path: Path) -> None:
    write_series(tmp_path / "a", VOL)
    thick = VOL[::2]
    write_series(tmp_path / "b", thick, Variant(series_uid="1.2.826.0.1.3680043.8.498.77"))
    study = load_study(tmp_path)
    _check(study)


def test_gantry_tilt_is_sheared_back(tmp_path: Path) -> None:
    """A tilted acquisition (each slice one row further along the tilted column axis) reads back untilted."""
    truth = phantom(nz=24)
    step, rows_spacing = SPACING[0], SPACING[1]
    theta = np.arctan2(rows_spacing, step)  # the slice drifts one row per slice
    col = np.array([0.0, np.cos(theta), -np.sin(theta)])
    normal = np.cross([1.0, 0.0, 0.0], col)
    paths = write_series(tmp_path, truth, Variant(names="shuffled"))
    for k, path in enumerate(
        sorted(paths, key=lambda p: int(pydicom.dcmread(p).ImagePositionPatient[2] * 10))
    ):
        ds = pydicom.dcmread(path)
        shifted = np.full_like(truth[k], -1000)
        shifted[: truth.shape[1] - k] = truth[k, k:]  # slice content moved up by k rows
        ds.PixelData = (shifted.astype(np.int32) + 1024).astype(np.uint16).tobytes()
        origin = np.array(ORIGIN) + k * step * normal + k * rows_spacing * col
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, *map(float, col)]
        ds.save_as(path)
    study = load_study(tmp_path, limits=Limits(min_extent_mm=0.0))
    assert any("gantry tilt" in w for w in study.warnings)
    assert np.allclose(study.spacing_mm, SPACING, atol=1e-4)
    assert np.allclose(study.affine[:3, 1], col * rows_spacing, atol=1e-6)
    for k in range(truth.shape[0]):
        assert np.max(np.abs(study.volume[k, k:] - truth[k, k:])) <= 1.0, k


def test_duplicate_copies_of_instances_are_read_once(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "a", VOL)
    copies = tmp_path / "copy"
    copies.mkdir()
    for p in paths[:5]:
        (copies / p.name).write_bytes(p.read_bytes())
    _check(load_study(tmp_path))


def _enhanced(folder: Path, vol: np.ndarray) -> Path:
    """Write ``vol`` as one Enhanced CT multi-frame file (per-frame positions, shared orientation/rescale)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = uids.EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uids.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids.generate_uid(), uids.generate_uid()
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = vol.shape[0]
    ds.Rows, ds.Columns = vol.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    orient, measures, transform = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [SPACING[1], SPACING[2]]
    measures.SliceThickness = SPACING[0]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -1000, "HU"
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    order = list(range(vol.shape[0]))[::-1]  # frames stored superior first
    for k in order:
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SPACING[0]]
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = (vol[order].astype(np.int32) + 1000).astype(np.int16).tobytes()
    path = folder / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_ct(tmp_path: Path) -> None:
    _check(load_study(_enhanced(tmp_path, VOL)))


def test_inspect_report_is_json(tmp_path: Path) -> None:
    import json

    write_series(tmp_path / "a", VOL)
    write_series(tmp_path / "b", VOL[::2], Variant(series_uid="1.2.826.0.1.3680043.8.498.78"))
    report = json.loads(json.dumps(inspect_study(tmp_path)))
    assert report["chosen"]["shape_zyx"] == list(VOL.shape)
    assert report["chosen"]["spacing_mm_zyx"] == list(SPACING)
    assert sorted(s["n_slices"] for s in report["series"]) == [20, 40]
    other = next(s for s in report["series"] if not s["chosen"])
    assert other["set_aside"].startswith("not_chosen")  # both cover the 50 mm two bodies need; the thinner wins
