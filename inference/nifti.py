"""NIfTI input (research cohorts: VerSe, CTSpine1K and most public spine data): the same Study, the same
refusals. Geometry comes from the affine (the qform/sform nibabel chooses); values are taken as HU after
the header's scl_slope/scl_inter.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InputError
from inference.study import Study

MIN_SLICES = 12
MIN_EXTENT_MM = 50.0
"""Two whole vertebral bodies and their disc (the same floor as the DICOM reader's ``min_extent_mm``)."""
MAX_VOXELS = 1024 * 1024 * 1200
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: Path) -> bool:
    """By name: .nii or .nii.gz."""
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz"))


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder axes so that axis 0 = +S, 1 = +P, 2 = +L; return the array and its LPS affine."""
    import nibabel.orientations as nio

    current = nio.io_orientation(affine)
    target = nio.axcodes2ornt(("S", "P", "L"))
    transform = nio.ornt_transform(current, target)
    out = nio.apply_orientation(data, transform)
    ras = affine @ nio.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(out), RAS_TO_LPS @ ras


def load_nifti(path: Path) -> Study:
    """Read a 3-D CT NIfTI into a canonical :class:`Study` (refusing what cannot be scored)."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError("unreadable", f"{path.name} is not a readable NIfTI file") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError("not_a_volume", f"{path.name} has {len(img.shape)} dimensions; a 3-D CT is needed")
    if int(np.prod(shape)) > MAX_VOXELS:
        raise InputError("too_large", f"{path.name} has {int(np.prod(shape))} voxels")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError("missing_geometry", f"{path.name} has no usable affine")
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    vol, lps = _canonical(data, affine)
    spacing = tuple(float(np.linalg.norm(lps[:3, i])) for i in range(3))
    extent = vol.shape[0] * spacing[0]
    if vol.shape[0] < MIN_SLICES:
        raise InputError("too_few_slices", f"{vol.shape[0]} slices head to foot; at least {MIN_SLICES} needed")
    if extent < MIN_EXTENT_MM:
        raise InputError("insufficient_coverage",
                         f"the scan covers {extent:.0f} mm head to foot; at least {MIN_EXTENT_MM:.0f} mm needed")
    cosines = lps[:3, :3] / np.array(spacing)
    warnings = []
    canonical_axes = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # columns: S, P, L
    if np.abs(np.abs(cosines) - canonical_axes).max() > 0.02:
        warnings.append("oblique NIfTI affine: axes taken as the nearest patient axes")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Study(
        volume=vol, spacing_mm=(spacing[0], spacing[1], spacing[2]), affine=lps,
        study_instance_uid="", series_instance_uid=f"nifti-{digest[:16]}", orientation="axial",
        n_source_slices=int(vol.shape[0]), source_format="nifti", warnings=tuple(warnings),
    )
