"""NIfTI input (research cohorts: VerSe, CTSpine1K and most public spine data): the same Study, the same
refusals, the same :class:`~inference.dicom.limits.Limits` as DICOM. Geometry comes from the affine (the
qform/sform nibabel chooses); values are taken as HU after the header's scl_slope/scl_inter.

Nothing the header promises is trusted before it is checked: the voxel count against ``max_voxels``, the float32
volume (and its reordered copy) against the study's memory budget, and the data the file actually holds (a
``.nii`` by its size, a ``.nii.gz`` by inflating it once into nothing) against what the header promises, all
before the volume is allocated. The data are then read slab by slab, so no second full-size array is made.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from inference.dicom.limits import Budget, Limits, megabytes
from inference.errors import InputError
from inference.study import Study

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SLAB_BYTES = 32 * 1024 * 1024
"""Stored bytes read (and scaled) at a time."""
_CHUNK = 1 << 20


def is_nifti(path: Path) -> bool:
    """By name: .nii or .nii.gz."""
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz"))


def _orientation(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The nibabel orientation transform to canonical (axis 0 = +S, 1 = +P, 2 = +L) and the resulting RAS affine."""
    import nibabel.orientations as nio

    current = nio.io_orientation(affine)
    target = nio.axcodes2ornt(("S", "P", "L"))
    transform = nio.ornt_transform(current, target)
    return transform, affine @ nio.inv_ornt_aff(transform, shape)


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder axes so that axis 0 = +S, 1 = +P, 2 = +L; return the array and its LPS affine."""
    import nibabel.orientations as nio

    transform, ras = _orientation(affine, data.shape)
    out = nio.apply_orientation(data, transform)
    return np.ascontiguousarray(out), RAS_TO_LPS @ ras


def _is_identity(transform: np.ndarray) -> bool:
    """True when the orientation transform keeps the axes as they are (no reordered copy is made)."""
    return bool(np.array_equal(transform[:, 0], [0, 1, 2]) and np.all(transform[:, 1] == 1))


def _held_bytes(path: Path, offset: int, needed: int) -> int:
    """How many of the ``needed`` data bytes after ``offset`` the file holds (a ``.nii.gz`` is inflated once,
    1 MB at a time, and never past ``offset + needed``)."""
    if not path.name.lower().endswith(".gz"):
        return max(min(path.stat().st_size - offset, needed), 0)
    want = offset + needed
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while total < want and (chunk := fh.read(min(_CHUNK, want - total))):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass  # a cut-short or corrupt stream holds what was inflated before the break
    return max(min(total - offset, needed), 0)


def _header(img: Any, limits: Limits) -> tuple[tuple[int, int, int], np.ndarray, np.dtype]:
    """Shape, affine and stored type of ``img``, refused when not a finite 3-D numeric volume within limits."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError("not_a_volume", f"the NIfTI file has {len(img.shape)} dimensions; a 3-D CT is needed")
    voxels = int(np.prod(shape, dtype=np.int64))
    if min(shape) < 1 or voxels > limits.max_voxels:
        raise InputError("too_large", f"the NIfTI volume has {voxels} voxels; at most {limits.max_voxels} are read")
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise InputError("unreadable", f"the NIfTI data type ({dtype.name}) is not a scalar number")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError("missing_geometry", "the NIfTI file has no usable affine")
    return (shape[0], shape[1], shape[2]), affine, dtype


def _read_volume(img: Any, path: Path, shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
    """The scaled float32 data, after checking that the file holds all of it; read slab by slab."""
    offset = int(img.dataobj.offset)
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    held = _held_bytes(path, offset, needed)
    if held < needed:
        raise InputError("truncated", f"the NIfTI header promises {megabytes(needed)} of data but the file holds "
                         f"{megabytes(held)}")
    out = np.empty(shape, dtype=np.float32)
    per_slice = shape[0] * shape[1] * dtype.itemsize
    step = max(1, SLAB_BYTES // per_slice)
    proxy = img.dataobj
    for k0 in range(0, shape[2], step):
        k1 = min(k0 + step, shape[2])
        slab = proxy[:, :, k0:k1] if len(proxy.shape) == 3 else proxy[:, :, k0:k1, 0]
        out[:, :, k0:k1] = slab
    return out


def _file_sha256(path: Path) -> str:
    """SHA-256 of the file, read 1 MB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def load_nifti(path: Path, limits: Limits | None = None) -> Study:
    """Read a 3-D CT NIfTI into a canonical :class:`Study` (refusing what cannot be scored).

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        limits: the same caps as DICOM (``max_voxels``, ``max_study_bytes``, ``min_slices``, ``min_extent_mm``);
            defaults to :meth:`Limits.from_env`.

    Raises:
        InputError: ``unreadable``, ``not_a_volume``, ``too_large``, ``truncated``, ``missing_geometry``,
            ``too_few_slices`` or ``insufficient_coverage``, before the volume is allocated whenever the header
            alone shows it.

    """
    import nibabel as nib

    limits = limits or Limits.from_env()
    try:
        img: Any = nib.load(str(path), keep_file_open=True)
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError("unreadable", "the file is not a readable NIfTI file") from exc
    shape, affine, dtype = _header(img, limits)
    transform, ras = _orientation(affine, shape)
    lps = RAS_TO_LPS @ ras
    spacing = tuple(float(np.linalg.norm(lps[:3, i])) for i in range(3))
    head_to_foot = next(shape[i] for i in range(3) if int(transform[i, 0]) == 0)  # input axis i -> output axis
    _refuse_coverage(head_to_foot, spacing[0], limits)
    copies = 1 if _is_identity(transform) else 2
    Budget(limits).charge(copies * int(np.prod(shape, dtype=np.int64)) * 4,
                          f"the NIfTI volume ({shape[0]} x {shape[1]} x {shape[2]} float32"
                          f"{', and its reordered copy' if copies > 1 else ''})")
    try:
        data = _read_volume(img, path, shape, dtype)
    except InputError:
        raise
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError("unreadable", "the NIfTI data cannot be read (corrupt or cut short)") from exc
    finally:
        img.uncache()
    vol, lps = _canonical(data, affine)
    del data
    return _study(vol, lps, spacing, path)


def _refuse_coverage(slices: int, spacing: float, limits: Limits) -> None:
    """The DICOM minimums: slices head to foot and head-to-foot extent."""
    if slices < limits.min_slices:
        raise InputError("too_few_slices", f"{slices} slices head to foot; at least {limits.min_slices} needed")
    extent = slices * spacing
    if extent < limits.min_extent_mm:
        raise InputError("insufficient_coverage", f"the scan covers {extent:.0f} mm head to foot; at least "
                         f"{limits.min_extent_mm:.0f} mm needed")


def _study(vol: np.ndarray, lps: np.ndarray, spacing: tuple[float, ...], path: Path) -> Study:
    """The canonical study, with an oblique-axes warning and the file hash as series id."""
    cosines = lps[:3, :3] / np.array(spacing)
    warnings = []
    canonical_axes = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # columns: S, P, L
    if np.abs(np.abs(cosines) - canonical_axes).max() > 0.02:
        warnings.append("oblique NIfTI affine: axes taken as the nearest patient axes")
    digest = _file_sha256(path)
    return Study(
        volume=vol, spacing_mm=(spacing[0], spacing[1], spacing[2]), affine=lps,
        study_instance_uid="", series_instance_uid=f"nifti-{digest[:16]}", orientation="axial",
        n_source_slices=int(vol.shape[0]), source_format="nifti", warnings=tuple(warnings),
    )
