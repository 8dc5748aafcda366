"""Render a synthetic thoracolumbar CT in HU on an acquisition grid.

The phantom is analytic and evaluated directly on the voxel grid of the canonical orientation of
:mod:`inference.study` (axis 0 = +S, axis 1 = +P, axis 2 = +L, patient LPS millimetres). Structures and HU:
air -1000, fat about -100, muscle 40-60, viscera 30-60, disc 70-90, CSF 15, cortical bone 500-1200,
trabecular bone from the patient's density. Blur (the reconstruction kernel and slice profile) and
correlated noise are applied after the hard-edged phantom is drawn.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from data.synthetic.model import LEVELS, Patient

ALL_LEVELS: tuple[str, ...] = ("T8", "T9", "T10", *LEVELS)
"""Levels drawn in the standard phantom (the ones above T11 exist so the spine does not stop at the model's
levels)."""
UPPER_LEVELS: tuple[str, ...] = ("T4", "T5", "T6", "T7", "T8", "T9", "T10")
"""Levels above the patient's drawn in a field-of-view cohort (``--fov mixed``), so a chest scan shows a spine."""
SACRUM_DISC_MM = 11.0
"""Gap between the lowest lumbar body and the top of the sacrum (the lumbosacral disc)."""
S1_HEIGHT_MM = 28.0
"""Height of the S1 segment at the top of the sacrum."""

# width (x), depth (y), height (z) of the vertebral body in mm at size 1.0, then the disc below it.
BODY_MM: dict[str, tuple[float, float, float, float]] = {
    "T4": (24, 20, 17, 4.5), "T5": (25, 21, 17.5, 5.0), "T6": (26, 22, 18, 5.0), "T7": (28, 23, 19, 5.5),
    "T8": (30, 24, 20, 6.0), "T9": (32, 25, 21, 6.5), "T10": (34, 26, 22, 7.0), "T11": (37, 28, 23, 7.5),
    "T12": (40, 30, 25, 8.0), "L1": (43, 31, 26, 9.0), "L2": (45, 32, 27, 10.0), "L3": (46, 33, 28, 11.0),
    "L4": (48, 34, 28, 11.5), "L5": (50, 34, 27, 12.0), "L6": (51, 34, 27, 12.0),
}
RIB_LEVELS = ("T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12")
LUMBAR_PROCESS_MM: dict[str, float] = {"L1": 34.0, "L2": 40.0, "L3": 45.0, "L4": 43.0, "L5": 40.0, "L6": 40.0}
"""Reach of a lumbar transverse process from the midline to its tip (mm, for a body of :data:`BODY_MM`'s width;
L3's is the longest, about 80-95 mm tip to tip in adults): long, flat processes beside a body without a rib."""


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates (mm, LPS) of the canonical (Z, Y, X) acquisition grid."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (Z, Y, X)."""
        return (len(self.z), len(self.y), len(self.x))


@dataclass(frozen=True)
class VertebraGeometry:
    """Where one vertebra was placed (mm, LPS)."""

    level: str
    xc: float
    yc: float
    z_bottom: float
    height: float
    """Nominal (posterior) height of the body slot."""
    width: float
    depth: float
    loss: float
    shape: str
    trabecular_hu: float

    @property
    def z_center(self) -> float:
        """Centre of the body along z."""
        return self.z_bottom + self.height / 2.0


