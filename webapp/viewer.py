"""Sagittal, coronal and axial reformats of a canonical HU volume, windowed, labelled and encoded as lossless PNG.

Server-rendered: the browser asks for one slice at a time (plane, index, window, size) on the app's own image
route (:mod:`webapp.views`) and shows the PNG; the volume never leaves the server. The volume is a
:class:`~inference.study.Study` volume: float32 HU, shape ``(Z, Y, X)`` with Z inferior to superior, Y anterior
to posterior and X right to left. Images are resampled so that one pixel covers the same millimetres in both
directions (aspect ratio true to the voxel spacing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from webapp.levels import LevelMark


@dataclass(frozen=True)
class Window:
    """A display window in HU."""

    width: float
    level: float

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """Map HU to uint8 grey values (linear inside the window, clipped outside)."""
        low = self.level - self.width / 2.0
        scaled = (hu.astype(np.float32) - low) * (255.0 / self.width)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)

    def clamped(self) -> Window:
        """The window inside the range a CT can show (width 1 to 6000 HU, level -1500 to 4000 HU)."""
        return Window(float(np.clip(self.width, 1.0, 6000.0)), float(np.clip(self.level, -1500.0, 4000.0)))


WINDOWS: dict[str, Window] = {
    "bone W2000/L500": Window(2000.0, 500.0),
    "bone W1800/L400": Window(1800.0, 400.0),
    "soft tissue W400/L40": Window(400.0, 40.0),
}
"""The window presets offered in the viewer (name -> window); any other width and level may be set freely."""
DEFAULT_WINDOW = "bone W2000/L500"
MAX_LONG_SIDE = 2048
"""Largest image side the viewer draws (zoomed in)."""


class Plane(StrEnum):
    """Reformat planes."""

    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"


NORMAL_AXIS = {Plane.SAGITTAL: 2, Plane.CORONAL: 1, Plane.AXIAL: 0}
"""The canonical axis each plane's slices run along (X, Y, Z)."""
DIRECTIONS = {0: ("I", "S"), 1: ("A", "P"), 2: ("R", "L")}
"""Patient directions of the canonical axes (negative, positive)."""


@dataclass(frozen=True)
class View:
    """What to draw: plane, slice index along the plane normal, window, and the target long side in pixels."""

    plane: Plane
    index: int
    window: Window
    long_side: int = 512


def slice_count(shape: tuple[int, ...], plane: Plane) -> int:
    """Number of slices along the normal of ``plane`` (X for sagittal, Y for coronal, Z for axial)."""
    return int(shape[NORMAL_AXIS[Plane(plane)]])


def default_index(shape: tuple[int, ...], plane: Plane) -> int:
    """The middle slice of the plane."""
    return slice_count(shape, plane) // 2


def reformat(volume: np.ndarray, spacing: tuple[float, float, float], plane: Plane,
             index: int) -> tuple[np.ndarray, tuple[float, float]]:
    """One slice in display orientation and its (row, column) pixel spacing in mm.

    Sagittal: superior at the top, anterior on the left. Coronal: superior at the top, patient right on the
    viewer's left. Axial: anterior at the top, patient right on the viewer's left (radiological convention).
    """
    index = int(np.clip(index, 0, slice_count(volume.shape, plane) - 1))
    if plane == Plane.SAGITTAL:
        return volume[::-1, :, index], (spacing[0], spacing[1])
    if plane == Plane.CORONAL:
        return volume[::-1, index, :], (spacing[0], spacing[2])
    return volume[index], (spacing[1], spacing[2])


def slice_positions(affine: np.ndarray, shape: tuple[int, ...], plane: Plane) -> tuple[float, float, str, str]:
    """Where the slices of ``plane`` lie: (position of slice 0 in mm, step in mm per slice, the direction letters
    for negative and positive positions) along the patient axis of the plane's normal (LPS), at the volume
    centre."""
    axis = NORMAL_AXIS[Plane(plane)]
    centre = np.array([(n - 1) / 2.0 for n in shape[:3]] + [1.0])
    first = centre.copy()
    first[axis] = 0.0
    lps_axis = 2 - axis  # canonical axis 0 (+S) is LPS z, 1 (+P) is y, 2 (+L) is x
    start = float((affine @ first)[lps_axis])
    step = float(affine[lps_axis, axis])
    neg, pos = DIRECTIONS[axis]
    return start, step, neg, pos


def position_text(mm: float, neg: str, pos: str) -> str:
    """A slice position as radiologists write it: ``S 120.5 mm``, ``R 3.0 mm``."""
    return f"{pos if mm >= 0 else neg} {abs(mm):.1f} mm"


