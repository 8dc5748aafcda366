"""Is a vertebral body found in the trunk? The width of the patient's section through the column.

The model has only seen thoracolumbar spines; shown a neck, it may take cervical vertebrae for lumbar ones (the
real head-and-neck CT of the corpus: two "bodies" named L1 and L2). Whatever the model says, a section narrower
than :data:`TRUNK_MIN_WIDTH_MM` is not the trunk at T10-L5 (adult abdomens and lower chests are 230-400 mm wide,
necks 100-150 mm), so a body found there does not count for the coverage rule. The width is measured on the
axial slice through the body: the left-right extent of the connected soft tissue (above :data:`TISSUE_HU`) that
holds the column. Where that tissue reaches the image's left or right edge (a small field of view cuts the body)
the width is unknown and the body counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TRUNK_MIN_WIDTH_MM = 180.0
"""Narrowest patient section, left to right, still taken for the trunk at T10-L5."""
TISSUE_HU = -400.0
"""Soft tissue and bone lie above this; air, lung and gas below."""
SAMPLE_MM = 20.0
"""Least step along the crop between the slices whose section is measured (chosen among the slices the column
search samples, :func:`inference.crop.spine_track`, so that a region reader decodes nothing more)."""


def largest_label(labels: np.ndarray, n: int) -> int:
    """The label (1..``n``) of the largest of ``n`` connected regions labelled by ``ndimage.label``; 0 when none."""
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return int(np.argmax(sizes))


def section_width_mm(tissue: np.ndarray, column_mm: float, row: int, col: int) -> float | None:
    """Left-right width (mm) of the connected tissue holding voxel (``row``, ``col``) of one axial slice's
    ``tissue`` mask (HU above :data:`TISSUE_HU`; rows = +P, columns = +L, ``column_mm`` apart); None when the voxel
    is not tissue, the tissue holding it is not the slice's largest (the patient's: a column estimate on the table
    or an arm says nothing) or it reaches the image's left or right edge. Measured on every second voxel (a 1-2 mm
    width error at most)."""
    small = np.asarray(tissue[::2, ::2])
    r, c = min(max(row, 0) // 2, small.shape[0] - 1), min(max(col, 0) // 2, small.shape[1] - 1)
    if not small[r, c]:
        return None
    labels, n = ndimage.label(small)
    if largest_label(labels, n) != labels[r, c]:
        return None
    cols = np.nonzero((labels == labels[r, c]).any(axis=0))[0]
    if cols[0] == 0 or cols[-1] == small.shape[1] - 1:
        return None
    return float((cols[-1] - cols[0] + 1) * 2 * column_mm)


@dataclass(frozen=True)
class Sections:
    """The section's width through the column, every :data:`SAMPLE_MM` or so along a crop (crop slice indices;
    :attr:`inference.crop.Crop.sections`)."""

    index: np.ndarray
    """Crop slice index of each sample."""
    width_mm: np.ndarray
    """Width there; NaN where unknown (the field of view cuts the body, or the column is not in tissue)."""

    def width_at(self, j: float, spacing_z: float) -> float | None:
        """Width at the sample nearest crop slice ``j`` (slices ``spacing_z`` mm apart); None when unknown or no
        sample lies within :data:`SAMPLE_MM` of it."""
        if self.index.size == 0:
            return None
        i = int(np.argmin(np.abs(self.index - j)))
        w = float(self.width_mm[i])
        return None if np.isnan(w) or abs(self.index[i] - j) * spacing_z > SAMPLE_MM else w

    def narrow(self, z_mm: float, spacing_z: float) -> float | None:
        """The width at crop z ``z_mm`` (mm from the crop's first slice) when it is narrower than the trunk."""
        w = self.width_at(z_mm / spacing_z - 0.5, spacing_z)
        return w if w is not None and w < TRUNK_MIN_WIDTH_MM else None