def _sl(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Index slice of the sorted coordinate vector covering [lo, hi]."""
    a = int(np.searchsorted(coords, lo, side="left"))
    b = int(np.searchsorted(coords, hi, side="right"))
    return slice(a, b)


def place_spine(patient: Patient, rng: np.random.Generator, z_l5_bottom: float,
                y_spine: float, levels: tuple[str, ...] = ALL_LEVELS) -> list[VertebraGeometry]:
    """Stack the vertebral bodies and discs from the lowest lumbar vertebra upwards, with lordosis, scoliosis
    and fractures; ``levels`` superior first (lordosis and scoliosis follow the standard T8-L5 stretch)."""
    truth = {v.level: v for v in patient.vertebrae}
    lordosis = rng.uniform(3.0, 14.0)
    scoliosis = rng.uniform(-6.0, 6.0)
    z = z_l5_bottom
    out: list[VertebraGeometry] = []
    for idx, level in enumerate(reversed(levels)):
        w, d, h, disc = (s * patient.size * rng.normal(1.0, 0.03) for s in BODY_MM[level])
        t = truth.get(level)
        loss, shape = (t.height_loss, t.shape) if t else (0.0, "none")
        hu = t.trabecular_hu if t else patient.l1_hu + 10.0 + rng.normal(0, 6)
        slot = h * (1.0 - loss) if shape == "crush" else h
        phase = idx / (len(ALL_LEVELS) - 1)
        yc = y_spine - lordosis * math.sin(math.pi * min(1.0, phase * 1.6)) + 8.0 * max(0.0, phase - 0.6)
        xc = scoliosis * math.sin(math.pi * phase)
        out.append(VertebraGeometry(level, xc, yc, z, slot, w, d, loss, shape, hu))
        z += slot + disc
    return out


def _body_heights(v: VertebraGeometry, u: np.ndarray, vv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper endplate z (mm) of a vertebral body at normalised in-plane coordinates u, v."""
    r2 = u * u + vv * vv
    h = np.full(np.broadcast(u, vv).shape, v.height)
    lo = np.full_like(h, v.z_bottom)
    if v.shape == "wedge":  # anterior (v = -1) loses the most
        hi = lo + h * (1.0 - v.loss * (1.0 - vv) / 2.0)
    elif v.shape == "biconcave":
        dip = h * v.loss * np.clip(1.0 - r2, 0.0, 1.0) / 2.0
        lo, hi = lo + dip, lo + h - dip
    else:  # crush (slot already shortened) or intact
        hi = lo + h
    return lo, hi


def draw_vertebra(vol: np.ndarray, g: Grid, v: VertebraGeometry, cortical_hu: float,
                  rng: np.random.Generator) -> None:
    """Draw one vertebral body (cortical shell, trabecular interior with texture) into ``vol``."""
    zs = _sl(g.z, v.z_bottom - 1, v.z_bottom + v.height + 1)
    ys = _sl(g.y, v.yc - v.depth / 2 - 1, v.yc + v.depth / 2 + 1)
    xs = _sl(g.x, v.xc - v.width / 2 - 1, v.xc + v.width / 2 + 1)
    if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
        return
    z = g.z[zs][:, None, None]
    u = ((g.x[xs] - v.xc) / (v.width / 2))[None, None, :]
    w = ((g.y[ys] - v.yc) / (v.depth / 2))[None, :, None]
    r = np.sqrt(u * u + w * w)
    inplane = (r < 1.0) & (w < 0.8)  # flattened posterior wall
    lo, hi = _body_heights(v, u, w)
    inside = inplane & (z >= lo) & (z <= hi)
    shell_mm = rng.uniform(0.8, 1.4)
    edge = np.minimum((1.0 - r) * min(v.width, v.depth) / 2, (0.8 - w) * v.depth / 2)
    dist = np.minimum(edge, np.minimum(z - lo, hi - z))
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, inside.shape), 1.0) * 60.0
    region = vol[zs, ys, xs]
    region[inside] = (v.trabecular_hu + texture)[inside]
    region[inside & (dist < shell_mm)] = cortical_hu


def draw_posterior(vol: np.ndarray, g: Grid, v: VertebraGeometry, hu: float, lumbar: bool) -> None:
    """Draw pedicles, lamina ring, spinous and transverse processes and the canal contents."""
    zc, h = v.z_center, v.height * 0.75
    ry, rx = 7.5 * (v.width / 45), 10.0 * (v.width / 45)
    yc_canal = v.yc + v.depth / 2 + ry + 1.5
    zs = _sl(g.z, zc - h / 2 - 12, zc + h / 2 + 4)
    ys = _sl(g.y, v.yc, yc_canal + ry + 45)
    xs = _sl(g.x, v.xc - rx - 50, v.xc + rx + 50)
    z = g.z[zs][:, None, None]
    y = g.y[ys][None, :, None]
    x = g.x[xs][None, None, :] - v.xc
    zin = np.abs(z - zc) < h / 2
    ring = ((x / rx) ** 2 + ((y - yc_canal) / ry) ** 2)
    outer = ((x / (rx + 5)) ** 2 + ((y - yc_canal) / (ry + 5)) ** 2) < 1
    lamina = outer & (ring >= 1) & (y > v.yc + v.depth / 2 - 2) & zin
    slope = 0.0 if lumbar else 0.35
    spinous = (np.abs(x) < 3.5) & (y > yc_canal + ry) & (y < yc_canal + ry + (30 if lumbar else 38)) & (
        np.abs(z - (zc - 2 - slope * (y - yc_canal - ry))) < (6 if lumbar else 4))
    if lumbar:  # long flat processes, slightly backwards towards the tip (taller and thicker than thoracic ones)
        tip = LUMBAR_PROCESS_MM.get(v.level, 40.0) * v.width / BODY_MM.get(v.level, BODY_MM["L3"])[0]
        back = 0.15 * np.clip(np.abs(x) - rx, 0.0, None)
        transverse = (np.abs(x) > rx) & (np.abs(x) < tip) & (np.abs(y - yc_canal + 2 - back) < 4.5) & (
            np.abs(z - zc) < 5.5)
    else:
        transverse = (np.abs(x) > rx) & (np.abs(x) < rx + 18.0) & (np.abs(y - yc_canal + 2) < 4) & (
            np.abs(z - zc) < 4)
    region = vol[zs, ys, xs]
    region[np.broadcast_to(((ring < 1) & zin), region.shape)] = 15.0  # CSF
    region[np.broadcast_to(lamina | spinous | transverse, region.shape)] = hu


