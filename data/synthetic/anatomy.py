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
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from data.synthetic.model import LEVELS, Patient

ALL_LEVELS: tuple[str, ...] = ("T8", "T9", "T10", *LEVELS, "S1")
"""Levels drawn as separate bodies (T8-T10 so the spine does not stop at the model's levels, S1 as the top of
the sacrum so the body below L5 looks like the real one: tilted, with the sacrum continuing below it)."""

# width (x), depth (y), height (z) of the vertebral body in mm at size 1.0, then the disc below it.
BODY_MM: dict[str, tuple[float, float, float, float]] = {
    "T8": (30, 24, 20, 6.0), "T9": (32, 25, 21, 6.5), "T10": (34, 26, 22, 7.0), "T11": (37, 28, 23, 7.5),
    "T12": (40, 30, 25, 8.0), "L1": (43, 31, 26, 9.0), "L2": (45, 32, 27, 10.0), "L3": (46, 33, 28, 11.0),
    "L4": (48, 34, 28, 11.5), "L5": (50, 34, 27, 12.0), "S1": (48, 33, 27, 0.0),
}
SACRAL_SEGMENTS: tuple[tuple[float, float, float, float], ...] = (
    (40, 27, 24, 12.0), (32, 22, 20, 24.0), (25, 17, 17, 36.0), (19, 13, 14, 48.0),
)
"""S2-S5: width, depth, height (mm) and how much flatter than S1 each segment lies (degrees): the sacrum
curves back towards the vertical as it descends (sacral kyphosis)."""
LORDOSIS_SHARE: dict[str, float] = {"L5": 0.30, "L4": 0.55, "L3": 0.72, "L2": 0.85, "L1": 0.95, "T12": 1.0}
"""Share of the lumbar lordosis (S1 to T12) reached at each level: about two thirds lies at L4-S1
(Been and Kalichman 2014; Roussouly 2005)."""
RIB_LEVELS = ("T8", "T9", "T10", "T11", "T12")


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
    tilt: float = 0.0
    """Sagittal tilt in degrees: the body's superior axis leans anteriorly (towards -y) by this angle, as the
    lower lumbar bodies and S1 do in lordosis. Heights, ``z_bottom`` and the in-plane shape are in the body's own
    frame, centred on (``z_center``, ``yc``)."""

    @property
    def z_center(self) -> float:
        """Centre of the body along z."""
        return self.z_bottom + self.height / 2.0

    def axis(self) -> tuple[float, float]:
        """The superior unit vector (z, y) of the body."""
        t = math.radians(self.tilt)
        return math.cos(t), -math.sin(t)

    def to_local(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (z, y) to the body's frame (same origin at its centre; z along its superior axis)."""
        t = math.radians(self.tilt)
        c, s = math.cos(t), math.sin(t)
        dz, dy = z - self.z_center, y - self.yc
        return self.z_center + dz * c - dy * s, self.yc + dz * s + dy * c

    def world_box(self, z_lo: float, z_hi: float, y_lo: float, y_hi: float) -> tuple[float, float, float, float]:
        """World bounding box (z_lo, z_hi, y_lo, y_hi) of a rectangle given in the body's frame."""
        t = math.radians(self.tilt)
        c, s = math.cos(t), math.sin(t)
        zs, ys = [], []
        for zl, yl in itertools.product((z_lo, z_hi), (y_lo, y_hi)):
            dz, dy = zl - self.z_center, yl - self.yc
            zs.append(self.z_center + dz * c + dy * s)
            ys.append(self.yc - dz * s + dy * c)
        return min(zs), max(zs), min(ys), max(ys)


def _sl(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Index slice of the sorted coordinate vector covering [lo, hi]."""
    a = int(np.searchsorted(coords, lo, side="left"))
    b = int(np.searchsorted(coords, hi, side="right"))
    return slice(a, b)


def spine_tilts(rng: np.random.Generator) -> dict[str, float]:
    """Sagittal tilt of every body: sacral slope 25-50 degrees, lumbar lordosis (S1 to T12) 5-35 degrees more
    than the sacral slope (LL about PI + 9 and PI = SS + PT with PT about 12: Legaye 1998, Schwab 2012), spread
    mostly over L4-S1; the thoracic bodies above T12 lean back towards kyphosis."""
    sacral_slope = float(rng.uniform(25.0, 50.0))
    lordosis = sacral_slope + float(rng.uniform(5.0, 35.0))
    tilts = {"S1": sacral_slope}
    tilts |= {lv: sacral_slope - lordosis * share for lv, share in LORDOSIS_SHARE.items()}
    for k, level in enumerate(("T11", "T10", "T9", "T8"), start=1):
        tilts[level] = tilts["T12"] + 4.0 * k
    return tilts


def place_spine(patient: Patient, rng: np.random.Generator, z_l5_bottom: float,
                y_spine: float) -> list[VertebraGeometry]:
    """Stack S1 and the bodies above it along the sagittal curve, with scoliosis and fractures.

    The curve is integrated from the centre of the lower endplate of L5 (at ``z_l5_bottom``): each body sits on
    the one below along its own tilted axis, each disc along the mean axis of its two bodies; the whole curve is
    then centred on ``y_spine`` (mid-range). Returned from S1 upwards."""
    truth = {v.level: v for v in patient.vertebrae}
    tilts = spine_tilts(rng)
    scoliosis = rng.uniform(-6.0, 6.0)
    dims = {level: tuple(s * patient.size * rng.normal(1.0, 0.03) for s in BODY_MM[level])
            for level in reversed(ALL_LEVELS)}
    order = list(reversed(ALL_LEVELS))  # S1, L5, L4, ... T8
    geos: dict[str, VertebraGeometry] = {}
    for idx, level in enumerate(order[1:], start=1):
        w, d, h, _ = dims[level]
        t = truth.get(level)
        loss, shape = (t.height_loss, t.shape) if t else (0.0, "none")
        hu = t.trabecular_hu if t else patient.l1_hu + 10.0 + rng.normal(0, 6)
        slot = h * (1.0 - loss) if shape == "crush" else h
        phase = (idx - 1) / (len(order) - 2)
        if level == "L5":
            bottom = (z_l5_bottom, 0.0)
        else:
            below = geos[order[idx - 1]]
            az, ay = below.axis()
            gap = dims[order[idx - 1]][3]
            mid = math.radians((below.tilt + tilts[level]) / 2.0)
            bottom = (below.z_center + az * below.height / 2 + math.cos(mid) * gap,
                      below.yc + ay * below.height / 2 - math.sin(mid) * gap)
        tr = math.radians(tilts[level])
        zc, yc = bottom[0] + math.cos(tr) * slot / 2, bottom[1] - math.sin(tr) * slot / 2
        geos[level] = VertebraGeometry(level, scoliosis * math.sin(math.pi * phase), yc, zc - slot / 2, slot,
                                       w, d, loss, shape, hu, tilts[level])
    l5 = geos["L5"]
    w, d, h, _ = dims["S1"]
    gap = dims["L5"][3]
    mid, tr = math.radians((l5.tilt + tilts["S1"]) / 2.0), math.radians(tilts["S1"])
    az, ay = l5.axis()
    top = (l5.z_center - az * l5.height / 2 - math.cos(mid) * gap, l5.yc - ay * l5.height / 2 + math.sin(mid) * gap)
    zc, yc = top[0] - math.cos(tr) * h / 2, top[1] + math.sin(tr) * h / 2
    geos["S1"] = VertebraGeometry("S1", 0.0, yc, zc - h / 2, h, w, d, 0.0, "none",
                                  patient.l1_hu + 15.0 + rng.normal(0, 6), tilts["S1"])
    ys = [g.yc for g in geos.values()]
    shift = y_spine - (min(ys) + max(ys)) / 2.0
    return [replace(geos[level], yc=geos[level].yc + shift) for level in order]


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


def _box(g: Grid, v: VertebraGeometry, zl: tuple[float, float], yl: tuple[float, float],
         xl: tuple[float, float]) -> tuple[slice, slice, slice]:
    """Voxel slices of the world box holding a rectangle of the body's frame (z, y) and an x range."""
    z0, z1, y0, y1 = v.world_box(zl[0], zl[1], yl[0], yl[1])
    return _sl(g.z, z0, z1), _sl(g.y, y0, y1), _sl(g.x, v.xc + xl[0], v.xc + xl[1])


def draw_vertebra(vol: np.ndarray, g: Grid, v: VertebraGeometry, cortical_hu: float,
                  rng: np.random.Generator) -> None:
    """Draw one vertebral body (cortical shell, trabecular interior with texture) into ``vol``."""
    zs, ys, xs = _box(g, v, (v.z_bottom - 1, v.z_bottom + v.height + 1),
                      (v.yc - v.depth / 2 - 1, v.yc + v.depth / 2 + 1), (-v.width / 2 - 1, v.width / 2 + 1))
    if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
        return
    z, y = v.to_local(g.z[zs][:, None, None], g.y[ys][None, :, None])
    u = ((g.x[xs] - v.xc) / (v.width / 2))[None, None, :]
    w = (y - v.yc) / (v.depth / 2)
    r = np.sqrt(u * u + w * w)
    inplane = (r < 1.0) & (w < 0.8)  # flattened posterior wall
    lo, hi = _body_heights(v, u, w)
    inside = inplane & (z >= lo) & (z <= hi)
    shell_mm = rng.uniform(0.8, 1.4)
    # A shell thinner than the voxels would be sampled as dots where the body is tilted: widen it to the voxel
    # size and lower its HU so the bone mass across it is kept (what partial volume does in a real scan).
    voxel = max(float(np.diff(g.z[:2]).max(initial=1.0)), float(np.diff(g.y[:2]).max(initial=1.0)))
    drawn_mm = max(shell_mm, 0.6 * voxel) if v.tilt else shell_mm
    shell_hu = v.trabecular_hu + (cortical_hu - v.trabecular_hu) * shell_mm / drawn_mm
    edge = np.minimum((1.0 - r) * min(v.width, v.depth) / 2, (0.8 - w) * v.depth / 2)
    dist = np.minimum(edge, np.minimum(z - lo, hi - z))
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, inside.shape), 1.0) * 60.0
    region = vol[zs, ys, xs]
    region[inside] = (v.trabecular_hu + texture)[inside]
    region[inside & (dist < drawn_mm)] = shell_hu


