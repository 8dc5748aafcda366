"""The sagittal key image: a midline sagittal slice through the spine column with the levels marked (PNG).

Rendered from the canonical Study volume with Pillow (a reportlab dependency): superior at the top,
anterior on the left, square pixels, a bone window. Each found level gets a line and its name, coloured by
its Genant grade.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from inference.findings import Vertebra as LevelFinding
from inference.study import Study
from interop.spine import level_boxes, spine_column

WINDOW = (400.0, 1800.0)
"""Bone window (level, width) in HU."""
HEIGHT_PX = 560
GRADE_COLOURS = {0: (80, 200, 120), 1: (255, 200, 0), 2: (255, 120, 0), 3: (255, 40, 40)}
UNGRADED = (120, 170, 255)


def _window(plane: np.ndarray) -> np.ndarray:
    level, width = WINDOW
    scaled = (plane - (level - width / 2)) / width
    out: np.ndarray = (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return out


def sagittal_png(study: Study, levels: Sequence[LevelFinding] = ()) -> bytes:
    """PNG bytes of the midline sagittal slice with ``levels`` (those with a z position) marked."""
    column = spine_column(study)
    plane = study.volume[::-1, :, round(column[1])]  # (Z, Y), superior row first
    sz, sy, _ = study.spacing_mm
    n_z, n_y = plane.shape
    scale = HEIGHT_PX / (n_z * sz)
    size = (max(1, round(n_y * sy * scale)), max(1, round(n_z * sz * scale)))
    image = Image.fromarray(_window(plane)).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    found = [v for v in levels if v.present and v.z_mm is not None]
    if found:
        _mark_levels(image, study, found, scale)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mark_levels(image: Image.Image, study: Study, levels: Sequence[LevelFinding], scale: float) -> None:
    draw = ImageDraw.Draw(image)
    sz, sy, _ = study.spacing_mm
    n_z = study.volume.shape[0]
    boxes = level_boxes(study, [(v.level, float(v.z_mm or 0.0)) for v in levels])
    for level, box in zip(levels, boxes, strict=True):
        k = box.centre[0]
        row = (n_z - 1 - k) * sz * scale
        x0 = max(0.0, box.j[0] * sy * scale)
        x1 = min(float(image.width - 1), box.j[1] * sy * scale)
        colour = GRADE_COLOURS.get(level.genant_grade, UNGRADED) if level.genant_grade is not None else UNGRADED
        draw.line([(x0, row), (x1, row)], fill=colour, width=2)
        draw.text((min(x1 + 4, image.width - 30), row - 6), level.level, fill=colour)