def draw_disc(vol: np.ndarray, g: Grid, below: VertebraGeometry, above: VertebraGeometry, hu: float) -> None:
    """Fill the disc space between two bodies."""
    zlo, zhi = below.z_bottom + below.height, above.z_bottom
    w, d = (below.width + above.width) / 2, (below.depth + above.depth) / 2
    xc, yc = (below.xc + above.xc) / 2, (below.yc + above.yc) / 2
    zs, ys, xs = _sl(g.z, zlo, zhi), _sl(g.y, yc - d / 2, yc + d / 2), _sl(g.x, xc - w / 2, xc + w / 2)
    u = ((g.x[xs] - xc) / (w / 2))[None, None, :]
    vv = ((g.y[ys] - yc) / (d / 2))[None, :, None]
    inside = np.broadcast_to((u * u + vv * vv < 1.0) & (vv < 0.8), (zs.stop - zs.start, *(u * vv).shape[1:]))
    region = vol[zs, ys, xs]
    region[inside] = hu


def draw_ellipsoid(vol: np.ndarray, g: Grid, center: tuple[float, float, float],
                   radii: tuple[float, float, float], hu: float) -> None:
    """Fill an axis-aligned ellipsoid (centre and radii in z, y, x mm)."""
    (cz, cy, cx), (rz, ry, rx) = center, radii
    zs, ys, xs = _sl(g.z, cz - rz, cz + rz), _sl(g.y, cy - ry, cy + ry), _sl(g.x, cx - rx, cx + rx)
    z = ((g.z[zs] - cz) / rz)[:, None, None]
    y = ((g.y[ys] - cy) / ry)[None, :, None]
    x = ((g.x[xs] - cx) / rx)[None, None, :]
    region = vol[zs, ys, xs]
    region[(z * z + y * y + x * x) < 1.0] = hu


def rib_centres(v: VertebraGeometry, side: int, body: Body, length: float) -> np.ndarray:
    """Centres (n, 3; z, y, x mm) of one rib, 3 mm apart: the head at the back of the body's upper half (the
    costovertebral joint), the neck along the transverse process to the tubercle at its tip, the angle behind and
    beside it, then round the inside of the chest wall towards the front, sloping down; ``length`` is the share
    of the half-circle from the back to the front that the rib covers (floating ribs are short)."""
    w = v.width
    rx, ry = 10.0 * (w / 45), 7.5 * (w / 45)
    y_canal = v.yc + v.depth / 2 + ry + 1.5
    tip = rx + 18.0
    near = [(v.yc + 0.32 * v.depth, w / 2 + 3.0), (y_canal - 1.0, tip), (y_canal + 12.0, tip + 22.0)]
    cage_x = max(body.ax - body.fat - 10.0, tip + 40.0)
    cage_y = max(body.ay - 0.8 * body.fat - 10.0, y_canal + 20.0)
    start = math.asin(min(0.95, (tip + 45.0) / cage_x))
    end = start + length * (math.pi - start)
    arc = [(cage_y * math.cos(a), cage_x * math.sin(a)) for a in np.linspace(start, end, 24)]
    pts = np.array(near + arc)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, dist[-1], 3.0)
    y = np.interp(s, dist, pts[:, 0])
    x = v.xc + side * np.interp(s, dist, pts[:, 1])
    # the head sits on the upper half of the body; from the tubercle on the rib slopes down towards the front
    z = v.z_center + np.interp(s, [0.0, dist[1], dist[-1]], [0.3 * v.height, 0.0, -12.0 - 28.0 * length])
    return np.stack([z, y, x], axis=1)


