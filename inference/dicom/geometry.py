"""Stack geometry: sort on the slice normal, check spacing, detect and correct gantry tilt, canonicalise.

All functions are pure numpy. Positions are ImagePositionPatient (LPS mm) of each frame; the orientation is
the ImageOrientationPatient shared by the stack (row direction ``r``, column direction ``c``, normal
``n = r x c``).
Slices are ordered by ``position . n`` and never by InstanceNumber or file name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.errors import InputError

ORIENTATION_TOL = 1e-3
"""Largest difference between direction cosines of slices that belong to one stack."""
TILT_SHIFT_PX = 0.5
"""In-plane drift (pixels, over the whole stack) above which slices are resampled for gantry tilt."""
OBLIQUE_COS = math.cos(math.radians(25.0))
CANONICAL_COMPONENTS = (2, 1, 0)
"""LPS component each canonical axis follows: axis 0 +S (z), axis 1 +P (y), axis 2 +L (x)."""


@dataclass(frozen=True)
class Stack:
    """The validated geometry of a stack of parallel slices, in acquisition order along the normal."""

    order: tuple[int, ...]
    """Indices into the input frames, sorted along the normal (increasing ``position . n``)."""
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    normal: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    """(between rows, between columns) in mm."""
    slice_spacing: float
    """Distance between successive slices along the normal, in mm."""
    origin: tuple[float, float, float]
    """Position of the first sorted slice."""
    shifts_px: tuple[tuple[float, float], ...]
    """In-plane offset (rows, columns) of each sorted slice relative to the first; all zero without tilt."""
    tilt_deg: float
    plane: str

    @property
    def tilted(self) -> bool:
        """True when the slices must be resampled to stack them on an orthogonal grid."""
        return any(abs(a) > 0 or abs(b) > 0 for a, b in self.shifts_px)

    @property
    def extent_mm(self) -> float:
        """Coverage along the normal, centre of first slice to centre of last."""
        return self.slice_spacing * (len(self.order) - 1)

    def craniocaudal_mm(self, rows: int, columns: int) -> float:
        """Coverage along the patient's S axis (whatever the plane), centre to centre of the end voxels."""
        ends = np.array([len(self.order) - 1, rows - 1, columns - 1], dtype=np.float64)
        return float(np.sum(np.abs(self.affine()[2, :3]) * ends))

    def affine(self) -> np.ndarray:
        """4x4 matrix from (slice, row, column) index to LPS mm, for the (tilt-corrected) stack."""
        out = np.eye(4)
        out[:3, 0] = np.asarray(self.normal) * self.slice_spacing
        out[:3, 1] = np.asarray(self.col_dir) * self.pixel_spacing[0]
        out[:3, 2] = np.asarray(self.row_dir) * self.pixel_spacing[1]
        out[:3, 3] = self.origin
        return out