def draw_posterior(vol: np.ndarray, g: Grid, v: VertebraGeometry, hu: float, lumbar: bool) -> None:
    """Draw pedicles, lamina ring, spinous and transverse processes and the canal contents."""
    zc, h = v.z_center, v.height * 0.75
    ry, rx = 7.5 * (v.width / 45), 10.0 * (v.width / 45)
    yc_canal = v.yc + v.depth / 2 + ry + 1.5
    zs, ys, xs = _box(g, v, (zc - h / 2 - 12, zc + h / 2 + 4), (v.yc, yc_canal + ry + 45), (-rx - 40, rx + 40))
    if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
        return
    z, y = v.to_local(g.z[zs][:, None, None], g.y[ys][None, :, None])
    x = g.x[xs][None, None, :] - v.xc
    zin = np.abs(z - zc) < h / 2
    ring = ((x / rx) ** 2 + ((y - yc_canal) / ry) ** 2)
    outer = ((x / (rx + 5)) ** 2 + ((y - yc_canal) / (ry + 5)) ** 2) < 1
    inside_box = (z >= zc - h / 2 - 12) & (z <= zc + h / 2 + 4) & (y >= v.yc)
    lamina = outer & (ring >= 1) & (y > v.yc + v.depth / 2 - 2) & zin
    slope = 0.0 if lumbar else 0.35
    spinous = (np.abs(x) < 3.5) & (y > yc_canal + ry) & (y < yc_canal + ry + (30 if lumbar else 38)) & (
        np.abs(z - (zc - 2 - slope * (y - yc_canal - ry))) < (6 if lumbar else 4))
    tlen = 22.0 if lumbar else 18.0
    transverse = (np.abs(x) > rx) & (np.abs(x) < rx + tlen) & (np.abs(y - yc_canal + 2) < 4) & (
        np.abs(z - zc) < 4)
    region = vol[zs, ys, xs]
    region[np.broadcast_to((ring < 1) & zin & inside_box, region.shape)] = 15.0  # CSF
    region[np.broadcast_to((lamina | spinous | transverse) & inside_box, region.shape)] = hu


