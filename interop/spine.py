"""Where the found vertebral levels lie in the study volume: one box per level, in canonical voxel indices.

The model reports each level's centre as an LPS z position. The spine column is found in the volume itself
(see :func:`spine_column`); each level's box spans the level's slab, which runs half-way to the neighbouring
levels, and a vertebra-sized region (posterior elements, canal and body) in front of the column point. The
boxes place the level marks of the sagittal key image and of the web viewer. They are boxes, not voxel masks: the
DICOM SEG draws the bodies the measurement delineated instead (:mod:`interop.seg`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.study import Study

BONE_HU = 150.0
"""Threshold for bone (trabecular bone of an osteoporotic vertebra is lower, its cortex is not)."""
HALF_WIDTH_MM = 27.0
"""Half the left-right size of a level's box (a lumbar vertebral body is 40-50 mm wide)."""
COLUMN_FRACTION = 0.2
"""Share of the busiest place's bone count that makes a place a candidate for the spine column."""
SKIN_MM = 10.0
"""Margin removed from the body outline when looking for the column."""
MIDLINE_SEARCH_MM = 40.0
"""How far from the body's left-right centre the spine column is looked for."""
VERTEBRA_DEPTH_MM = 85.0
"""From the back of the posterior elements to the front of the vertebral body (adult lumbar: 75-95 mm)."""
POSTERIOR_MARGIN_MM = 8.0
"""Margin behind the column point."""


@dataclass(frozen=True)
class LevelBox:
    """A level's box in canonical voxel indices (k: +S, j: +P, i: +L), bounds inclusive-exclusive, floats."""

    level: str
    k: tuple[float, float]
    j: tuple[float, float]
    i: tuple[float, float]

    @property
    def centre(self) -> tuple[float, float, float]:
        """Centre (k, j, i) of the box."""
        return ((self.k[0] + self.k[1]) / 2, (self.j[0] + self.j[1]) / 2, (self.i[0] + self.i[1]) / 2)


def _body_mask(study: Study, mean: np.ndarray | None = None) -> np.ndarray:
    """(Y, X) mask of the patient's body (largest non-air region of the mean image ``mean``, computed when not
    given), skin margin removed."""
    _, sy, sx = study.spacing_mm
    labels, n = ndimage.label((study.volume.mean(axis=0) if mean is None else mean) > -300)
    if n == 0:
        return np.ones(study.volume.shape[1:], dtype=bool)
    body = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    body = ndimage.binary_fill_holes(body)
    margin = (max(1, round(SKIN_MM / sy)), max(1, round(SKIN_MM / sx)))
    eroded: np.ndarray = ndimage.binary_erosion(body, structure=np.ones(margin, dtype=bool))
    return eroded if eroded.any() else body


