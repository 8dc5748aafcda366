"""NIfTI input gives the same canonical Study as DICOM; the shared crop centres on the spine."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inference.crop import spine_crop
from inference.errors import InputError
from inference.io import load_any
from inference.spec import PreprocessSpec
from tests.conftest import CORPUS

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_nifti(study_vol: np.ndarray, affine_lps: np.ndarray, path: Path, order: tuple[int, int, int],
              flip: tuple[bool, bool, bool]) -> None:
    """Write the canonical volume with axes permuted/flipped, adjusting the affine to match."""
    vol = study_vol
    aff = affine_lps.copy()
    for axis, f in enumerate(flip):
        if f:
            vol = np.flip(vol, axis)
            n = vol.shape[axis]
            aff[:3, 3] = aff[:3, 3] + aff[:3, axis] * (n - 1)
            aff[:3, axis] = -aff[:3, axis]
    vol = np.transpose(vol, order)
    aff[:, :3] = aff[:, list(order)]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(vol).astype(np.int16), LPS_TO_RAS @ aff), str(path))


@pytest.mark.parametrize(("order", "flip"), [((2, 1, 0), (False, False, False)), ((0, 2, 1), (True, False, True)),
                                             ((1, 0, 2), (False, True, False))])
def test_nifti_any_orientation_gives_the_dicom_volume(tiny_cohort: Path, tmp_path: Path,
                                                      order: tuple[int, int, int], flip: tuple[bool, ...]) -> None:
    dicom = load_any(tiny_cohort / "studies" / "S00001")
    path = tmp_path / "s.nii.gz"
    _as_nifti(np.rint(dicom.volume), dicom.affine, path, order, flip)  # type: ignore[arg-type]
    nifti = load_any(path)
    assert nifti.volume.shape == dicom.volume.shape
    assert np.allclose(nifti.spacing_mm, dicom.spacing_mm, atol=1e-4)
    assert np.abs(nifti.volume - np.rint(dicom.volume)).max() == 0
    assert np.allclose(nifti.affine, dicom.affine, atol=1e-3)


def test_nifti_refusals(tmp_path: Path) -> None:
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(InputError) as exc:
        load_any(tmp_path / "junk.nii.gz")
    assert exc.value.code == "unreadable"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 10), np.int16), np.diag([1, 1, 3, 1.0])), str(tmp_path / "s.nii"))
    with pytest.raises(InputError) as exc:
        load_any(tmp_path / "s.nii")
    assert exc.value.code == "too_few_slices"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 30, 2), np.int16), np.eye(4)), str(tmp_path / "t.nii"))
    with pytest.raises(InputError) as exc:
        load_any(tmp_path / "t.nii")
    assert exc.value.code == "not_a_volume"


@pytest.mark.skipif(not (CORPUS / "accept_totalseg_nifti_with_vertebra_masks").is_dir(), reason="no corpus")
def test_reference_nifti_reads_canonically() -> None:
    study = load_any(CORPUS / "accept_totalseg_nifti_with_vertebra_masks" / "example_ct.nii.gz")
    assert study.volume.shape == (112, 101, 122) and study.spacing_mm == (3.0, 3.0, 3.0)
    assert study.affine[2, 0] == 3.0 and study.affine[0, 2] == 3.0 and study.affine[1, 1] == 3.0
    assert not study.warnings


def test_crop_centres_on_the_spine(tiny_cohort: Path) -> None:
    spec = PreprocessSpec()
    truth = {r["study"]: r for r in csv.DictReader((tiny_cohort / "truth.csv").open())}
    for sid, t in truth.items():
        study = load_any(tiny_cohort / sid)
        crop = spine_crop(study, spec)
        centre_idx = np.array([0, crop.start_index[1] + (crop.image.shape[1] - 1) / 2,
                               crop.start_index[2] + (crop.image.shape[2] - 1) / 2, 1.0])
        lps = study.affine @ centre_idx
        assert abs(lps[0] - float(t["L1_x_mm"])) < 15, sid  # left-right
        assert -25 < lps[1] - float(t["L1_y_mm"]) < 35, sid  # between the body and the canal
        expected = [round(e / s) for e, s in zip(spec.crop_mm, study.spacing_mm, strict=True)]
        assert list(crop.image.shape) == expected


def _curved_column(curve_mm: float, *, aorta_hu: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A soft-tissue ellipse body (40 HU) with a bony column (cortex 700 HU around 200 HU bone, 40 mm across) whose
    front-back position follows a sine of amplitude ``curve_mm`` along z (2.5 x 2 x 2 mm voxels), and ribs (a bony
    arc) in the upper third; optionally a contrast-filled aorta in front of the column. Returns the volume and the
    true (row, column) of the column's centre per slice."""
    nz, ny, nx = 160, 160, 160
    vol = np.full((nz, ny, nx), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    body = ((yy - 80) / 60.0) ** 2 + ((xx - 80) / 75.0) ** 2 <= 1.0
    truth = np.zeros((nz, 2))
    for k in range(nz):
        vol[k][body] = 40.0
        row = 95 + curve_mm / 2.0 / 2.0 * np.sin(2 * np.pi * k / nz)  # 2 mm rows
        r = np.hypot(yy - row, xx - 80)
        vol[k][r <= 10] = 700.0
        vol[k][r <= 8.5] = 200.0
        vol[k][(np.abs(yy - row - 16) <= 3) & (np.abs(xx - 80) <= 4)] = 700.0  # a spinous process
        if aorta_hu is not None:
            vol[k][np.hypot(yy - (row - 22), xx - 92) <= 7] = aorta_hu
        if k > 2 * nz // 3:
            ring = np.abs(np.hypot((yy - 80) / 55.0, (xx - 80) / 70.0) - 1.0) < 0.03
            vol[k][ring & body] = 600.0
        truth[k] = (row, 80.0)
    return vol, truth


@pytest.mark.xfail(strict=True, reason="known limitation: the bone projection counts an enhanced aorta's lumen "
                   "(above 150 HU) as bone, so an arterial aorta against the column pulls the track forward; a 400 HU "
                   "search fixed it and made family A's crops wander sideways (README, session 15)")
def test_an_arterial_aorta_against_the_column_does_not_pull_the_crop() -> None:
    """A contrast-filled aorta as bright as an arterial phase makes it (380 HU, 24 mm across, lying against the
    front of the column in every slice) should move the track by under 3 mm. Family B's arterial studies are pulled
    20 mm forward on average (SD 13), family A's enhanced ones 29 mm, the real contrast-enhanced crop 45 mm."""
    from inference.crop import spine_track

    plain, _ = _curved_column(0.0)
    enhanced = plain.copy()
    yy, xx = np.mgrid[0:plain.shape[1], 0:plain.shape[2]]
    enhanced[:, np.hypot(yy - (95 - 16), xx - 84) <= 6] = 380.0  # 2 mm voxels: touches the cortex at row 85
    sp = (2.5, 2.0, 2.0)
    spec = PreprocessSpec()
    shift = (spine_track(enhanced, sp, spec) - spine_track(plain, sp, spec)) * np.array(sp[1:])
    assert np.max(np.abs(shift)) < 3.0, np.max(np.abs(shift), axis=0)


@pytest.mark.parametrize(("curve_mm", "aorta"), [(0.0, None), (50.0, None), (100.0, None), (80.0, 350.0)])
def test_crop_follows_a_curved_column(curve_mm: float, aorta: float | None) -> None:
    """The track stays on the column within 6 mm wherever the column is, ribs and a contrast-filled aorta
    notwithstanding; every slice of the crop is centred on it; a straight column gives a flat track."""
    from inference.crop import crop_volume, spine_track

    vol, truth = _curved_column(curve_mm, aorta_hu=aorta)
    sp = (2.5, 2.0, 2.0)
    spec = PreprocessSpec()
    track = spine_track(vol, sp, spec)
    inner = slice(10, -10)  # the ends are extrapolated from the last estimate
    err_mm = np.abs(track[inner] - truth[inner]) * np.array(sp[1:])
    # the bony column's centre of mass sits behind the body centre (the spinous process): allow a constant offset
    offset = np.median(track[inner, 0] - truth[inner, 0])
    assert np.max(np.abs(track[inner, 0] - truth[inner, 0] - offset)) * sp[1] < 6.0, (curve_mm, offset)
    assert np.max(err_mm[:, 1]) < 6.0
    if curve_mm == 0.0:
        assert np.ptp(track[:, 0]) < 1.0 and np.ptp(track[:, 1]) < 1.0
    crop = crop_volume(vol, sp, spec)
    assert crop.offsets.shape == (crop.image.shape[0], 2)
    h = crop.image.shape[1]
    for j in range(0, crop.image.shape[0], 7):
        k = crop.start_index[0] + j
        if 10 <= k < vol.shape[0] - 10:
            row_in_crop = truth[k, 0] - crop.offsets[j, 0]
            assert abs(row_in_crop - (h - 1) / 2.0 + offset) * sp[1] <= 6.0, (j, row_in_crop)
            assert crop.image[j, round(row_in_crop), crop.image.shape[2] // 2] >= 150.0  # the bone is there


@pytest.mark.parametrize("gap_mm", [3.0, 10.0])
def test_the_table_under_the_patient_is_not_the_column(gap_mm: float) -> None:
    """A CT table (a dense carbon-fibre shell over foam, wider than the patient and in every slice) lies a few
    millimetres below the back: the column search finds the column, not the table (family B's couch took the crop
    off the patient in 8 of 300 test studies), and the table is neither body nor bone to it. The column is
    osteoporotic (trabecular bone below the bone threshold, its cortex alone above it), so that the table's two
    dense skins outweigh it in the bone projection: without the patient's section the track lies on the table,
    84 mm from the column."""
    from inference.crop import patient_section, spine_track

    vol, truth = _curved_column(0.0)
    vol[vol == 200.0] = 100.0
    sp = (2.5, 2.0, 2.0)
    yy = np.mgrid[0:vol.shape[1], 0:vol.shape[2]][0]
    back = int(np.max(np.nonzero((vol[vol.shape[0] // 2] > -400).any(axis=1))[0]))
    top = back + 1 + round(gap_mm / sp[1])
    shell = (yy >= top) & (yy < top + 7)
    vol[:, shell] = -350.0  # foam
    vol[:, (yy == top) | (yy == top + 6)] = 400.0  # the shell, 2 mm thick, denser than the bone threshold
    inside = vol[vol.shape[0] // 2] > -400
    assert not patient_section(inside)[shell].any() and patient_section(inside)[truth[0].astype(int)[0], 80]
    track = spine_track(vol, sp, PreprocessSpec())
    assert np.max(np.abs(track - truth)[10:-10] * np.array(sp[1:])) < 20.0  # the cortex and spinous process


def test_crop_of_a_region_reader_equals_the_array_crop() -> None:
    """The crop reads only a bounding box of the track through the region reader's protocol and gives the same
    voxels as the in-memory crop."""
    from inference.crop import crop_volume

    vol, _ = _curved_column(70.0)
    reads: list[tuple[slice, ...]] = []

    class Reader:
        shape = vol.shape

        def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
            reads.append(key)
            return vol[key]

        def above(self, k: int, thresholds: list[float]) -> list[np.ndarray]:
            return [vol[k] > t for t in thresholds]

    sp = (2.5, 2.0, 2.0)
    a, b = crop_volume(vol, sp, PreprocessSpec()), crop_volume(Reader(), sp, PreprocessSpec())
    assert np.array_equal(a.image, b.image) and np.array_equal(a.offsets, b.offsets)
    assert len(reads) == 1


def test_column_search_is_kept_per_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """The column of a volume is searched once (crop, transparent measurement and the SEG's measurement ask
    for it in turn): a second call gives the same answer without sampling again, the kept track cannot be
    changed through what a caller was given, and another volume (a copy) or another spec is searched anew."""
    from inference import crop

    vol, _ = _curved_column(50.0)
    sp, spec = (2.5, 2.0, 2.0), PreprocessSpec()
    calls: list[int] = []
    sample = crop._sample
    monkeypatch.setattr(crop, "_sample", lambda v, s: calls.append(1) or sample(v, s))
    track = crop.spine_track(vol, sp, spec)
    centre = crop.spine_center(vol, sp, spec)  # the track's anchor, found on the way
    assert len(calls) == 1
    track[:] = -1.0
    again = crop.spine_track(vol, sp, spec)
    assert len(calls) == 1 and (again >= 0).all()
    assert crop.spine_center(vol, sp, spec) == centre and all(type(v) is int for v in centre)
    other = vol.copy()
    np.testing.assert_array_equal(crop.spine_track(other, sp, spec), again)
    assert len(calls) == 2
    crop.spine_center(other, sp, PreprocessSpec(search_mm=40.0))
    assert len(calls) == 3