def draw_rib(vol: np.ndarray, g: Grid, v: VertebraGeometry, side: int, body: Body, hu: float,
             length: float) -> None:
    """Draw one rib (:func:`rib_centres`) as a chain of small spheres, articulated with its vertebra."""
    for z, y, x in rib_centres(v, side, body, length):
        draw_ellipsoid(vol, g, (float(z), float(y), float(x)), (4.0, 4.0, 4.0), hu)


def draw_pelvis(vol: np.ndarray, g: Grid, l5: VertebraGeometry, hu: float, cortical_hu: float) -> None:
    """Draw the sacrum (tapering, tilted block) and both iliac wings below L5."""
    top = l5.z_bottom - 11.0
    zs = _sl(g.z, top - 110, top)
    z = g.z[zs][:, None, None]
    depth_frac = np.clip((top - z) / 110.0, 0, 1)
    half_w = 52.0 - 30.0 * depth_frac
    yc = l5.yc + 6.0 + 30.0 * depth_frac
    y = g.y[None, :, None]
    x = g.x[None, None, :] - l5.xc
    sacrum = (np.abs(x) < half_w) & (np.abs(y - yc) < 20.0 - 6.0 * depth_frac)
    wing_r = ((np.abs(x) - 95.0) / 42.0) ** 2 + ((y - l5.yc - 5.0) / 55.0) ** 2
    wing = (wing_r > 0.78) & (wing_r < 1.0) & (y > l5.yc - 30) & (z < top - 10)
    region = vol[zs]
    region[np.broadcast_to(sacrum, region.shape)] = hu
    region[np.broadcast_to(wing, region.shape)] = cortical_hu * 0.7


@dataclass(frozen=True)
class Acquisition:
    """How the study is reconstructed: grid, kernel and noise (the image-side variation)."""

    matrix: int
    pixel_spacing: float
    slice_spacing: float
    slice_thickness: float
    kernel: str
    """STANDARD or BONE."""
    noise_sd: float
    fov_offset: tuple[float, float]
    """Reconstruction centre minus body centre (y, x) in mm."""
    margin_top: float
    margin_bottom: float
    contrast: bool
    table_z: float
    """Patient position along the table (shifts every z coordinate)."""
    scan: ScanRange | None = None
    """The scan's z range for field-of-view cohorts; None: the standard margins round T11-L5."""


@dataclass(frozen=True)
class Body:
    """Body habitus in mm."""

    ax: float
    ay: float
    fat: float


def draw_soft_tissue(vol: np.ndarray, g: Grid, body: Body, spine: list[VertebraGeometry],
                     acq: Acquisition, rng: np.random.Generator, lungs: bool = False) -> None:
    """Body outline, subcutaneous fat, viscera, organs, muscles, vessels and bowel gas; with ``lungs`` (what
    ``vfrisk synth`` draws unless told ``--no-lungs``; off here, as family A was drawn before lungs) the lungs and
    heart too, drawn after the liver and before the muscles."""
    y = g.y[:, None]
    x = g.x[None, :]
    outer = (x / body.ax) ** 2 + (y / body.ay) ** 2 < 1.0
    inner = (x / (body.ax - body.fat)) ** 2 + (y / (body.ay - body.fat * 0.8)) ** 2 < 1.0
    vol[:, outer] = -100.0
    vol[:, inner] = 35.0
    by_level = {v.level: v for v in spine}
    l1, l5, t11 = by_level["L1"], spine[0], by_level["T11"]  # spine[0]: the lowest lumbar vertebra
    big = 2000.0

    def muscles() -> None:
        for side in (-1, 1):
            draw_ellipsoid(vol, g, (0.0, l1.yc + 48, side * 33.0), (big, 20.0, 24.0), 52.0)  # erector spinae
            draw_ellipsoid(vol, g, (l5.z_bottom, l1.yc - 2, side * (l5.width / 2 + 16)),
                           (l5.z_bottom - l1.z_center + 20, 16.0, 17.0), 50.0)  # psoas
            draw_ellipsoid(vol, g, (l1.z_center + 5 * side, l1.yc, side * 72.0), (55.0, 24.0, 30.0), 32.0)

    if not lungs:
        muscles()
    draw_ellipsoid(vol, g, (t11.z_center + 10, -15.0, -70.0), (85.0, 70.0, 70.0), 56.0)  # liver
    vessel_hu = float(rng.uniform(160, 320)) if acq.contrast else 42.0
    if lungs:
        dome = draw_lungs(vol, g, body, by_level, rng)
        draw_ellipsoid(vol, g, (dome + 50.0, -0.3 * (body.ay - body.fat), 0.15 * (body.ax - body.fat)),
                       (55.0, 0.33 * (body.ay - body.fat), 0.38 * (body.ax - body.fat)),
                       vessel_hu * 0.9 if acq.contrast else 40.0)  # heart, on the diaphragm
        muscles()
    draw_ellipsoid(vol, g, (0.0, l1.yc - l1.depth / 2 - 14, 16.0), (big, 11.0, 11.0), vessel_hu)
    draw_ellipsoid(vol, g, (0.0, l1.yc - l1.depth / 2 - 12, -22.0), (big, 10.0, 13.0), vessel_hu * 0.8)
    for _ in range(int(rng.integers(3, 9))):
        center = (float(rng.uniform(l5.z_bottom - 40, l1.z_center + 40)),
                  float(rng.uniform(-body.ay * 0.7, -10.0)),
                  float(rng.uniform(-body.ax * 0.6, body.ax * 0.6)))
        radii = tuple(float(r) for r in rng.uniform(6.0, 22.0, 3))
        draw_ellipsoid(vol, g, center, radii, float(rng.choice([-920.0, -100.0, 20.0])))  # type: ignore[arg-type]