def draw_disc(vol: np.ndarray, g: Grid, below: VertebraGeometry, above: VertebraGeometry, hu: float) -> None:
    """Fill the disc space between two bodies: between the upper endplate of the lower body and the lower
    endplate of the upper one (a wedge when they are tilted differently), inside their mean outline."""
    mid = replace(below, xc=(below.xc + above.xc) / 2, yc=(below.yc + above.yc) / 2,
                  z_bottom=(below.z_center + above.z_center) / 2 - 1.0, height=2.0,
                  width=(below.width + above.width) / 2, depth=(below.depth + above.depth) / 2,
                  tilt=(below.tilt + above.tilt) / 2)
    reach = abs(above.z_center - below.z_center) / 2 + 2.0
    zs, ys, xs = _box(g, mid, (mid.z_center - reach, mid.z_center + reach),
                      (mid.yc - mid.depth / 2, mid.yc + mid.depth / 2), (-mid.width / 2, mid.width / 2))
    if zs.start >= zs.stop or ys.start >= ys.stop or xs.start >= xs.stop:
        return
    zw, yw = g.z[zs][:, None, None], g.y[ys][None, :, None]
    _, yl = mid.to_local(zw, yw)
    u = ((g.x[xs] - mid.xc) / (mid.width / 2))[None, None, :]
    vv = (yl - mid.yc) / (mid.depth / 2)
    zb, _ = below.to_local(zw, yw)
    za, _ = above.to_local(zw, yw)
    inside = ((u * u + vv * vv < 1.0) & (vv < 0.8) & (zb > below.z_bottom + below.height)
              & (za < above.z_bottom))
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


