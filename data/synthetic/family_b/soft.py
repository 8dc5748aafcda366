"""Family B's soft tissues: the body wall (skin fat, muscle ring, visceral fat mottled with bowel), lungs under
two diaphragm domes, heart, liver, spleen, stomach with its air-fluid level, kidneys (cortex, medulla, sinus fat),
bowel loops and colon, bladder, the psoas, quadratus, erector and gluteal muscles, the aorta with its arch,
bifurcation and calcified plaques, the IVC and iliac veins, portal and renal vessels, the couch.

Every organ is placed relative to the spine and the outline; the contrast phase sets their HU (:mod:`.tissue`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.synthetic.family_b.canvas import Canvas, Window, ellipsoid, paint_capsule, paint_ellipsoid, paint_tube
from data.synthetic.family_b.outline import Outline
from data.synthetic.family_b.spine import Spine
from data.synthetic.family_b.tissue import Habitus, Tissues


@dataclass(frozen=True)
class Domes:
    """The diaphragm: right and left dome tops (z), the posterior recess (z), dome centres and radii."""

    top_r: float
    top_l: float
    low: float
    x_r: float
    x_l: float
    y: float
    a: float
    b: float

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The z of the diaphragm under (x, y): the higher of the two domes, falling to the recess at the rim."""
        out = None
        for top, xd in ((self.top_r, self.x_r), (self.top_l, self.x_l)):
            d2 = ((x - xd) / self.a) ** 2 + ((y - self.y) / self.b) ** 2
            z = self.low + (top - self.low) * np.clip(1.0 - d2, 0.0, 1.0)
            out = z if out is None else np.maximum(out, z)
        assert out is not None
        return out


def draw_domes(rng: np.random.Generator, spine: Spine, outline: Outline) -> Domes:
    """Diaphragm domes: the right one near T10, the left lower; the recess behind at L1."""
    seg = spine.by_level()
    a, b, _, yc, *_ = (float(v) for v in outline.at(seg["T11"].centre[2]))
    top_r = seg["T10"].centre[2] + float(rng.uniform(-12, 18))
    x_sp = seg["T11"].centre[0]
    return Domes(top_r=top_r, top_l=top_r - float(rng.uniform(5, 25)), low=seg["L1"].centre[2] - 10.0,
                 x_r=x_sp - 0.45 * a, x_l=x_sp + 0.45 * a, y=yc - 0.1 * b, a=0.72 * a, b=1.0 * b)


def _slab(canvas: Canvas, outline: Outline, shrink: float, back_shrink: float) -> np.ndarray:
    """Signed distance (mm) to the outline shrunk by ``shrink`` (``back_shrink`` at the flat back), per voxel."""
    a, b, xc, yc, y_back, _, _ = (arr.astype(np.float32)[:, None, None] for arr in outline.at(canvas.z))
    aa, bb = np.maximum(a - shrink, 10.0), np.maximum(b - shrink, 10.0)
    x, y = canvas.x[None, None, :], canvas.y[None, :, None]
    r = np.sqrt(((x - xc) / aa) ** 2 + ((y - yc) / bb) ** 2)
    return np.maximum((r - 1.0) * np.minimum(aa, bb), y - (y_back - back_shrink))


WALL_STEP_MM = 3.0
"""The body wall changes slowly along z: it is drawn every few mm and repeated onto the finer slices."""