class _LastStudy:
    """A value computed for the last study asked for, kept while that study lives (weakly referenced)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[weakref.ref[Study], tuple[float, float]] | None = None

    def get(self, study: Study, compute: Callable[[Study], tuple[float, float]]) -> tuple[float, float]:
        """The kept value when ``study`` is the last study, else ``compute(study)`` (then kept)."""
        with self._lock:
            entry = self._entry
        if entry is not None and entry[0]() is study:
            return entry[1]
        value = compute(study)
        with self._lock:
            self._entry = (weakref.ref(study), value)
        return value


_COLUMN = _LastStudy()


def spine_column(study: Study) -> tuple[float, float]:
    """(j, i) of a point on the posterior elements of the spine (the back of the spine column).

    Bone, and contrast-filled vessels, run through many slices; the aorta and the vena cava lie in front of
    the spine, ribs lie lateral to it and the table lies outside the body. So the column is the most posterior
    place inside the body, near its left-right centre, where bone runs through at least ``COLUMN_FRACTION`` of
    the slices where the busiest place does.

    The reports of one study ask for it several times (the key image, its level marks, the SEG's boxes): the
    answer for the last study is kept (a study is immutable; weakly referenced, so no study is kept alive).
    """
    return _COLUMN.get(study, _find_column)


def bone_count(volume: np.ndarray) -> np.ndarray:
    """(Y, X) int32: in how many slices each place is bone (above ``BONE_HU``), counted slice by slice (no
    volume-sized mask: a 512 x 512 x 300 study's would be 79 MB)."""
    count = np.zeros(volume.shape[1:], dtype=np.int32)
    bone = np.empty(volume.shape[1:], dtype=bool)
    for plane in volume:
        np.greater(plane, BONE_HU, out=bone)
        count += bone
    return count


def bone_count_and_mean(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bone_count` and the mean image (``volume.mean(axis=0)``) in one pass over the slices (the volume
    is read once, not twice: about 0.04 s of a 512 x 512 x 300 study). The mean is ``volume.mean(axis=0)`` bit
    for bit: the same float sums slice after slice, divided by the same count; a volume that is not float32 or
    float64 (whose mean numpy sums in another type) takes the two passes."""
    if volume.dtype not in (np.float32, np.float64):
        return bone_count(volume), volume.mean(axis=0)
    count = np.zeros(volume.shape[1:], dtype=np.int32)
    total = np.zeros(volume.shape[1:], dtype=volume.dtype)
    bone = np.empty(volume.shape[1:], dtype=bool)
    for plane in volume:
        np.greater(plane, BONE_HU, out=bone)
        count += bone
        total += plane
    return count, np.true_divide(total, np.intp(volume.shape[0]), out=total, casting="unsafe")


def _find_column(study: Study) -> tuple[float, float]:
    """:func:`spine_column`, computed."""
    _, sy, sx = study.spacing_mm
    counted, mean = bone_count_and_mean(study.volume)
    count = ndimage.uniform_filter(counted.astype(np.float32), size=(max(1, round(6 / sy)), max(1, round(6 / sx))))
    body = _body_mask(study, mean)
    count[~body] = 0
    body_i = float(np.nonzero(body.any(axis=0))[0].mean())
    jj, ii = np.nonzero(count >= COLUMN_FRACTION * count.max())
    central = np.abs((ii - body_i) * sx) <= MIDLINE_SEARCH_MM
    if central.any():
        jj, ii = jj[central], ii[central]
    pick = int(np.argmax(jj))
    return float(jj[pick]), float(ii[pick])


def level_k(study: Study, z_mm: float, column: tuple[float, float]) -> float:
    """Canonical slice index (fractional) of the point of the spine column at LPS height ``z_mm``."""
    row = study.affine[2]
    if abs(row[0]) < 1e-6:
        raise ValueError("the volume's first axis does not run head-to-foot")
    return float((z_mm - row[3] - row[1] * column[0] - row[2] * column[1]) / row[0])


def _slab_bounds(ks: Sequence[float], n_slices: int) -> list[tuple[float, float]]:
    """Half-way to each neighbour; the end levels get the same half-height as their neighbour gap."""
    if len(ks) == 1:
        return [(max(0.0, ks[0] - 10.0), min(float(n_slices), ks[0] + 10.0))]
    order = np.argsort(ks)
    sorted_k = np.asarray(ks, dtype=np.float64)[order]
    mids = (sorted_k[1:] + sorted_k[:-1]) / 2
    lows = np.concatenate([[sorted_k[0] - (mids[0] - sorted_k[0])], mids])
    highs = np.concatenate([mids, [sorted_k[-1] + (sorted_k[-1] - mids[-1])]])
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(ks)
    for rank, idx in enumerate(order):
        out[idx] = (max(0.0, float(lows[rank])), min(float(n_slices), float(highs[rank])))
    return out


def level_boxes(study: Study, levels: Sequence[tuple[str, float]]) -> list[LevelBox]:
    """One box per ``(level, z_mm)``, in the order given: the level's slab, around the whole vertebra.

    The box runs from just behind the column point (the posterior elements) forward over the canal and the
    vertebral body, and ``HALF_WIDTH_MM`` to each side of the column.
    """
    if not levels:
        return []
    column = spine_column(study)
    ks = [level_k(study, z, column) for _, z in levels]
    slabs = _slab_bounds(ks, study.volume.shape[0])
    _, sy, sx = study.spacing_mm
    j = (column[0] - VERTEBRA_DEPTH_MM / sy, column[0] + POSTERIOR_MARGIN_MM / sy)
    i = (column[1] - HALF_WIDTH_MM / sx, column[1] + HALF_WIDTH_MM / sx)
    return [LevelBox(name, slab, j, i) for (name, _), slab in zip(levels, slabs, strict=True)]


def box_mask(box: LevelBox, index: np.ndarray) -> np.ndarray:
    """True where canonical indices ``index`` (..., 3) fall in ``box``."""
    k, j, i = index[..., 0], index[..., 1], index[..., 2]
    return (
        (k >= box.k[0]) & (k < box.k[1]) & (j >= box.j[0]) & (j < box.j[1]) & (i >= box.i[0]) & (i < box.i[1])
    )