def draw_rib(vol: np.ndarray, g: Grid, v: VertebraGeometry, side: int, body_ax: float, body_ay: float,
             hu: float) -> None:
    """Draw one rib as a chain of small spheres on an elliptical arc round the flank, sloping down."""
    length = 0.55 if v.level in ("T11", "T12") else 0.9
    ax, ay = body_ax * 0.82, body_ay * 0.75
    n = max(8, int(length * math.pi * (ax + ay) / 2 / 3.0))
    t = np.linspace(0.0, length * math.pi, n)
    cy = v.yc + v.depth * 0.3
    for ti in t:
        center = (v.z_center - 25.0 * ti / math.pi, cy + ay * math.cos(ti + 0.25),
                  v.xc + side * ax * math.sin(ti + 0.25))
        draw_ellipsoid(vol, g, center, (4.0, 4.0, 4.0), hu)


def sacral_segments(s1: VertebraGeometry) -> list[VertebraGeometry]:
    """S2-S5 below S1: fused, narrowing bodies following the sacral curve (1.5 mm fused disc remnants)."""
    out, above = [], s1
    for width, depth, height, flatter in SACRAL_SEGMENTS:
        tilt = s1.tilt - flatter
        az, ay = above.axis()
        mid = math.radians((above.tilt + tilt) / 2.0)
        top = (above.z_center - az * above.height / 2 - math.cos(mid) * 1.5,
               above.yc - ay * above.height / 2 + math.sin(mid) * 1.5)
        tr = math.radians(tilt)
        zc, yc = top[0] - math.cos(tr) * height / 2, top[1] + math.sin(tr) * height / 2
        seg = replace(s1, level="S", yc=yc, z_bottom=zc - height / 2, height=height * s1.height / 27.0,
                      width=width * s1.width / 48.0, depth=depth * s1.depth / 33.0, tilt=tilt)
        out.append(seg)
        above = seg
    return out