def paint_wall(canvas: Canvas, outline: Outline, h: Habitus, t: Tissues, rng: np.random.Generator) -> None:
    """Skin and subcutaneous fat, the muscle ring, and the visceral space: fat mottled with bowel and mesentery
    (a coarse random field thresholded at the habitus' visceral fat share). Drawn on every few render slices
    (:data:`WALL_STEP_MM`) over what the canvas holds there (the couch), then repeated along z."""
    step = float(canvas.z[1] - canvas.z[0]) if len(canvas.z) > 1 else WALL_STEP_MM
    k = max(1, int(WALL_STEP_MM // step))
    coarse = Canvas(np.ascontiguousarray(canvas.vol[::k]), canvas.z[::k], canvas.y, canvas.x, canvas.edge)
    everything = Window((slice(None), slice(None), slice(None)), coarse.z[:, None, None], coarse.y[None, :, None],
                        coarse.x[None, None, :])
    coarse.paint(everything, _slab(coarse, outline, 0.0, 0.0), t.fat)
    coarse.paint(everything, _slab(coarse, outline, h.fat, 0.6 * h.fat), t.muscle)
    inner = _slab(coarse, outline, h.fat + h.muscle, 0.6 * h.fat + h.back * 0.55)
    extent = (float(canvas.z[-1] - canvas.z[0]), float(canvas.y[-1] - canvas.y[0]), float(canvas.x[-1] - canvas.x[0]))
    blobs = rng.standard_normal(tuple(max(2, round(e / 25.0) + 1) for e in extent)).astype(np.float32)
    field = upsample(blobs, inner.shape)
    thr = float(np.quantile(blobs, h.visceral))
    share = 1.0 / (1.0 + np.exp(-(field - thr) / 0.15))
    coarse.paint(everything, inner, t.visceral_fat + (t.bowel_wall - 10.0 - t.visceral_fat) * share)
    canvas.vol[:] = np.repeat(coarse.vol, k, axis=0)[: len(canvas.z)]


def _lerp_matrix(n: int, c: int) -> np.ndarray:
    """(n, c) weights of linear interpolation from ``c`` corner-aligned samples to ``n``."""
    pos = np.linspace(0.0, c - 1.0, n)
    i0 = np.minimum(np.floor(pos).astype(int), c - 2) if c > 1 else np.zeros(n, int)
    frac = pos - i0
    out = np.zeros((n, c), dtype=np.float32)
    out[np.arange(n), i0] = 1.0 - frac
    if c > 1:
        out[np.arange(n), i0 + 1] += frac
    return out


def upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Separable linear interpolation of a coarse 3D field onto ``shape`` (corner-aligned), as three products."""
    wz, wy, wx = (_lerp_matrix(n, c) for n, c in zip(shape, coarse.shape, strict=True))
    out = np.tensordot(coarse, wx, axes=([2], [1]))  # (cz, cy, X)
    out = np.tensordot(out, wy, axes=([1], [1]))  # (cz, X, Y)
    out = (wz @ out.reshape(coarse.shape[0], -1)).reshape(shape[0], shape[2], shape[1])
    return np.ascontiguousarray(out.transpose(0, 2, 1))


def paint_chest(canvas: Canvas, spine: Spine, outline: Outline, h: Habitus, t: Tissues, domes: Domes,
                sex: str) -> None:
    """Lungs above the domes round the mediastinum, the heart, and breasts in women."""
    seg = spine.by_level()
    z_lo = domes.low
    z_hi = seg["T1"].centre[2] + 60.0
    sl = slice(int(np.searchsorted(canvas.z, z_lo)), int(np.searchsorted(canvas.z, z_hi)))
    if sl.start >= sl.stop:
        return
    z = canvas.z[sl][:, None, None]
    a, b, xc, yc, _, sy, sx = (arr.astype(np.float32)[:, None, None] for arr in outline.at(canvas.z[sl]))
    x, y = canvas.x[None, None, :], canvas.y[None, :, None]
    wall = h.fat + h.muscle + 8.0
    r = np.sqrt(((x - xc) / (a - wall)) ** 2 + ((y - yc) / (b - wall)) ** 2)
    f = np.maximum((r - 1.0) * (b - wall), y - (sy + 30.0))
    f = np.maximum(f, domes.height(x, y) - z)
    med = np.sqrt(((x - sx - 8.0) / 38.0) ** 2 + ((y - (sy - 40.0)) / 70.0) ** 2)
    f = np.maximum(f, (1.0 - med) * 38.0)
    win = Window((sl, slice(None), slice(None)), z, canvas.y[None, :, None], canvas.x[None, None, :])
    canvas.paint(win, f, t.lung)
    t10 = seg["T10"]
    heart = (t10.centre[0] + 22.0, t10.centre[1] - t10.depth / 2 - 72.0, domes.top_r + 48.0)
    paint_ellipsoid(canvas, heart, (60.0, 48.0, 52.0), t.myocardium)
    paint_ellipsoid(canvas, heart, (48.0, 36.0, 42.0), (t.aorta + t.ivc) / 2)
    if sex == "F":
        a6, b6, xc6, yc6, *_ = (float(v) for v in outline.at(seg["T6"].centre[2]))
        for side in (-1.0, 1.0):
            c = (xc6 + side * 0.45 * a6, yc6 - b6 + 8.0, seg["T6"].centre[2] - 25.0)
            paint_ellipsoid(canvas, c, (55.0, 38.0, 55.0), t.fat)
            paint_ellipsoid(canvas, c, (30.0, 20.0, 30.0), 25.0)


def _clipped(canvas: Canvas, centre: tuple[float, float, float], radii: tuple[float, float, float],
             domes: Domes) -> tuple[Window, np.ndarray] | None:
    """An ellipsoid cut by the diaphragm (kept below it): its window and signed distance."""
    win = canvas.window(np.subtract(centre, radii), np.add(centre, radii))
    if win is None:
        return None
    f = np.maximum(ellipsoid(win, centre, radii), win.z - (domes.height(win.x, win.y) - 2.0))
    return win, f


def paint_upper_abdomen(canvas: Canvas, spine: Spine, outline: Outline, h: Habitus, t: Tissues, domes: Domes,
                        prone: bool) -> None:
    """Liver, spleen and stomach under the domes; kidneys beside the spine."""
    seg = spine.by_level()
    a, b, _, yc, *_ = (float(v) for v in outline.at(seg["L1"].centre[2]))
    ai, bi = a - h.fat - h.muscle, b - h.fat - h.muscle
    x_sp, y_sp = seg["T12"].centre[0], seg["T12"].centre[1]
    for centre, radii, hu in (((x_sp - 0.42 * ai, yc - 0.05 * bi, domes.top_r - 75.0), (0.58 * ai, 0.8 * bi, 105.0),
                               t.liver),
                              ((x_sp + 0.66 * ai, y_sp + 5.0, domes.top_l - 55.0), (26.0, 48.0, 55.0), t.spleen)):
        got = _clipped(canvas, centre, radii, domes)
        if got:
            canvas.paint(got[0], got[1], hu)
    got = _clipped(canvas, (x_sp + 0.3 * ai, yc - 0.4 * bi, domes.top_l - 55.0), (52.0, 42.0, 55.0), domes)
    if got:
        win, f = got
        canvas.paint(win, f, t.bowel_wall)
        level = yc - 0.4 * bi + (12.0 if prone else -12.0)
        gas = (win.y > level) if prone else (win.y < level)
        canvas.paint(win, f + 3.0, np.where(gas, -950.0, 25.0))
    for side, dz in ((1.0, 0.0), (-1.0, -22.0)):
        v = seg["L1"]
        c = (v.centre[0] + side * (v.width / 2 + 40.0), v.centre[1] + 10.0, v.centre[2] + dz - 12.0)
        tilt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-side * 0.25, 0.3, 1.0]])
        tilt[2] /= np.linalg.norm(tilt[2])
        paint_ellipsoid(canvas, c, (28.0, 24.0, 55.0), t.kidney_cortex, axes=tilt)
        paint_ellipsoid(canvas, c, (19.0, 15.0, 44.0), t.kidney_medulla, axes=tilt)
        paint_ellipsoid(canvas, (c[0] - side * 14.0, c[1] - 6.0, c[2]), (9.0, 8.0, 26.0), t.fat, axes=tilt)


COLON: tuple[tuple[float, float, str, float], ...] = (
    (-0.62, 0.0, "S1", 5.0), (-0.65, 0.15, "top", 10.0), (0.0, -0.74, "L2", 0.0), (0.62, 0.24, "top", 35.0),
    (0.66, 0.22, "L4", 0.0), (0.24, -0.3, "S1", -25.0))
"""The colon's course before the rectum: (x, y) as fractions of the abdomen's inner half-width and half-depth,
and z from a level: caecum, hepatic flexure, transverse colon, splenic flexure, descending colon, sigmoid."""


def paint_bowel(canvas: Canvas, spine: Spine, outline: Outline, h: Habitus, t: Tissues, rng: np.random.Generator,
                colon_gas: bool, prone: bool) -> None:
    """Small-bowel loops (random walks of fluid, gas or mixed content) and the colon round the abdomen down to the
    rectum (gas-distended in a colonography-like study)."""
    seg = spine.by_level()
    z_top, z_bot = seg["L1"].centre[2], seg["S2"].centre[2] - 30.0
    a, b, xc, yc, *_ = (float(v) for v in outline.at((z_top + z_bot) / 2))
    ai, bi = a - h.fat - h.muscle - 15.0, b - h.fat - h.muscle - 15.0
    for _ in range(int(rng.integers(8, 18))):
        p = np.array([xc + rng.uniform(-0.6, 0.6) * ai, yc - rng.uniform(0.0, 0.7) * bi, rng.uniform(z_bot, z_top)])
        pts = [p]
        for _ in range(4):
            p = p + rng.normal(0, 18.0, 3)
            p[0] = np.clip(p[0], xc - 0.7 * ai, xc + 0.7 * ai)
            p[1] = np.clip(p[1], yc - 0.85 * bi, yc + 0.1 * bi)
            pts.append(p)
        r = float(rng.uniform(8.0, 14.0))
        content = float(rng.choice([t.bowel_fluid, -900.0, 40.0, -60.0], p=[0.5, 0.15, 0.2, 0.15]))
        paint_tube(canvas, np.array(pts), r, t.bowel_wall)
        paint_tube(canvas, np.array(pts), r - 2.5, content)
    s3, s5 = seg["S3"], seg["S5"]
    r_col = 26.0 if colon_gas else 20.0
    heights = {"S1": seg["S1"].centre[2], "L2": seg["L2"].centre[2], "L4": seg["L4"].centre[2], "top": z_top}
    path = np.array([[xc + fx * ai, yc + fy * bi, heights[at] + dz] for fx, fy, at, dz in COLON]
                    + [[s3.centre[0], s3.centre[1] - 35.0, s3.centre[2]],
                       [s5.centre[0], s5.centre[1] - 28.0, s5.centre[2] - 35.0]])
    paint_tube(canvas, path, r_col, t.bowel_wall)
    inner = -980.0 if colon_gas else float(rng.uniform(-160.0, 20.0))
    paint_tube(canvas, path, r_col - 2.5, inner)
    if not colon_gas:  # gas pockets on the non-dependent side
        for p in path[1:-2]:
            paint_ellipsoid(canvas, p + np.array([0.0, 9.0 if prone else -9.0, 0.0]), (10.0, 6.0, 14.0), -950.0)
    bladder = (s3.centre[0], s3.centre[1] - 95.0, s3.centre[2] - 45.0)
    size = float(rng.uniform(0.5, 1.2))
    paint_ellipsoid(canvas, bladder, (42.0 * size, 36.0 * size, 38.0 * size), t.bowel_wall)
    paint_ellipsoid(canvas, bladder, (42.0 * size - 3, 36.0 * size - 3, 38.0 * size - 3), t.bladder)


def paint_muscles(canvas: Canvas, spine: Spine, t: Tissues, h: Habitus) -> None:
    """Psoas (from T12 to the groin), quadratus lumborum, erector spinae and the gluteal muscles."""
    seg = spine.by_level()
    verts = spine.vertebrae()
    lumbar = [v for v in verts if v.level.startswith("L")]
    bulk = 1.0 + 0.15 * (h.muscle - 10.0) / 3.0
    s1 = seg["S1"]
    for side in (-1.0, 1.0):
        pts = [np.array([v.centre[0] + side * (v.width / 2 + 4.0 + 12.0 * k / len(lumbar)), v.centre[1] + 2.0,
                         v.centre[2]]) for k, v in enumerate([seg["T12"], *lumbar])]
        pts.append(np.array([s1.centre[0] + side * 70.0, s1.centre[1] - 55.0, s1.centre[2] - 70.0]))
        radii = np.linspace(5.0, 22.0, len(pts)) * bulk
        radii[-1] = 18.0 * bulk
        paint_tube(canvas, np.array(pts), radii, t.muscle)
        ql = [np.array([v.centre[0] + side * (v.width / 2 + 38.0), v.centre[1] + 22.0, v.centre[2]])
              for v in (seg["T12"], *lumbar[:-1])]
        paint_tube(canvas, np.array(ql), 10.0 * bulk, t.muscle)
        erector = [np.array([v.centre[0] + side * 27.0, v.centre[1] + v.depth / 2 + (40.0 if v.level[0] == "L"
                                                                                       else 44.0), v.centre[2]])
                   for v in verts[::2]] + [np.array([s1.centre[0] + side * 22.0, s1.centre[1] + 45.0,
                                                     s1.centre[2]])]
        paint_tube(canvas, np.array(erector), np.array([14.0] * (len(erector) - 1) + [12.0]) * bulk, t.muscle)
        paint_ellipsoid(canvas, (s1.centre[0] + side * 92.0 * h.pelvis, s1.centre[1] + 45.0,
                                 s1.centre[2] - 70.0), (50.0, 45.0, 75.0), t.muscle)


def paint_vessels(canvas: Canvas, spine: Spine, t: Tissues, domes: Domes, rng: np.random.Generator,
                  age: int) -> None:
    """Aorta (ascending, arch, descending, bifurcation, iliacs) with calcified plaques, IVC and iliac veins,
    portal vein and renal veins."""
    seg = spine.by_level()
    verts = [v for v in spine.vertebrae() if v.level not in ("T1", "T2", "T3")]
    low = spine.vertebrae()[-1]
    t4, t10, s1 = seg["T4"], seg["T10"], seg["S1"]
    r_ao = float(np.clip(10.0 + 0.06 * age + rng.normal(0, 1.0), 10.0, 17.0))
    arch = [np.array([t10.centre[0] + 12.0, t10.centre[1] - t10.depth / 2 - 60.0, domes.top_r + 70.0]),
            np.array([t4.centre[0] + 2.0, t4.centre[1] - t4.depth / 2 - 62.0, t4.centre[2] - 5.0]),
            np.array([t4.centre[0] + 10.0, t4.centre[1] - t4.depth / 2 - 30.0, seg["T3"].centre[2] + 8.0])]
    bif = next((v for v in verts if v.level == "L4"), low)
    desc = [np.array([v.centre[0] + (0.3 * v.width + 6.0) * (0.0 if v is bif else 1.0),
                      v.centre[1] - v.depth / 2 - r_ao - 3.0, v.centre[2]]) for v in verts[: verts.index(bif) + 1]]
    aorta = np.array(arch + desc)
    paint_tube(canvas, aorta, r_ao, t.aorta)
    for side in (-1.0, 1.0):
        iliac = np.array([desc[-1], [s1.centre[0] + side * 45.0, s1.centre[1] - 38.0, s1.centre[2]],
                          [s1.centre[0] + side * 80.0, s1.centre[1] - 62.0, s1.centre[2] - 85.0]])
        paint_tube(canvas, iliac, np.array([7.5, 6.5, 5.0]), t.aorta)
        vein = iliac + np.array([side * -6.0, 12.0, -6.0])
        vein[0] = desc[-1] + np.array([-22.0, 6.0, -20.0])
        paint_tube(canvas, vein, np.array([10.0, 8.5, 7.0]), t.ivc)
    for _ in range(int(rng.poisson(max(0.0, (age - 50) / 5.0)))):
        p = aorta[int(rng.integers(3, len(aorta)))]
        ang = rng.uniform(0, 2 * np.pi)
        paint_ellipsoid(canvas, p + np.array([np.cos(ang) * r_ao, np.sin(ang) * r_ao, rng.uniform(-8, 8)]),
                        (2.5, 2.5, float(rng.uniform(2.0, 6.0))), float(rng.uniform(400, 1000)))
    ivc = [np.array([v.centre[0] - 0.3 * v.width - 10.0, v.centre[1] - v.depth / 2 - 14.0, v.centre[2]])
           for v in verts if v.level[0] == "L" or v.level in ("T11", "T12")]
    ivc.insert(0, np.array([t10.centre[0] - 22.0, t10.centre[1] - t10.depth / 2 - 40.0, domes.top_r + 15.0]))
    paint_tube(canvas, np.array(ivc), 11.0, t.ivc)
    l1 = seg["L1"]
    hilum = np.array([l1.centre[0] - 45.0, l1.centre[1] - l1.depth / 2 - 48.0, seg["T11"].centre[2] - 5.0])
    paint_tube(canvas, np.array([[l1.centre[0] - 5.0, l1.centre[1] - l1.depth / 2 - 42.0, l1.centre[2]], hilum,
                                 hilum + np.array([-45.0, 10.0, 5.0])]), np.array([7.5, 6.0, 4.0]), t.portal)
    for side in (-1.0, 1.0):
        kid = np.array([l1.centre[0] + side * (l1.width / 2 + 26.0), l1.centre[1] + 4.0, l1.centre[2] - 12.0])
        cava = np.array([l1.centre[0] - 0.3 * l1.width - 10.0, l1.centre[1] - l1.depth / 2 - 14.0, l1.centre[2] - 14])
        paint_capsule(canvas, kid, cava, 5.0, t.ivc)


def paint_couch(canvas: Canvas, outline: Outline) -> None:
    """The table under the patient: a curved carbon-fibre shell over foam, below the lowest point of the back."""
    y0 = float(outline.y_back.max()) + 3.0
    x0 = float(np.mean(outline.xc))
    y = canvas.y[:, None]
    x = canvas.x[None, :]
    top = y0 + (x - x0) ** 2 / 1800.0
    inside = (np.abs(x - x0) < 230.0) & (y >= top) & (y <= top + 14.0)
    skin = inside & ((y <= top + 1.5) | (y >= top + 12.5))
    slab = np.where(skin, 250.0, np.where(inside, -350.0, np.nan)).astype(np.float32)
    mask = ~np.isnan(slab)
    if mask.any():
        canvas.vol[:, mask] = slab[mask]