def display_size(shape: tuple[int, int], pixel_mm: tuple[float, float], long_side: int) -> tuple[int, int]:
    """(width, height) in pixels with square pixels in millimetres and the longer side ``long_side``."""
    height_mm, width_mm = shape[0] * pixel_mm[0], shape[1] * pixel_mm[1]
    scale = long_side / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def row_of_z(z_index: float, n_z: int, height: int) -> float:
    """Display row (sagittal and coronal, superior at the top) of a fractional Z index."""
    return (n_z - 0.5 - z_index) * height / n_z


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def spread(rows: list[float], gap: float, low: float, high: float) -> list[float]:
    """Label rows moved apart to at least ``gap`` pixels, kept inside [low, high], order preserved."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    placed = [rows[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    overflow = placed[-1] - high if placed else 0.0
    if overflow > 0:
        placed = [max(low, r - overflow) for r in placed]
        for k in range(1, len(placed)):
            placed[k] = max(placed[k], placed[k - 1] + gap)
    out = [0.0] * len(rows)
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple[int, int, int],
           font: ImageFont.ImageFont | ImageFont.FreeTypeFont, anchor: str = "lm") -> None:
    """``text`` in ``colour`` on a black box (readable on any grey)."""
    left, top, right, bottom = draw.textbbox(xy, text, font=font, anchor=anchor)
    draw.rectangle([left - 4, top - 3, right + 4, bottom + 3], fill=(0, 0, 0))
    draw.text(xy, text, fill=colour, font=font, anchor=anchor)


def _columns(mark: LevelMark, plane: Plane, width: int, n_cols: int) -> tuple[float, float] | None:
    """Display columns of a mark's body region (None when the spine column was not found)."""
    span = mark.j if plane == Plane.SAGITTAL else mark.i
    if span is None:
        return None
    return span[0] * width / n_cols, span[1] * width / n_cols


def _draw_long_marks(img: Image.Image, marks: list[LevelMark], plane: Plane, shape: tuple[int, ...]) -> None:
    """Sagittal and coronal: each level's body region outlined and its name on a black box at the left edge."""
    draw = ImageDraw.Draw(img)
    width, height = img.size
    size = max(13, height // 38)
    font = _font(size)
    n_z, n_cols = shape[0], shape[1] if plane == Plane.SAGITTAL else shape[2]
    centres = [row_of_z(m.z_index, n_z, height) for m in marks]
    label_rows = spread(centres, size + 8, size, height - size)
    line = max(1, height // 400)
    for m, centre, row in zip(marks, centres, label_rows, strict=True):
        top = row_of_z(m.z_index + m.half_extent, n_z, height)
        bottom = row_of_z(m.z_index - m.half_extent, n_z, height)
        cols = _columns(m, plane, width, n_cols)
        if cols is not None:
            draw.rectangle([cols[0], top, cols[1], bottom], outline=m.colour, width=line)
        else:
            draw.line([width * 0.06, top, width * 0.06, bottom], fill=m.colour, width=line + 1)
        anchor_x = cols[0] if cols is not None else width * 0.06
        draw.line([size * 4.2, row, anchor_x, centre], fill=m.colour, width=line)
        _label(draw, (6, row), m.label, m.colour, font)


def _draw_axial_label(img: Image.Image, marks: list[LevelMark], z_index: int, shape: tuple[int, ...]) -> None:
    """Axial: the level this slice cuts through (if any) in the top-right corner, its body region outlined."""
    hit = [m for m in marks if abs(z_index - m.z_index) <= m.half_extent]
    if not hit:
        return
    m = min(hit, key=lambda x: abs(z_index - x.z_index))
    draw = ImageDraw.Draw(img)
    width, height = img.size
    if m.j is not None and m.i is not None:
        draw.rectangle([m.i[0] * width / shape[2], m.j[0] * height / shape[1], m.i[1] * width / shape[2],
                        m.j[1] * height / shape[1]], outline=m.colour, width=max(1, height // 400))
    _label(draw, (width - 8, 8), m.label, m.colour, _font(max(14, height // 30)), anchor="ra")


def render(volume: np.ndarray, spacing: tuple[float, float, float], view: View,
           marks: list[LevelMark] | None = None) -> Image.Image:
    """Draw one windowed reformat, resampled to square pixels, with the level overlay when given."""
    plane_img, pixel_mm = reformat(volume, spacing, view.plane, view.index)
    grey = Image.fromarray(view.window.apply(plane_img), mode="L")
    long_side = int(np.clip(view.long_side, 64, MAX_LONG_SIDE))
    img = grey.resize(display_size(plane_img.shape, pixel_mm, long_side), Image.Resampling.BILINEAR)
    img = img.convert("RGB")
    if not marks:
        return img
    if view.plane == Plane.AXIAL:
        _draw_axial_label(img, marks, int(np.clip(view.index, 0, volume.shape[0] - 1)), volume.shape)
    else:
        _draw_long_marks(img, marks, view.plane, volume.shape)
    return img


def png_bytes(img: Image.Image, *, fast: bool = False) -> bytes:
    """Encode as PNG (lossless); ``fast`` trades file size for speed (the viewer's slices)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=1 if fast else 6)
    return buf.getvalue()