def draw_pelvis(vol: np.ndarray, g: Grid, s1: VertebraGeometry, cortical_hu: float,
                rng: np.random.Generator) -> None:
    """Draw the sacrum below S1 (segments S2-S5 with the alae beside S1-S2) and both iliac wings."""
    segments = sacral_segments(s1)
    for below, above in itertools.pairwise([*reversed(segments), s1]):
        draw_disc(vol, g, below, above, 0.5 * (below.trabecular_hu + 200.0))
    for seg in segments:
        draw_vertebra(vol, g, seg, cortical_hu, rng)
    for side in (-1, 1):  # alae: lateral masses of S1-S2 reaching the sacroiliac joints
        ala = replace(s1, xc=s1.xc + side * (s1.width / 2 + 12.0), width=34.0, depth=s1.depth * 0.9,
                      z_bottom=s1.z_bottom - 14.0, height=s1.height + 12.0, shape="none", loss=0.0)
        draw_vertebra(vol, g, ala, cortical_hu, rng)
    top = s1.z_center + s1.height / 2
    zs = _sl(g.z, top - 110, top - 10)
    y = g.y[None, :, None]
    x = g.x[None, None, :] - s1.xc
    wing_r = ((np.abs(x) - 95.0) / 42.0) ** 2 + ((y - s1.yc + 5.0) / 55.0) ** 2
    wing = (wing_r > 0.78) & (wing_r < 1.0) & (y > s1.yc - 40)
    region = vol[zs]
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


@dataclass(frozen=True)
class Body:
    """Body habitus in mm."""

    ax: float
    ay: float
    fat: float


def draw_soft_tissue(vol: np.ndarray, g: Grid, body: Body, spine: list[VertebraGeometry],
                     acq: Acquisition, rng: np.random.Generator) -> None:
    """Body outline, subcutaneous fat, viscera, organs, muscles, vessels and bowel gas.

    The torso is drawn around a straightened spine and each run of slices is then moved along y with the
    sagittal curve, so the aorta, the psoas and the back muscles follow the lordosis as they do in a patient."""
    order = sorted(spine, key=lambda v: v.z_center)
    zc = np.array([v.z_center for v in order])
    yc = np.array([v.yc for v in order])
    y_ref = float((yc.min() + yc.max()) / 2.0)
    straight = [replace(v, yc=y_ref) for v in spine]
    n_gas = int(rng.integers(3, 9))
    gas = [(float(rng.uniform(0, 1)), float(rng.uniform(-body.ay * 0.7, -10.0)),
            float(rng.uniform(-body.ax * 0.6, body.ax * 0.6)), tuple(float(r) for r in rng.uniform(6.0, 22.0, 3)),
            float(rng.choice([-920.0, -100.0, 20.0]))) for _ in range(n_gas)]
    vessel_hu = float(rng.uniform(160, 320)) if acq.contrast else 42.0
    step = float(g.y[1] - g.y[0]) if len(g.y) > 1 else 1.0
    shift = np.rint((np.interp(g.z, zc, yc) - y_ref) / step).astype(int)
    start = 0
    for stop in [*(np.nonzero(np.diff(shift))[0] + 1).tolist(), len(g.z)]:
        sub = Grid(z=g.z[start:stop], y=g.y - shift[start] * step, x=g.x)
        _draw_torso(vol[start:stop], sub, body, straight, vessel_hu, gas)
        start = stop


