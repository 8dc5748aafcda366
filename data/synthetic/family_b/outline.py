"""Family B's body outline along z: an ellipse per slice, flat at the back, following the spine.

Stations tie the outline to the skeleton: the shoulders at T1, the chest at T6, the lower chest at T11, the
waist at L3, the iliac crests at S1 and the hips below; between stations the half-width and half-depth are
interpolated. The skin of the back lies a habitus-drawn distance behind the vertebral bodies (more in the chest,
where the scapulae and the ribs' angles sit), so lordosis and kyphosis move the back with the spine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.synthetic.family_b.spine import Spine
from data.synthetic.family_b.tissue import Habitus


@dataclass(frozen=True)
class Outline:
    """Per-z body outline: half-width ``a``, half-depth ``b``, centre (``xc``, ``yc``) and the flat back
    ``y_back``, all as functions of z given by their values at ascending ``z`` stations."""

    z: np.ndarray
    a: np.ndarray
    b: np.ndarray
    xc: np.ndarray
    yc: np.ndarray
    y_back: np.ndarray
    spine_y: np.ndarray
    """y of the vertebral bodies' centres (the sacrum's below it)."""
    spine_x: np.ndarray

    def at(self, z: np.ndarray | float) -> tuple[np.ndarray, ...]:
        """(a, b, xc, yc, y_back, spine_y, spine_x) interpolated at ``z``."""
        return tuple(np.interp(z, self.z, arr) for arr in (self.a, self.b, self.xc, self.yc, self.y_back,
                                                          self.spine_y, self.spine_x))


def build_outline(spine: Spine, h: Habitus) -> Outline:
    """The outline of one phantom from its spine and habitus."""
    seg = spine.by_level()
    low = spine.vertebrae()[-1].level
    names = ["T1", "T6", "T11", "L3" if "L3" in seg else low, low, "S1", "S3", "S5"]
    zs = [seg[n].centre[2] for n in names]
    z_hips = seg["S3"].centre[2] - 60.0
    stations_z = np.array([zs[0] + 80.0, *zs, z_hips, z_hips - 200.0])
    a = np.array([h.shoulder_a, h.shoulder_a, h.chest_a, h.chest_a * 0.97, h.waist_a, (h.waist_a + h.hip_a) / 2,
                  h.hip_a * 0.95, h.hip_a, h.hip_a, h.hip_a * 1.02, h.hip_a * 0.95])
    b = np.array([h.chest_b * 0.72, h.chest_b * 0.78, h.chest_b, h.chest_b * 1.02, h.waist_b, h.waist_b,
                  h.hip_b, h.hip_b * 1.05, h.hip_b * 1.08, h.hip_b * 1.05, h.hip_b])
    sy = np.array([seg[names[0]].centre[1], *[seg[n].centre[1] for n in names], seg["S5"].centre[1],
                   seg["S5"].centre[1]])
    sx = np.array([seg[names[0]].centre[0], *[seg[n].centre[0] for n in names], seg["S5"].centre[0],
                   seg["S5"].centre[0]])
    depth = np.array([seg[names[0]].depth, *[seg[n].depth for n in names], 15.0, 15.0])
    chest = np.array([1.3, 1.3, 1.3, 1.15, 1.0, 1.0, 1.0, 1.2, 1.6, 1.8, 1.9])  # scapulae; buttocks below S1
    back_skin = sy + depth / 2 + h.back * chest + 0.6 * h.fat
    order = np.argsort(stations_z)
    z = stations_z[order]
    y_back = back_skin[order]
    bb = b[order] + 0.35 * h.fat
    aa = a[order] + 0.5 * h.fat
    yc = y_back - 0.93 * bb
    xc = 0.5 * sx[order] + 0.5 * float(np.mean(sx))
    return Outline(z, aa, bb, xc, yc, y_back, sy[order], sx[order])
