"""Sagittal and axial reformats of a canonical HU volume, windowed, labelled and saved as lossless PNG.

The volume is a :class:`~inference.study.Study` volume: float32 HU, shape ``(Z, Y, X)`` with Z inferior to
superior, Y anterior to posterior and X right to left. Images are resampled so that one pixel covers the same
millimetres in both directions (aspect ratio true to the voxel spacing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from webapp.drivers import LevelMark


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


WINDOWS: dict[str, Window] = {
    "bone W2000/L500": Window(2000.0, 500.0),
    "bone W1800/L400": Window(1800.0, 400.0),
    "soft tissue W400/L40": Window(400.0, 40.0),
}
"""The window presets offered in the viewer (name -> window)."""
DEFAULT_WINDOW = "bone W2000/L500"


class Plane(StrEnum):
    """Reformat planes."""

    SAGITTAL = "sagittal"
    AXIAL = "axial"


@dataclass(frozen=True)
class View:
    """What to draw: plane, slice index along the plane normal, window, and the target long side in pixels."""

    plane: Plane
    index: int
    window: Window
    long_side: int = 512


def slice_count(shape: tuple[int, ...], plane: Plane) -> int:
    """Number of slices along the normal of ``plane`` (X for sagittal, Z for axial)."""
    return int(shape[2] if plane == Plane.SAGITTAL else shape[0])


def default_index(shape: tuple[int, ...], plane: Plane) -> int:
    """The middle slice of the plane."""
    return slice_count(shape, plane) // 2


def reformat(volume: np.ndarray, spacing: tuple[float, float, float], plane: Plane,
             index: int) -> tuple[np.ndarray, tuple[float, float]]:
    """One slice in display orientation and its (row, column) pixel spacing in mm.

    Sagittal: superior at the top, anterior on the left. Axial: anterior at the top, patient right on the
    viewer's left (radiological convention).
    """
    index = int(np.clip(index, 0, slice_count(volume.shape, plane) - 1))
    if plane == Plane.SAGITTAL:
        return volume[::-1, :, index], (spacing[0], spacing[1])
    return volume[index], (spacing[1], spacing[2])


def display_size(shape: tuple[int, int], pixel_mm: tuple[float, float], long_side: int) -> tuple[int, int]:
    """(width, height) in pixels with square pixels in millimetres and the longer side ``long_side``."""
    height_mm, width_mm = shape[0] * pixel_mm[0], shape[1] * pixel_mm[1]
    scale = long_side / max(height_mm, width_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


def row_of_z(z_index: float, n_z: int, height: int) -> float:
    """Display row (sagittal, superior at the top) of a fractional Z index."""
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


def _draw_sagittal_marks(img: Image.Image, marks: list[LevelMark], n_z: int) -> Image.Image:
    """Shade each level band by its contribution and label it with grade, height ratio and HU."""
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    size = max(11, img.size[1] // 40)
    font = _font(size)
    width, height = img.size
    centres = [row_of_z(m.z_index, n_z, height) for m in marks]
    label_rows = spread(centres, size + 3, size / 2, height - size / 2)
    x_band, x_text = width * 0.08, width * 0.14
    for m, centre, row in zip(marks, centres, label_rows, strict=True):
        top, bottom = row_of_z(m.z_index + m.half_extent, n_z, height), row_of_z(m.z_index - m.half_extent, n_z, height)
        draw.rectangle([0, top, x_band, bottom], fill=(*m.colour, int(60 + 150 * m.contribution)))
        draw.line([0, centre, width, centre], fill=(*m.colour, 110), width=1)
        draw.line([x_band, centre, x_text - 2, row], fill=(*m.colour, 255), width=1)
        draw.text((x_text, row), m.label, fill=(*m.colour, 255), font=font, anchor="lm",
                  stroke_width=2, stroke_fill=(0, 0, 0, 255))
    return Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")


def _draw_axial_label(img: Image.Image, marks: list[LevelMark], z_index: int) -> Image.Image:
    """Name the level this axial slice cuts through (if any) in the top-left corner."""
    hit = [m for m in marks if abs(z_index - m.z_index) <= m.half_extent]
    if not hit:
        return img
    m = min(hit, key=lambda x: abs(z_index - x.z_index))
    draw = ImageDraw.Draw(img)
    draw.text((6, 6), m.label, fill=m.colour, font=_font(max(11, img.size[1] // 32)),
              stroke_width=2, stroke_fill=(0, 0, 0))
    return img


def render(volume: np.ndarray, spacing: tuple[float, float, float], view: View,
           marks: list[LevelMark] | None = None) -> Image.Image:
    """Draw one windowed reformat, resampled to square pixels, with the level overlay when given."""
    plane_img, pixel_mm = reformat(volume, spacing, view.plane, view.index)
    grey = Image.fromarray(view.window.apply(plane_img), mode="L")
    img = grey.resize(display_size(plane_img.shape, pixel_mm, view.long_side), Image.Resampling.BILINEAR)
    img = img.convert("RGB")
    if not marks:
        return img
    if view.plane == Plane.SAGITTAL:
        return _draw_sagittal_marks(img, marks, volume.shape[0])
    return _draw_axial_label(img, marks, int(np.clip(view.index, 0, volume.shape[0] - 1)))


def png_bytes(img: Image.Image) -> bytes:
    """Encode as PNG (lossless)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
