"""The one crop function that training and inference share: a spine-centred sub-volume in native voxels.

Resampling to the model grid, windowing and normalisation happen inside the model graph, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inference.spec import PreprocessSpec
from inference.study import Study


class Volume(Protocol):
    """What the crop needs of a canonical HU volume when it is not an ndarray: a region reader that decodes on
    demand (:class:`inference.dicom.region.RegionVolume`)."""

    @property
    def shape(self) -> tuple[int, ...]:
        """(Z, Y, X) voxel counts."""
        ...

    def __getitem__(self, key: slice | tuple[slice, ...]) -> np.ndarray:
        """float32 HU of a basic slice."""
        ...

    def above(self, k: int, thresholds: Sequence[float]) -> list[np.ndarray]:
        """Masks ``HU > t`` of slice ``k``, one per threshold."""
        ...


@dataclass(frozen=True)
class Crop:
    """A sub-volume of fixed physical extent around the spine, padded where the scan ends."""

    image: np.ndarray
    """float32 HU (D, H, W), canonical orientation, native voxel spacing."""
    spacing_mm: tuple[float, float, float]
    start_index: tuple[int, int, int]
    """Index in the study volume of crop voxel (0, 0, 0) (may be negative: padding)."""
    center_mm: tuple[float, float, float]
    """Centre of the crop in canonical voxel-index millimetres (index * spacing)."""


def _smooth2d(img: np.ndarray, radius: int) -> np.ndarray:
    """Box filter by cumulative sums (no scipy on the inference path)."""
    if radius <= 0:
        return img
    k = 2 * radius + 1
    pad = np.pad(img, radius, mode="edge").astype(np.float64)
    c = pad.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _above(volume: np.ndarray | Volume, k: int, thresholds: Sequence[float]) -> list[np.ndarray]:
    """Masks ``HU > t`` of slice ``k`` (a region reader compares its stored values instead)."""
    if isinstance(volume, np.ndarray):
        return [volume[k] > t for t in thresholds]
    return volume.above(k, thresholds)


def spine_center(
    volume: np.ndarray | Volume, spacing: tuple[float, float, float], spec: PreprocessSpec
) -> tuple[int, int]:
    """(row, col) in-plane index of the vertebral column: the densest bony column near the body centre.

    Bone voxels are projected along z; the spine is present in every slice, ribs and pelvis only in some,
    so the smoothed projection peaks on it. The search is limited to ``spec.search_mm`` either side of the
    body's left-right centre.
    """
    step = max(1, volume.shape[0] // 64)
    sampled = range(0, volume.shape[0], step)  # at most 127 slices: the counts fit in uint8
    bone_n = np.zeros(volume.shape[1:], dtype=np.uint8)
    body_n = np.zeros(volume.shape[1:], dtype=np.uint8)
    shown = 0
    for k in sampled:
        inside, bony = _above(volume, k, (-400.0, spec.bone_hu))
        if not inside.any():  # empty slices (zero-padded research volumes) must not dilute the body outline
            continue
        shown += 1
        np.add(body_n, inside.view(np.uint8), out=body_n)
        np.add(bone_n, bony.view(np.uint8), out=bone_n)
    bone = bone_n.astype(np.float64)
    body = body_n / shown if shown else np.zeros(volume.shape[1:])
    cols = np.where(body.mean(axis=0) > 0.02)[0]
    cx = round(float(np.average(np.arange(volume.shape[2]), weights=body.sum(axis=0) + 1e-9)))
    if cols.size:
        cx = int(np.clip(cx, cols.min(), cols.max()))
    r = max(1, round(spec.smooth_mm / spacing[1]))
    score = _smooth2d(bone, r)
    half = round(spec.search_mm / spacing[2])
    mask = np.zeros_like(score, dtype=bool)
    mask[:, max(0, cx - half): cx + half + 1] = True
    score = np.where(mask & (body > 0.5), score, -1.0)
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(row), int(col)


def spine_crop(study: Study, spec: PreprocessSpec, z_centre_index: float | None = None) -> Crop:
    """Cut the spine-centred crop of ``spec.crop_mm`` from the study, padding with ``spec.pad_hu``.

    In-plane the crop is centred on the vertebral column; along z on the middle of the scan unless
    ``z_centre_index`` (a slice index) is given.
    """
    return crop_volume(study.volume, study.spacing_mm, spec, z_centre_index)


def crop_volume(vol: np.ndarray | Volume, sp: tuple[float, float, float], spec: PreprocessSpec,
                z_centre_index: float | None = None) -> Crop:
    """:func:`spine_crop` of a canonical volume with voxel size ``sp``: reads only the slices that
    :func:`spine_center` samples and the crop's own region."""
    row, col = spine_center(vol, sp, spec)
    z_c = (vol.shape[0] - 1) / 2.0 if z_centre_index is None else float(z_centre_index)
    centre = (z_c, float(row), float(col))
    size = [max(1, round(ext / s)) for ext, s in zip(spec.crop_mm, sp, strict=True)]
    start = [round(c - (n - 1) / 2.0) for c, n in zip(centre, size, strict=True)]
    out = np.full(size, spec.pad_hu, dtype=np.float32)
    centre_mm = (centre[0] * sp[0], centre[1] * sp[1], centre[2] * sp[2])
    src, dst = [], []
    for axis in range(3):
        a0 = max(0, start[axis])
        a1 = min(vol.shape[axis], start[axis] + size[axis])
        if a1 <= a0:
            return Crop(out, sp, (start[0], start[1], start[2]), centre_mm)
        src.append(slice(a0, a1))
        dst.append(slice(a0 - start[axis], a1 - start[axis]))
    out[tuple(dst)] = vol[tuple(src)]
    return Crop(out, sp, (start[0], start[1], start[2]), centre_mm)
