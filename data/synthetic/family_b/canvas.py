"""Family B's drawing surface: a HU volume on an LPS grid, painted with soft-edged signed-distance shapes.

Every shape is a signed distance ``f`` in mm (negative inside) evaluated only inside its bounding window; the
painted fraction of a voxel is ``clip(0.5 - f / edge, 0, 1)`` (partial volume: a shell thinner than a voxel
still shows, at its true share), composited over what is already there. The canonical array axes are those of
:mod:`inference.study`: axis 0 +z (superior), axis 1 +y (posterior), axis 2 +x (left).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Vec = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Window:
    """A box of the canvas: its index slices and the broadcastable voxel-centre coordinates (mm)."""

    index: tuple[slice, slice, slice]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray


@dataclass
class Canvas:
    """A HU volume and its voxel-centre coordinates (ascending z, y, x in mm)."""

    vol: np.ndarray
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    edge: float
    """Width (mm) of the soft edge of every painted shape (the in-plane voxel size)."""

    @classmethod
    def blank(cls, z: np.ndarray, y: np.ndarray, x: np.ndarray, fill: float = -1000.0) -> Canvas:
        """A canvas of air on the given coordinates."""
        vol = np.full((len(z), len(y), len(x)), fill, dtype=np.float32)
        edge = float(abs(x[1] - x[0])) if len(x) > 1 else 1.0
        return cls(vol, z.astype(np.float32), y.astype(np.float32), x.astype(np.float32), edge)

    def window(self, lo: Vec, hi: Vec) -> Window | None:
        """The box from ``lo`` to ``hi`` ((x, y, z) mm, widened by the soft edge), or None when off the canvas."""
        pad = self.edge
        zs = _span(self.z, lo[2] - pad, hi[2] + pad)
        ys = _span(self.y, lo[1] - pad, hi[1] + pad)
        xs = _span(self.x, lo[0] - pad, hi[0] + pad)
        if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
            return None
        return Window((zs, ys, xs), self.z[zs][:, None, None], self.y[ys][None, :, None], self.x[xs][None, None, :])

    def paint(self, win: Window, f: np.ndarray, hu: float | np.ndarray) -> None:
        """Composite ``hu`` over the window where the signed distance ``f`` (mm) says inside."""
        alpha = np.clip(0.5 - f / self.edge, 0.0, 1.0)
        region = self.vol[win.index]
        region += (alpha * (hu - region)).astype(np.float32, copy=False)


def _span(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Index slice of the ascending ``coords`` within [lo, hi]."""
    return slice(int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right")))


def capsule(win: Window, a: Vec, b: Vec, r_a: float, r_b: float | None = None) -> np.ndarray:
    """Signed distance to a (tapered) capsule: the segment a-b ((x, y, z) mm) thickened by a radius going from
    ``r_a`` to ``r_b``."""
    r_b = r_a if r_b is None else r_b
    d = np.subtract(b, a)
    length2 = max(float(np.dot(d, d)), 1e-9)
    px, py, pz = win.x - a[0], win.y - a[1], win.z - a[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / length2, 0.0, 1.0)
    dist = np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2)
    return dist - (r_a + (r_b - r_a) * t)


def paint_capsule(canvas: Canvas, a: Vec, b: Vec, r_a: float, hu: float, r_b: float | None = None) -> None:
    """Paint one capsule."""
    r = max(r_a, r_a if r_b is None else r_b)
    win = canvas.window(np.minimum(a, b) - r, np.maximum(a, b) + r)
    if win is not None:
        canvas.paint(win, capsule(win, a, b, r_a, r_b), hu)


def paint_tube(canvas: Canvas, points: np.ndarray, radii: np.ndarray | float, hu: float) -> None:
    """Paint a tube along a polyline (n, 3) with a radius per point."""
    r = np.broadcast_to(np.asarray(radii, dtype=float), (len(points),))
    for i in range(len(points) - 1):
        paint_capsule(canvas, points[i], points[i + 1], float(r[i]), hu, float(r[i + 1]))


def ellipsoid(win: Window, centre: Vec, radii: Vec, axes: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid with semi-axes ``radii`` along ``axes`` (rows; default
    x, y, z)."""
    px, py, pz = win.x - centre[0], win.y - centre[1], win.z - centre[2]
    ax = np.eye(3) if axes is None else np.asarray(axes)
    total = 0.0
    for row, r in zip(ax, radii, strict=True):
        comp = (px * row[0] + py * row[1] + pz * row[2]) / r
        total = total + comp * comp
    return (np.sqrt(total) - 1.0) * float(min(radii))


def paint_ellipsoid(canvas: Canvas, centre: Vec, radii: Vec, hu: float | np.ndarray,
                    axes: np.ndarray | None = None) -> Window | None:
    """Paint an ellipsoid; returns its window (None when off the canvas)."""
    reach = float(max(radii))
    win = canvas.window(np.subtract(centre, reach), np.add(centre, reach))
    if win is not None:
        canvas.paint(win, ellipsoid(win, centre, radii, axes), hu)
    return win


def outline_radius(outline: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Radius (over the ellipse) of a periodic outline sampled at equal angles from 0, at angles ``theta``."""
    n = len(outline)
    pos = np.mod(theta, 2 * math.pi) * (n / (2 * math.pi))
    i0 = np.floor(pos).astype(np.intp) % n
    frac = pos - np.floor(pos)
    return outline[i0] * (1 - frac) + outline[(i0 + 1) % n] * frac