LUNG_HU = (-880.0, -820.0)
"""Range of the lungs' mean HU (aerated parenchyma at full inspiration)."""


RECESS_BELOW_T12_MM = 40.0
"""Lowest reach of the posterior costophrenic recesses below the centre of T12 (drawn uniformly from T12 down)."""


def draw_lungs(vol: np.ndarray, g: Grid, body: Body, by_level: dict[str, VertebraGeometry],
               rng: np.random.Generator) -> float:
    """Both lungs, in the chest cavity beside and in front of the spine, down to the diaphragm: two domes (the
    right one's top drawn near T10, the left one lower; highest in front) falling to the posterior costophrenic
    recesses beside T12-L1 (:data:`RECESS_BELOW_T12_MM`), deepest at the back, beside the spine as well as out to
    the flank, so a scan of the chest shows lung beside every thoracic body down to T12 (the real reference CT
    shows thin crescents beside T12; recesses ending beside T11, as this variant drew them before, taught a model
    to number the real T12 as T11). Returns the right dome's top (z, mm). Drawn over the organs (the liver stays
    under the dome), under the muscles, vessels and bones drawn after it."""
    t10, t12 = by_level["T10"], by_level["T12"]
    ax, ay = body.ax - body.fat - 12.0, body.ay - 0.8 * body.fat - 12.0  # inside the chest wall and ribs
    top_r = t10.z_center + float(rng.uniform(-15.0, 20.0))
    top_l = top_r - float(rng.uniform(5.0, 25.0))
    recess = t12.z_center - float(rng.uniform(0.0, RECESS_BELOW_T12_MM))
    hu = float(rng.uniform(*LUNG_HU))
    y, x = g.y[:, None], g.x[None, :]
    above = np.nonzero(g.z > recess)[0]
    if above.size == 0:
        return top_r
    for side, top in ((-1.0, top_r), (1.0, top_l)):  # LPS: the right lung at -x
        lung = ((x - side * 0.5 * ax) / (0.45 * ax)) ** 2 + ((y - 0.05 * ay) / (0.8 * ay)) ** 2 < 1.0
        d2 = ((x - side * 0.45 * ax) / (0.75 * ax)) ** 2 + ((y + 0.45 * ay) / (0.75 * ay)) ** 2
        floor = recess + (top - recess) * np.clip(1.0 - d2, 0.0, 1.0)
        for k in above:
            vol[k][lung & (floor < g.z[k])] = hu
    return top_r


def draw_spine(vol: np.ndarray, g: Grid, spine: list[VertebraGeometry], body: Body,
               rng: np.random.Generator) -> None:
    """Discs, bodies, posterior elements, ribs and pelvis."""
    disc_hu = float(rng.uniform(70, 90))
    for below, above in itertools.pairwise(spine):
        draw_disc(vol, g, below, above, disc_hu)
    for v in spine:
        cortical = float(np.clip(480.0 + 2.6 * v.trabecular_hu + rng.normal(0, 30), 500, 1200))
        draw_posterior(vol, g, v, 0.55 * cortical, v.level.startswith("L"))
        draw_vertebra(vol, g, v, cortical, rng)
        if v.level in RIB_LEVELS:
            length = float(rng.uniform(0.15, 0.35)) if v.level == "T12" else 0.45 if v.level == "T11" else 0.85
            for side in (-1, 1):
                draw_rib(vol, g, v, side, body, 0.7 * cortical, length)
    l5 = spine[0]
    draw_pelvis(vol, g, l5, l5.trabecular_hu + 40.0, float(np.clip(480 + 2.6 * l5.trabecular_hu, 500, 1200)))


