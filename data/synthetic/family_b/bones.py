"""Family B's skeleton: vertebral bodies with a cortical shell and anisotropic trabecular texture, discs,
posterior elements, the canal, ribs T1-T12 with costal cartilage, the sternum, the sacrum, iliac wings and hips.

Each body is the real outline (VerSe verse004) swept between two endplates with their real concavity, in the
body's own frame (tilted along the curve). The trabecular texture is a skewed, band-limited random field whose
correlation is longer along the spine's axis than across it (vertical trabeculae) and whose amplitude is set in
mm, so coarser voxels average it down as a scanner does; its reference spread is the noise-free texture of the
real TPTBox L3 crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from data.synthetic.family_b.canvas import Canvas, Window, outline_radius, paint_capsule, paint_ellipsoid, paint_tube
from data.synthetic.family_b.outline import Outline
from data.synthetic.family_b.spine import RIB_LEVELS, Segment, Spine, frame, rim_factor, stats
from data.synthetic.family_b.tissue import Tissues

TEXTURE_CORR_MM = (1.4, 0.8, 0.8)
"""Correlation lengths (z, y, x) of the trabecular texture: longer along the spine (vertical trabeculae; the
real crop's lag correlation is highest along the spine)."""
TEXTURE_SKEW = 0.45
"""Log-normal skew of the texture (sparse bright struts over darker marrow)."""


@dataclass(frozen=True)
class BoneLook:
    """How bone reads in one study."""

    cortical_hu: float
    """HU of compact bone (before partial volume)."""
    shell_mm: float
    """Cortical shell thickness of the vertebral bodies."""
    texture_sd: float
    """Trabecular texture SD (HU) at 1.5 mm voxels, before the scanner's blur."""
    enhancement: dict[str, float]
    """Trabecular enhancement per level (HU; 0 when unenhanced)."""


def _local(win: Window, seg: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame coordinates (u, v, w) of the window's voxels."""
    px, py, pz = win.x - seg.centre[0], win.y - seg.centre[1], win.z - seg.centre[2]
    u, v, w = ((px * a[0] + py * a[1] + pz * a[2]) for a in seg.axes)
    return u, v, w


def body_sdf(win: Window, seg: Segment, bulge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to a body (outline swept between concave endplates, fractures applied) and the
    normalised radius (for the central texture profile); ``bulge`` widens the middle (discs)."""
    u, v, w = _local(win, seg)
    un, vn = u / (seg.width / 2), v / (seg.depth / 2)
    rho = np.sqrt(un * un + vn * vn)
    r_out = outline_radius(np.asarray(seg.outline, dtype=np.float32), np.arctan2(vn, un))
    half = seg.height / 2
    rel = np.clip(rho / r_out, 0.0, 1.0)
    if bulge:
        r_out = r_out * (1.0 + bulge * np.clip(1.0 - (w / (0.45 * half)) ** 2, 0.0, 1.0))
    heights = half * rim_factor(seg.shape, seg.loss, np.clip(vn, -1, 1)) * (1 - seg.concavity * (1 - rel**2))
    if seg.shape == "biconcave":
        heights = heights * (1 - seg.loss * (1 - rel**2))
    f_in = (rho - r_out) * (min(seg.width, seg.depth) / 2)
    return np.maximum(f_in, np.abs(w) - heights), rel


def texture(rng: np.random.Generator, shape: tuple[int, ...], voxel_mm: tuple[float, float, float],
            sd: float) -> np.ndarray:
    """A zero-mean skewed trabecular texture of the given SD at 1.5 mm voxels, averaged down for coarser ones."""
    field = rng.standard_normal(shape, dtype=np.float32)
    sigma = [c / v for c, v in zip(TEXTURE_CORR_MM, voxel_mm, strict=True)]
    field = ndimage.gaussian_filter(field, [s if s > 0.25 else 0 for s in sigma], mode="wrap")
    field /= max(float(field.std()), 1e-6)
    skewed = np.exp(TEXTURE_SKEW * field)
    skewed = (skewed - skewed.mean()) / max(float(skewed.std()), 1e-6)

    def keep(c: float, v: float) -> float:
        return (1 + v * v / (4 * c * c)) ** -0.25

    ref = math.prod(keep(c, 1.5) for c in TEXTURE_CORR_MM)
    gain = math.prod(keep(c, v) for c, v in zip(TEXTURE_CORR_MM, voxel_mm, strict=True)) / ref
    return (skewed * (sd * gain)).astype(np.float32)


def _bounds(seg: Segment, pad: float) -> tuple[np.ndarray, np.ndarray]:
    pts = seg.surface()
    return pts.min(axis=0) - pad, pts.max(axis=0) + pad


def paint_body(canvas: Canvas, seg: Segment, look: BoneLook, rng: np.random.Generator,
               voxel: tuple[float, float, float],
               enhanced_hu: float) -> None:
    """A vertebral (or sacral) body: the cortical shell, then the textured trabecular compartment whose mean is
    ``enhanced_hu`` (a darker centre, the basivertebral veins, balanced by a brighter rim)."""
    lo, hi = _bounds(seg, 2.0)
    win = canvas.window(lo, hi)
    if win is None:
        return
    f, rel = body_sdf(win, seg)
    canvas.paint(win, f, look.cortical_hu)
    tex = texture(rng, f.shape, voxel, look.texture_sd)
    centre = 8.0 * (rel**2 - 0.5)
    canvas.paint(win, f + look.shell_mm, enhanced_hu + tex + centre)


def paint_disc(canvas: Canvas, up: Segment, down: Segment, hu: float, vacuum: bool) -> None:
    """The disc between two bodies: a body-like shape spanning centre to centre, bulging at its middle (the
    bodies painted afterwards keep only the disc space); a vacuum disc holds a gas cleft."""
    c = (np.asarray(up.centre) + np.asarray(down.centre)) / 2
    axis = np.asarray(up.centre) - np.asarray(down.centre)
    length = float(np.linalg.norm(axis))
    disc = Segment(level="disc", centre=(float(c[0]), float(c[1]), float(c[2])), axes=frame(axis),
                   width=(up.width + down.width) / 2,
                   depth=(up.depth + down.depth) / 2, height=length, concavity=0.0, outline=down.outline, hu=hu)
    lo, hi = _bounds(disc, 3.0)
    win = canvas.window(lo, hi)
    if win is None:
        return
    f, _ = body_sdf(win, disc, bulge=0.05)
    canvas.paint(win, f, hu)
    if vacuum:
        paint_ellipsoid(canvas, tuple(c), (7.0, 3.0, 1.8), -650.0, axes=np.asarray(disc.axes))


def to_patient(seg: Segment, local: tuple[float, float, float]) -> np.ndarray:
    """A point given in the body's frame (u, v, w mm) in patient coordinates."""
    return np.asarray(seg.centre) + np.asarray(local) @ np.asarray(seg.axes)


def canal(seg: Segment) -> tuple[float, float, float]:
    """(v offset of the canal's centre, its AP and its LR radius) behind a body."""
    lumbar = seg.level.startswith("L")
    r_ap, r_lr = (8.0, 11.5) if lumbar else (7.5, 8.0)
    scale = seg.width / 40.0
    return seg.depth / 2 + r_ap * scale + 1.0, r_ap * scale, r_lr * scale


def posterior_parts(seg: Segment) -> list[tuple[tuple[float, float, float], tuple[float, float, float], float]]:
    """Capsules (start, end in the body's frame, radius) of the posterior elements: pedicles, laminae, spinous,
    transverse and articular processes; thoracic processes slope down, lumbar ones stand straight back."""
    vc, r_ap, r_lr = canal(seg)
    h, d2 = seg.height, seg.depth / 2
    lumbar = seg.level.startswith("L")
    s = seg.width / 40.0
    ped_r = (4.5 if lumbar else 3.5) * s
    back = vc + r_ap + 2.5
    parts: list[tuple[tuple[float, float, float], tuple[float, float, float], float]] = []
    for side in (-1.0, 1.0):
        x0 = side * (r_lr + 2.5)
        parts += [((x0, d2 - 4, 0.15 * h), (x0, vc + 1, 0.12 * h), ped_r),
                  ((x0, vc + 2, 0.26 * h), (0.0, back, 0.1 * h), 3.0 * s),
                  ((x0, vc + 2, -0.22 * h), (0.0, back, -0.3 * h), 3.0 * s),
                  ((x0 * 1.1, vc + 3, 0.3 * h), (x0 * 1.15, vc + 6, 0.5 * h + 6), 3.8 * s),
                  ((x0 * 0.9, vc + 8, -0.22 * h), (x0 * 0.85, vc + 10, -0.5 * h - 6), 3.4 * s)]
        if lumbar:
            reach = seg.width / 2 + (16.0 if seg.level in ("L1", "L5", "L6") else 22.0) * s
            parts.append(((x0, vc + 2, 0.05 * h), (side * reach, vc - 2, 0.05 * h), 3.6 * s))
        else:
            parts.append(((x0, vc + 2, 0.1 * h), (side * (seg.width / 2 + 14 * s), vc + 14, 0.1 * h + 2), 4.0 * s))
    if lumbar:
        parts += [((0, back, -0.05 * h), (0, back + 26 * s, -0.2 * h), 3.6 * s),
                  ((0, back, -0.3 * h), (0, back + 24 * s, -0.45 * h), 3.2 * s)]
    else:
        parts.append(((0, back, -0.1 * h), (0, back + 26 * s, -0.1 * h - 26 * s), 3.0 * s))
    return parts


def paint_posterior(canvas: Canvas, seg: Segment, cortical: float, inner: float) -> None:
    """The posterior elements of one vertebra: each capsule as a cortical rim over a marrow core."""
    for a, b, r in posterior_parts(seg):
        pa, pb = to_patient(seg, a), to_patient(seg, b)
        paint_capsule(canvas, pa, pb, r, cortical)
        if r > 2.2:
            paint_capsule(canvas, pa, pb, r - 1.4, inner)


def paint_canal(canvas: Canvas, spine: Spine, t: Tissues) -> None:
    """The thecal sac (CSF) behind every body down to S2, with the cord down to L1 (the conus)."""
    pts, radii, cord = [], [], []
    for seg in spine.segments[:-3]:
        vc, r_ap, r_lr = canal(seg)
        pts.append(to_patient(seg, (0.0, vc, 0.0)))
        radii.append(min(r_ap, r_lr) * 0.95)
        if seg.level in (*RIB_LEVELS, "L1"):
            cord.append(pts[-1])
    paint_tube(canvas, np.array(pts), np.array(radii), t.csf)
    if len(cord) > 1:
        paint_tube(canvas, np.array(cord), 4.5, t.cord)


def rib_path(seg: Segment, index: int, side: float, outline: Outline) -> np.ndarray:
    """Points (n, 3) of one rib: the head at the body, the tubercle at the transverse process, then round an
    ellipse inside the chest wall, sloping down; ribs 11-12 float short, rib 1 turns tight."""
    vc, _, _ = canal(seg)
    head = to_patient(seg, (side * (seg.width / 2 + 1.0), seg.depth / 2 - 4.0, 0.45 * seg.height))
    tubercle = to_patient(seg, (side * (seg.width / 2 + 13.0), vc + 13.0, 0.15 * seg.height))
    a, b, _, yc, *_ = (float(v) for v in outline.at(seg.centre[2]))
    shrink = 0.55 + 0.45 * min(1.0, index / 4.0)
    ra = (a - 25.0) * shrink
    back_y = tubercle[1] + 6.0
    front_y = yc - b + 20.0
    rb = max(30.0, (back_y - front_y) / 2) * (0.75 + 0.25 * shrink)
    cy = back_y - rb
    reach = {11: 1.2, 12: 0.85}.get(index, 2.75 if index <= 7 else 2.75 - 0.18 * (index - 7))
    phi = np.linspace(0.45, reach, 9)
    drop = (1.4 if index == 1 else 3.2 if index <= 10 else 1.4) * seg.height
    frac = (phi - phi[0]) / (math.pi - phi[0])
    arc = np.stack([seg.centre[0] + side * ra * np.sin(phi), cy + rb * np.cos(phi),
                    tubercle[2] - 5.0 - drop * frac**0.9], axis=1)
    return np.vstack([head, tubercle, arc])


def paint_ribs(canvas: Canvas, spine: Spine, outline: Outline, look: BoneLook, t: Tissues) -> None:
    """Rib pairs on T1-T12 (T12's the last), costal cartilage of ribs 1-10 towards the sternum, and the sternum."""
    seg = spine.by_level()
    ends = []
    for i, lv in enumerate(RIB_LEVELS, start=1):
        v = seg[lv]
        marrow = v.hu + look.enhancement.get(lv, 0.0) + 40.0
        for side in (-1.0, 1.0):
            path = rib_path(v, i, side, outline)
            radius = 3.2 if i in (1, 11, 12) else 4.0
            paint_tube(canvas, path, radius, 0.75 * look.cortical_hu)
            paint_tube(canvas, path, radius - 1.3, marrow)
            if i <= 10:
                tip = path[-1]
                target = np.array([seg["T1"].centre[0] + side * (12.0 if i <= 7 else 45.0), tip[1] - 12.0,
                                   tip[2] - (4.0 if i <= 7 else 18.0)])
                paint_capsule(canvas, tip, target, 3.5, t.cartilage, 3.0)
                if i <= 7:
                    ends.append(target)
    if ends:
        front = np.array(ends)
        top, bottom = front[:, 2].max() + 10.0, front[:, 2].min()
        x0, y0 = float(np.mean(front[:, 0])), float(front[:, 1].min()) - 2.0
        paint_tube(canvas, np.array([[x0, y0 + 4.0, top], [x0, y0, (top + bottom) / 2], [x0, y0 + 6.0, bottom]]),
                   np.array([9.0, 7.0, 5.0]), 0.7 * look.cortical_hu)


def paint_bone(canvas: Canvas, centre: np.ndarray, radii: tuple[float, float, float], cortical: float,
               marrow: float, axes: np.ndarray | None = None, rim: float = 1.6) -> None:
    """An ellipsoidal bone: a cortical rim ``rim`` mm thick over marrow."""
    paint_ellipsoid(canvas, centre, radii, cortical, axes=axes)
    paint_ellipsoid(canvas, centre, tuple(max(0.5, r - rim) for r in radii), marrow, axes=axes)


def paint_pelvis(canvas: Canvas, spine: Spine, look: BoneLook, marrow: float, scale: float, joint: float) -> None:
    """Sacral alae, iliac wings (an arc of bone flaring from the acetabulum to the crest near the lowest lumbar
    disc), the hip joints (acetabulum, joint space, femoral head), femoral necks and shafts, pubic and ischial
    rami."""
    seg = spine.by_level()
    s1, s2, low = seg["S1"], seg["S2"], spine.vertebrae()[-1]
    cortical = 0.6 * look.cortical_hu
    for side in (-1.0, 1.0):
        for s, size in ((s1, 26.0), (s2, 20.0)):  # the alae: flat wings out to the sacroiliac joints
            paint_bone(canvas, to_patient(s, (side * (s.width / 2 + size * 0.7), 2.0, 0.0)),
                       (size, size * 0.55, size * 0.6), cortical, marrow, axes=np.asarray(s.axes))
    crest = s1.centre[2] + 0.5 * (low.centre[2] - s1.centre[2]) + 8.0
    acet = s1.centre[2] - 75.0 * scale
    x0, y0 = s1.centre[0], s1.centre[1]
    for side in (-1.0, 1.0):
        _ilium(canvas, side, (x0, y0), (acet, crest), scale, cortical, marrow)
        head = np.array([x0 + side * 88.0 * scale, y0 - 48.0 * scale, acet - 22.0])
        r = 23.0 * scale
        paint_ellipsoid(canvas, head, (r + 8, r + 8, r + 8), cortical)  # acetabulum
        paint_ellipsoid(canvas, head, (r + 3, r + 3, r + 3), joint)
        paint_bone(canvas, head, (r, r, r), cortical, marrow + 40.0)
        troch = head + np.array([side * 38.0, 6.0, -40.0]) * scale
        paint_capsule(canvas, head, troch, 14.0 * scale, marrow + 60.0)
        paint_capsule(canvas, troch, troch + np.array([side * 4.0, 8.0, -140.0]), 14.0 * scale, cortical)
        paint_capsule(canvas, troch, troch + np.array([side * 4.0, 8.0, -140.0]), 9.0 * scale, marrow)
        pubis = np.array([x0 + side * 15.0, y0 - 105.0 * scale, acet - 30.0])
        paint_capsule(canvas, head + np.array([-side * 20.0, -20.0, 5.0]), pubis, 9.0, cortical)
        paint_capsule(canvas, head + np.array([-side * 10.0, 25.0, -25.0]),
                      head + np.array([-side * 20.0, 30.0, -70.0]), 11.0, cortical)


def _ilium(canvas: Canvas, side: float, origin: tuple[float, float], z_range: tuple[float, float], scale: float,
           cortical: float, marrow: float) -> None:
    """One iliac wing: for each z an arc of bone round a centre in front of and inside it (the iliac fossa),
    wide at the crest, narrow above the acetabulum; a cortical plate with marrow inside."""
    (x0, y0), (z_lo, z_hi) = origin, z_range
    r0 = 70.0 * scale
    x_near, x_far = x0 + side * 30.0, x0 + side * (50.0 * scale + r0 + 12.0)
    win = canvas.window((min(x_near, x_far), y0 - 140.0 * scale, z_lo), (max(x_near, x_far), y0 + 75.0, z_hi))
    if win is None:
        return
    f = np.clip((win.z - z_lo) / (z_hi - z_lo), 0.0, 1.0)
    radius = r0 * (0.5 + 0.5 * f**0.7)
    cx = x0 + side * (40.0 + 10.0 * f) * scale
    cy = y0 - (15.0 + 25.0 * f) * scale
    dx, dy = (win.x - cx) * side, win.y - cy
    phi = np.arctan2(dx, dy)  # 0 behind the centre, pi/2 lateral
    lo, hi = np.radians(25.0 - 15.0 * f), np.radians(80.0 + 30.0 * f)
    ring = np.abs(np.sqrt(dx * dx + dy * dy) - radius)
    ang = np.maximum(lo - phi, phi - hi) * radius
    thick = 3.0 + 6.0 * (1 - f) ** 2
    edge = np.maximum(ring - thick, np.maximum(ang, np.maximum(z_lo - win.z, win.z - z_hi)))
    canvas.paint(win, edge, cortical)
    canvas.paint(win, edge + 1.6, marrow)


def paint_skeleton(canvas: Canvas, spine: Spine, outline: Outline, look: BoneLook, t: Tissues,
                   rng: np.random.Generator, voxel: tuple[float, float, float], vacuum: set[str]) -> None:
    """Every bone, in order: canal, discs, bodies and posterior elements, sacrum, pelvis, ribs and sternum."""
    paint_canal(canvas, spine, t)
    segs = spine.segments
    mobile = spine.vertebrae()
    for up, down in zip(mobile, (*mobile[1:], segs[len(mobile)]), strict=True):
        paint_disc(canvas, up, down, t.disc + rng.normal(0, 6), up.level in vacuum)
    for seg in segs:
        hu = seg.hu + look.enhancement.get(seg.level, look.enhancement.get("S1", 0.0))
        paint_body(canvas, seg, look, rng, voxel, hu)
        if not seg.level.startswith("S"):
            paint_posterior(canvas, seg, 0.8 * look.cortical_hu, hu + 60.0)
    for a, b in zip(segs[len(mobile):-1], segs[len(mobile) + 1:], strict=True):  # the sacral crest
        paint_capsule(canvas, to_patient(a, (0, a.depth / 2 + 12, 0)), to_patient(b, (0, b.depth / 2 + 10, 0)),
                      4.0, 0.6 * look.cortical_hu)
    sacral_marrow = segs[len(mobile)].hu + look.enhancement.get("S1", 0.0)
    scale = float(np.clip(mobile[-1].width / 50.0, 0.85, 1.2))
    paint_pelvis(canvas, spine, look, sacral_marrow, scale, t.muscle)
    paint_ribs(canvas, spine, outline, look, t)


def draw_look(rng: np.random.Generator, spine: Spine, offset: float, age: int) -> BoneLook:
    """Cortical density, shell and texture of one study, and the per-level enhancement (``offset`` when enhanced)."""
    real = stats()["tptbox_l3"]
    enh = {s.level: (offset + float(rng.normal(0, 3.0)) if offset else 0.0) for s in spine.segments}
    return BoneLook(cortical_hu=float(np.clip(rng.normal(1350 - 4.0 * (age - 50), 120), 850, 1700)),
                    shell_mm=float(rng.uniform(0.6, 1.2)),
                    texture_sd=float(real["trabecular_texture_sd"]) * float(rng.uniform(0.6, 1.05)),
                    enhancement=enh)