def _draw_torso(vol: np.ndarray, g: Grid, body: Body, spine: list[VertebraGeometry], vessel_hu: float,
                gas: list[tuple[float, float, float, tuple[float, ...], float]]) -> None:
    """The soft tissue of :func:`draw_soft_tissue` on one run of slices, around a straight spine."""
    y = g.y[:, None]
    x = g.x[None, :]
    outer = (x / body.ax) ** 2 + (y / body.ay) ** 2 < 1.0
    inner = (x / (body.ax - body.fat)) ** 2 + (y / (body.ay - body.fat * 0.8)) ** 2 < 1.0
    vol[:, outer] = -100.0
    vol[:, inner] = 35.0
    by_level = {v.level: v for v in spine}
    l1, l5, t11 = by_level["L1"], by_level["L5"], by_level["T11"]
    big = 2000.0
    for side in (-1, 1):
        draw_ellipsoid(vol, g, (0.0, l1.yc + 48, side * 33.0), (big, 20.0, 24.0), 52.0)  # erector spinae
        draw_ellipsoid(vol, g, (l5.z_bottom, l1.yc - 2, side * (l5.width / 2 + 16)),
                       (l5.z_bottom - l1.z_center + 20, 16.0, 17.0), 50.0)  # psoas
        draw_ellipsoid(vol, g, (l1.z_center + 5 * side, l1.yc, side * 72.0), (55.0, 24.0, 30.0), 32.0)
    draw_ellipsoid(vol, g, (t11.z_center + 10, -15.0, -70.0), (85.0, 70.0, 70.0), 56.0)  # liver
    draw_ellipsoid(vol, g, (0.0, l1.yc - l1.depth / 2 - 14, 16.0), (big, 11.0, 11.0), vessel_hu)
    draw_ellipsoid(vol, g, (0.0, l1.yc - l1.depth / 2 - 12, -22.0), (big, 10.0, 13.0), vessel_hu * 0.8)
    z_lo, z_hi = l5.z_bottom - 40, l1.z_center + 40
    for frac, gy, gx, radii, hu in gas:
        draw_ellipsoid(vol, g, (z_lo + frac * (z_hi - z_lo), gy, gx), radii, hu)  # type: ignore[arg-type]


def draw_spine(vol: np.ndarray, g: Grid, spine: list[VertebraGeometry], body: Body,
               rng: np.random.Generator) -> None:
    """Discs, bodies, posterior elements, ribs and pelvis."""
    disc_hu = float(rng.uniform(70, 90))
    for below, above in itertools.pairwise(spine):
        draw_disc(vol, g, below, above, disc_hu)
    for v in spine:
        cortical = float(np.clip(480.0 + 2.6 * v.trabecular_hu + rng.normal(0, 30), 500, 1200))
        draw_posterior(vol, g, v, 0.55 * cortical, v.level[0] in "LS")
        draw_vertebra(vol, g, v, cortical, rng)
        if v.level in RIB_LEVELS:
            for side in (-1, 1):
                draw_rib(vol, g, v, side, body.ax, body.ay, 0.7 * cortical)
    s1 = next(v for v in spine if v.level == "S1")
    draw_pelvis(vol, g, s1, float(np.clip(480 + 2.6 * s1.trabecular_hu, 500, 1200)), rng)


def make_grid(acq: Acquisition, spine: list[VertebraGeometry]) -> Grid:
    """The reconstruction grid: a square FOV around the body and the z range of the scan."""
    by_level = {v.level: v for v in spine}
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


def render(patient: Patient, acq: Acquisition, body: Body,
           rng: np.random.Generator) -> tuple[np.ndarray, Grid, list[VertebraGeometry]]:
    """Render one study: canonical HU volume, its grid and where each vertebra went."""
    spine = place_spine(patient, rng, z_l5_bottom=acq.table_z, y_spine=body.ay * 0.25)
    grid = make_grid(acq, spine)
    vol = np.full(grid.shape, -1000.0, dtype=np.float32)
    draw_soft_tissue(vol, grid, body, spine, acq, rng)
    draw_spine(vol, grid, spine, body, rng)
    return apply_scanner(vol, acq, rng), grid, spine