def plane_of(normal: np.ndarray) -> str:
    """Name the acquisition plane from the slice normal (LPS)."""
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < OBLIQUE_COS:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def directions(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column and normal vectors from ImageOrientationPatient; refuses a degenerate one."""
    r = np.asarray(orientation[:3], dtype=np.float64)
    c = np.asarray(orientation[3:], dtype=np.float64)
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 0.5 or nc < 0.5 or abs(float(np.dot(r, c))) / (nr * nc) > 0.01:
        raise InputError("missing_geometry", "the image orientation in the header is not a valid plane")
    r, c = r / nr, c / nc
    return r, c, np.cross(r, c)


def same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when two ImageOrientationPatient values describe the same plane."""
    return bool(np.max(np.abs(np.asarray(a) - np.asarray(b))) <= ORIENTATION_TOL)


def check_spacing(z: np.ndarray) -> float:
    """Return the uniform slice spacing of sorted normal coordinates ``z``, or refuse.

    Raises:
        InputError: ``duplicate_positions`` when two slices share a position, ``missing_slices`` when a gap
            is a whole multiple of the usual spacing, ``uneven_spacing`` for any other irregularity.

    """
    gaps = np.diff(z)
    median = float(np.median(gaps))
    if np.any(gaps < max(0.01, 0.1 * median)):
        n_dup = int(np.sum(gaps < max(0.01, 0.1 * median)))
        raise InputError(
            "duplicate_positions", f"{n_dup} slice(s) share a position with another slice: not one volume"
        )
    tol = max(0.02, 0.05 * median)
    bad = np.abs(gaps - median) > tol
    if not np.any(bad):
        return float(np.mean(gaps))
    ratio = gaps[bad] / median
    if np.all((ratio > 1.5) & (np.abs(ratio - np.round(ratio)) * median <= tol)):
        missing = int(np.sum(np.round(ratio) - 1))
        raise InputError(
            "missing_slices",
            f"{missing} slice(s) missing: gap {gaps[bad].max():.2f} mm in a series spaced {median:.2f} mm",
        )
    raise InputError(
        "uneven_spacing",
        f"slice spacing varies from {gaps.min():.2f} to {gaps.max():.2f} mm: not one evenly spaced volume",
    )


def build_stack(
    positions: Sequence[Sequence[float]],
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    max_tilt_deg: float,
    single_thickness: float | None = None,
) -> Stack:
    """Sort slices on the normal, check their spacing and measure gantry tilt.

    ``single_thickness`` is used as the spacing of a one-slice stack (SliceThickness); without it a single
    slice is refused for missing geometry.
    """
    r, c, n = directions(orientation)
    pos = np.asarray(positions, dtype=np.float64)
    z = pos @ n
    order = np.argsort(z, kind="stable")
    pos, z = pos[order], z[order]
    if len(z) == 1:
        if not single_thickness or single_thickness <= 0:
            raise InputError("missing_geometry", "a single slice without a slice thickness")
        spacing = float(single_thickness)
    else:
        spacing = check_spacing(z)
    drift = pos - pos[0] - np.outer(z - z[0], n)
    shifts = np.stack([drift @ c / pixel_spacing[0], drift @ r / pixel_spacing[1]], axis=1)
    tilt = _tilt_deg(drift, z)
    if np.max(np.abs(shifts)) <= TILT_SHIFT_PX:
        shifts[:] = 0.0
    elif tilt > max_tilt_deg:
        raise InputError(
            "gantry_tilt",
            f"gantry tilt of {tilt:.1f} degrees is beyond the {max_tilt_deg:.0f} degrees corrected",
        )
    return Stack(
        order=tuple(int(i) for i in order),
        row_dir=_t3(r),
        col_dir=_t3(c),
        normal=_t3(n),
        pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        slice_spacing=spacing,
        origin=_t3(pos[0]),
        shifts_px=tuple((float(a), float(b)) for a, b in shifts),
        tilt_deg=tilt,
        plane=plane_of(n),
    )


def _t3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _tilt_deg(drift: np.ndarray, z: np.ndarray) -> float:
    """Angle between the line of slice positions and the slice normal."""
    span = float(z[-1] - z[0])
    if span <= 0:
        return 0.0
    return math.degrees(math.atan2(float(np.linalg.norm(drift[-1])), span))


def shift_slice(img: np.ndarray, rows: float, cols: float, fill: float) -> np.ndarray:
    """Move an image's content by fractional rows and columns (bilinear), padding with ``fill``."""
    out = _shift_axis(img, rows, 0, fill)
    return _shift_axis(out, cols, 1, fill)


def _shift_axis(img: np.ndarray, shift: float, axis: int, fill: float) -> np.ndarray:
    if shift == 0:
        return img
    n = img.shape[axis]
    src = np.arange(n, dtype=np.float64) - shift
    lo = np.floor(src).astype(np.int64)
    frac = (src - lo).astype(np.float32)
    padded = np.concatenate(
        [np.full_like(img.take([0], axis=axis), fill), img, np.full_like(img.take([0], axis=axis), fill)],
        axis=axis,
    )
    lo_idx = np.clip(lo + 1, 0, n + 1)
    hi_idx = np.clip(lo + 2, 0, n + 1)
    shape = [1, 1]
    shape[axis] = n
    f = frac.reshape(shape)
    return (padded.take(lo_idx, axis=axis) * (1 - f) + padded.take(hi_idx, axis=axis) * f).astype(img.dtype)


def correct_tilt(volume: np.ndarray, stack: Stack) -> None:
    """Shear each slice in place so that all slices align with the first (gantry tilt correction)."""
    for k, (rows, cols) in enumerate(stack.shifts_px):
        if rows or cols:
            fill = float(volume[k].min())
            volume[k] = shift_slice(volume[k], rows, cols, fill)


def canonical_axes(affine: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Permutation and flips that bring array axes closest to canonical (+S, +P, +L)."""
    m = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    best: tuple[float, tuple[int, int, int]] = (-1.0, (0, 1, 2))
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        score = sum(abs(m[CANONICAL_COMPONENTS[a], perm[a]]) for a in range(3))
        if score > best[0] + 1e-9:
            best = (score, perm)
    perm = best[1]
    flips = tuple(bool(m[CANONICAL_COMPONENTS[a], perm[a]] < 0) for a in range(3))
    return perm, (flips[0], flips[1], flips[2])


def canonical_affine(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The affine of an array of ``shape`` (with ``affine``) once reordered and flipped by :func:`to_canonical`."""
    perm, flips = canonical_axes(affine)
    new = np.eye(4)
    new[:3, :3] = affine[:3, list(perm)]
    new[:3, 3] = affine[:3, 3]
    for a in range(3):
        if flips[a]:
            new[:3, 3] += new[:3, a] * (shape[perm[a]] - 1)
            new[:3, a] = -new[:3, a]
    return new


def to_canonical(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder and flip ``volume`` (with its affine) into the canonical (Z, Y, X) orientation."""
    perm, flips = canonical_axes(affine)
    out = volume.transpose(perm)
    for a in range(3):
        if flips[a]:
            out = np.flip(out, axis=a)
    return np.ascontiguousarray(out), canonical_affine(affine, volume.shape)
