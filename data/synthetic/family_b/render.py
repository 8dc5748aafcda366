"""Render a family B study: paint the phantom on a fine z grid, integrate the slice profile, reconstruct with the
kernel and add the noise; the main series' canonical HU volume (and the extra reconstructions drawn)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from data.synthetic.family_b.bones import paint_skeleton
from data.synthetic.family_b.canvas import Canvas
from data.synthetic.family_b.plan import StudyPlan
from data.synthetic.family_b.scanner import apply_profile, noise_spread, reconstruct
from data.synthetic.family_b.soft import (
    draw_domes,
    paint_bowel,
    paint_chest,
    paint_couch,
    paint_muscles,
    paint_upper_abdomen,
    paint_vessels,
    paint_wall,
)

RENDER_STEP_MM = 1.5
"""Largest z step of the grid the phantom is painted on (finer than the slices when they are thick)."""
AIR_OUTSIDE = -1024.0
SPREAD_STEP_MM = 5.0
"""The noise map follows the outline, which changes slowly: computed every few mm and repeated."""


@dataclass(frozen=True)
class Volume:
    """A reconstructed series: canonical HU (z, y, x ascending) and its coordinates."""

    hu: np.ndarray
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    thickness: float


def render_grid(plan: StudyPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(render z, y, x, first slice index, render steps per slice) of a study."""
    rec = plan.series.rec
    z_scan = plan.z_positions()
    every = max(1, math.ceil(rec.spacing / RENDER_STEP_MM - 1e-9))
    step = rec.spacing / every
    margin = math.ceil(rec.thickness / step) + 1
    n = (len(z_scan) - 1) * every + 1 + 2 * margin
    z = z_scan[0] + step * (np.arange(n) - margin)
    m = plan.series.matrix
    offsets = rec.pixel_mm * (np.arange(m) - (m - 1) / 2)
    return z, plan.scan.centre[1] + offsets, plan.scan.centre[0] + offsets, margin, every


def paint_phantom(plan: StudyPlan, canvas: Canvas, rng: np.random.Generator) -> None:
    """Every structure, back to front: couch, body wall, chest, upper abdomen, bowel, muscles, vessels, bones."""
    p, t, h = plan.patient, plan.tissues, plan.habitus
    paint_couch(canvas, plan.outline)
    paint_wall(canvas, plan.outline, h, t, rng)
    domes = draw_domes(rng, plan.spine, plan.outline)
    paint_chest(canvas, plan.spine, plan.outline, h, t, domes, p.sex)
    paint_upper_abdomen(canvas, plan.spine, plan.outline, h, t, domes, plan.series.prone)
    paint_bowel(canvas, plan.spine, plan.outline, h, t, rng, colon_gas=bool(rng.random() < 0.18),
                prone=plan.series.prone)
    paint_muscles(canvas, plan.spine, t, h)
    paint_vessels(canvas, plan.spine, t, domes, rng, p.age)
    vacuum = {s.level for s in plan.spine.vertebrae() if s.level[0] == "L" and p.age > 60 and rng.random() < 0.06}
    step = float(canvas.z[1] - canvas.z[0]) if len(canvas.z) > 1 else 1.0
    voxel = (step, plan.series.rec.pixel_mm, plan.series.rec.pixel_mm)
    paint_skeleton(canvas, plan.spine, plan.outline, plan.look, t, rng, voxel, vacuum)


def _finish(vol: np.ndarray, plan: StudyPlan, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Blank the corners outside the reconstruction circle (when the scanner does) and clip to the stored range."""
    if plan.series.circle:
        r2 = (y[:, None] - plan.scan.centre[1]) ** 2 + (x[None, :] - plan.scan.centre[0]) ** 2
        vol[:, r2 > (plan.scan.fov_mm / 2) ** 2] = AIR_OUTSIDE
    return np.clip(vol, -1024.0, 3071.0, out=vol)


def render_study(plan: StudyPlan, rng: np.random.Generator) -> tuple[Volume, Volume | None]:
    """The main series and, when drawn, a lung-kernel reconstruction of the same slices."""
    z, y, x, margin, every = render_grid(plan)
    canvas = Canvas.blank(z, y, x)
    paint_phantom(plan, canvas, rng)
    rec = plan.series.rec
    z_scan = plan.z_positions()
    step = float(z[1] - z[0]) if len(z) > 1 else rec.spacing
    profiled = apply_profile(canvas.vol, step, rec.thickness, slice(margin, None, every))[: len(z_scan)]
    k = max(1, int(SPREAD_STEP_MM // rec.spacing))
    a, b, xc, yc, *_ = (np.asarray(v, np.float32) for v in plan.outline.at(z_scan[::k]))
    spread = noise_spread(a, b, xc, yc, y.astype(np.float32), x.astype(np.float32), rec.centre_boost)
    spread = np.repeat(spread, k, axis=0)[: len(z_scan)]
    main = _finish(reconstruct(profiled, rec, rng, spread), plan, y, x)
    lung = None
    if plan.series.extra_lung:
        lung_rec = replace(rec, kernel=plan.series.extra_lung, noise_sd=rec.noise_sd * 2.2)
        lung = Volume(_finish(reconstruct(profiled, lung_rec, rng, spread), plan, y, x), z_scan, y, x, rec.thickness)
    return Volume(main, z_scan, y, x, rec.thickness), lung