@dataclass(frozen=True)
class ScanRange:
    """Where a field-of-view cohort's scan starts and ends: an offset (mm, +S) from the centre of a named level
    (``S1``: the first sacral segment)."""

    top_level: str
    top_mm: float
    bottom_level: str
    bottom_mm: float


def s1_geometry(spine: list[VertebraGeometry]) -> tuple[float, float, float, float]:
    """(z_bottom, height, y, x) of the S1 segment: the top of the sacrum under the lowest lumbar vertebra."""
    low = spine[0]
    top = low.z_bottom - SACRUM_DISC_MM
    return top - S1_HEIGHT_MM, S1_HEIGHT_MM, low.yc + 6.0 + 30.0 * (S1_HEIGHT_MM / 2) / 110.0, low.xc


def level_span(spine: list[VertebraGeometry], level: str) -> tuple[float, float]:
    """(bottom, top) z in mm of a level's body (``S1`` included)."""
    if level == "S1":
        z0, h, _, _ = s1_geometry(spine)
        return z0, z0 + h
    v = next(v for v in spine if v.level == level)
    return v.z_bottom, v.z_bottom + v.height


def make_grid(acq: Acquisition, spine: list[VertebraGeometry]) -> Grid:
    """The reconstruction grid: a square FOV around the body and the z range of the scan (the standard margins
    round T11-L5, or the acquisition's :class:`ScanRange`)."""
    by_level = {v.level: v for v in spine}
    if acq.scan is not None:
        z_lo = sum(level_span(spine, acq.scan.bottom_level)) / 2 + acq.scan.bottom_mm
        z_hi = sum(level_span(spine, acq.scan.top_level)) / 2 + acq.scan.top_mm
    else:
        z_lo = by_level["L5"].z_bottom - acq.margin_bottom
        z_hi = by_level["T11"].z_bottom + by_level["T11"].height + acq.margin_top
    nz = math.floor((z_hi - z_lo) / acq.slice_spacing) + 1
    z = z_lo + acq.slice_spacing * np.arange(nz)
    half = acq.pixel_spacing * (acq.matrix - 1) / 2.0
    y = acq.fov_offset[0] - half + acq.pixel_spacing * np.arange(acq.matrix)
    x = acq.fov_offset[1] - half + acq.pixel_spacing * np.arange(acq.matrix)
    return Grid(z=z, y=y, x=x)


def apply_scanner(vol: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Blur by the kernel and slice profile, then add correlated noise of the requested SD."""
    inplane_mm = 0.45 if acq.kernel == "BONE" else 0.8
    sigma = (acq.slice_thickness / 2.355 / acq.slice_spacing, inplane_mm / acq.pixel_spacing,
             inplane_mm / acq.pixel_spacing)
    out = ndimage.gaussian_filter(vol, sigma=sigma, mode="nearest")
    noise_sigma = (0.0, 0.6, 0.6)
    probe = ndimage.gaussian_filter(rng.standard_normal((8, 48, 48), dtype=np.float32), noise_sigma)
    scale = acq.noise_sd / float(probe.std())
    noise = rng.standard_normal(vol.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, noise_sigma) * np.float32(scale)
    out += noise
    return out.astype(np.float32, copy=False)


def render(patient: Patient, acq: Acquisition, body: Body, rng: np.random.Generator,
           levels: tuple[str, ...] = ALL_LEVELS, lungs: bool = False
           ) -> tuple[np.ndarray, Grid, list[VertebraGeometry]]:
    """Render one study: canonical HU volume, its grid and where each vertebra went (``lungs``: the
    ``--lungs`` variant, :func:`draw_soft_tissue`)."""
    spine = place_spine(patient, rng, z_l5_bottom=acq.table_z, y_spine=body.ay * 0.25, levels=levels)
    grid = make_grid(acq, spine)
    vol = np.full(grid.shape, -1000.0, dtype=np.float32)
    draw_soft_tissue(vol, grid, body, spine, acq, rng, lungs)
    draw_spine(vol, grid, spine, body, rng)
    return apply_scanner(vol, acq, rng), grid, spine
