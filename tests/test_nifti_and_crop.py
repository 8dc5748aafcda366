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
