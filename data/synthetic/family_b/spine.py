"""Family B's spine: where every vertebral body sits, how it is oriented and how big it is.

The curve (sagittal kyphosis and lordosis, coronal deviation, level spacing) is drawn from the principal
components of the steps between neighbouring body centres of 2,116 real CTs (VID keypoints); the bodies' width,
depth, height-to-pitch ratio, endplate concavity and axial outline come from the real masks of VerSe verse004
(T9-L5); the sacrum follows the real L5-L6 step of spines with an L6 (the keypoints hold no sacrum). Every
coordinate is DICOM patient LPS in mm (+x left, +y posterior, +z superior).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from data.synthetic.model import Patient

STATS_FILE = Path(__file__).with_name("stats.json")
THORACIC: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 13))
SACRAL: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S5")
RIB_LEVELS = THORACIC
"""Every thoracic vertebra carries a rib pair; T12's is the last (it anchors the numbering)."""

LUMBOSACRAL_DEG = (16.0, 4.0)
"""Mean and SD of the S1 endplate's tilt beyond the lowest lumbar body's axis (disc wedge plus the L5 wedge)."""
POSTERIOR_DISC_MM = 4.0
"""Least height of the lumbosacral disc at its back (the sacrum moves down to keep it)."""
MAX_BODY_TO_PITCH = 0.82
"""Largest ratio of a body's peripheral height to the centre spacing (leaves a disc of 18 % of the pitch)."""
SACRAL_SIZE: tuple[tuple[float, float, float], ...] = (
    (48.0, 31.0, 27.0), (40.0, 25.0, 22.0), (32.0, 20.0, 18.0), (25.0, 16.0, 14.0), (18.0, 12.0, 11.0))
"""Width, depth and height (mm) of the sacral segment bodies S1-S5 at unit scale (Peretz 1998 ranges)."""
SACRAL_CURVE_DEG = 9.0
"""Each sacral segment's axis turns this much forwards from the one above (the sacrum is concave in front)."""


@cache
def stats() -> dict[str, Any]:
    """The derived statistics (``stats.json``; recompute with ``python -m data.synthetic.family_b.derive``)."""
    return dict(json.loads(STATS_FILE.read_text()))


@dataclass(frozen=True)
class Segment:
    """One vertebral body (or sacral segment body) placed in patient space."""

    level: str
    centre: tuple[float, float, float]
    """Body centre (x, y, z) LPS mm."""
    axes: tuple[tuple[float, float, float], ...]
    """Rows u (towards the patient's left), v (posterior), w (along the spine, superior)."""
    width: float
    depth: float
    height: float
    """Intact height along w at the body's periphery (mm)."""
    concavity: float
    """Fractional height lost at the centre of an intact body (the endplates' concavity)."""
    outline: tuple[float, ...]
    """Radius over the ellipse of the same width and depth, 24 angles from +u towards +v."""
    hu: float
    """Unenhanced trabecular HU (the truth)."""
    loss: float = 0.0
    shape: str = "none"

    def surface(self) -> np.ndarray:
        """Points (48, 3) round the rims of both endplates in patient space (fracture heights applied)."""
        theta = np.linspace(0.0, 2 * np.pi, len(self.outline), endpoint=False)
        r = np.asarray(self.outline)
        u = r * np.cos(theta) * self.width / 2
        v = r * np.sin(theta) * self.depth / 2
        half = self.height / 2 * rim_factor(self.shape, self.loss, np.sin(theta))
        ax = np.asarray(self.axes)
        local = np.concatenate([np.stack([u, v, half], 1), np.stack([u, v, -half], 1)])
        return np.asarray(self.centre) + local @ ax

    def z_span(self) -> tuple[float, float]:
        """(bottom, top) z of the body (mm): a body is whole in view when both are inside the scan."""
        z = self.surface()[:, 2]
        return float(z.min()), float(z.max())


def rim_factor(shape: str, loss: float, v_norm: np.ndarray) -> np.ndarray:
    """Height of the body's rim over its intact height at normalised depth ``v_norm`` (-1 front, +1 back): a wedge
    loses ``loss`` at the front, a crush everywhere; a biconcave fracture keeps its rim."""
    v_norm = np.asarray(v_norm, dtype=float)
    if shape == "wedge":
        return 1.0 - loss * (1.0 - v_norm) / 2.0
    if shape == "crush":
        return np.full_like(v_norm, 1.0 - loss)
    return np.ones_like(v_norm)


@dataclass(frozen=True)
class Spine:
    """Every segment of one phantom, superior first: T1 ... the lowest lumbar vertebra, then S1-S5."""

    segments: tuple[Segment, ...]
    lumbar: int
    sacral_slope_deg: float

    def by_level(self) -> dict[str, Segment]:
        """Segments by level name."""
        return {s.level: s for s in self.segments}

    def vertebrae(self) -> tuple[Segment, ...]:
        """The mobile vertebrae (T1 to the lowest lumbar)."""
        return tuple(s for s in self.segments if not s.level.startswith("S"))

    def z_at(self, level: str) -> float:
        """Centre z (mm) of a level."""
        return self.by_level()[level].centre[2]


def mobile_levels(lumbar: int) -> tuple[str, ...]:
    """Mobile levels of a phantom with ``lumbar`` lumbar vertebrae, superior first."""
    return (*THORACIC, *(f"L{i}" for i in range(1, lumbar + 1)))


def draw_steps(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Steps (dz, dy, dx: upper centre minus lower centre) T1-T2 ... L4-L5 from the real curve model, keyed by
    the upper level."""
    curve = stats()["keypoints"]["curve"]
    mean = np.asarray(curve["mean"], dtype=float).ravel()
    comps = np.asarray(curve["components"], dtype=float)
    sd = np.asarray(curve["component_sd"], dtype=float)
    resid = np.asarray(curve["residual_sd"], dtype=float)
    vec = mean + (rng.standard_normal(len(sd)) * sd) @ comps + rng.standard_normal(len(mean)) * resid
    steps = vec.reshape(-1, 3)
    steps[:, 0] = np.maximum(steps[:, 0], 0.55 * np.asarray(curve["mean"])[:, 0])
    return {lv: steps[i] for i, lv in enumerate(curve["levels"][:-1])}


def _lower_step(rng: np.random.Generator) -> np.ndarray:
    """The real L5-L6 step (dz, dy, dx) of spines with an L6: used for L5-L6 and for the lowest lumbar-S1 step."""
    six = stats()["keypoints"]["l6_step"]
    return np.asarray(six["mean"]) + rng.standard_normal(3) * np.asarray(six["sd"]) * np.array([1.0, 0.8, 0.5])


def place_centres(rng: np.random.Generator, lumbar: int, anchor: tuple[float, float, float]
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Body centres (x, y, z) of T1 ... the lowest lumbar vertebra with L1 at ``anchor``, and the S1 centre."""
    steps = draw_steps(rng)
    levels = mobile_levels(lumbar)
    to_xyz = np.array([2, 1, 0])  # (dz, dy, dx) -> (dx, dy, dz)
    centres = {"L1": np.asarray(anchor, dtype=float)}
    i1 = levels.index("L1")
    for i in range(i1 - 1, -1, -1):
        centres[levels[i]] = centres[levels[i + 1]] + steps[levels[i]][to_xyz]
    for i in range(i1 + 1, len(levels)):
        step = steps.get(levels[i - 1]) if levels[i] != "L6" else _lower_step(rng)
        centres[levels[i]] = centres[levels[i - 1]] - np.asarray(step)[to_xyz]
    s1 = centres[levels[-1]] - _lower_step(rng)[to_xyz]
    return centres, s1


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.linalg.norm(v))


def frame(w: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """Axes (u, v, w): w the given superior-pointing direction, v posterior orthogonal to it, u = v x w."""
    w = _unit(w)
    v = _unit(np.array([0.0, 1.0, 0.0]) - w * w[1])
    u = np.cross(v, w)
    return _row(u), _row(v), _row(w)


def _row(a: np.ndarray) -> tuple[float, float, float]:
    return float(a[0]), float(a[1]), float(a[2])


def _shape_of(level: str) -> dict[str, Any]:
    """Real body measures of the nearest level measured in verse004 (T1-T8 as T9, L6 as L5)."""
    real = stats()["verse004"]
    name = level if level in real["levels"] else ("T9" if level.startswith("T") else "L5")
    i = real["levels"].index(name)
    return {k: real[k][i] for k in ("width", "depth", "height_ant", "height_mid", "height_to_pitch", "pitch",
                                    "outline")}


def _pitch(centres: dict[str, np.ndarray], levels: tuple[str, ...], i: int) -> float:
    near = [levels[j] for j in (i - 1, i + 1) if 0 <= j < len(levels)]
    return float(np.mean([np.linalg.norm(centres[levels[i]] - centres[n]) for n in near]))


def build_vertebrae(rng: np.random.Generator, patient: Patient, centres: dict[str, np.ndarray],
                    levels: tuple[str, ...], s1: np.ndarray) -> list[Segment]:
    """Bodies at the given centres: height from the local pitch and the real height-to-pitch ratio; width and
    depth from the real masks scaled with this spine's size; the patient's fractures."""
    truth = {v.level: v for v in patient.vertebrae}
    ref = stats()["verse004"]
    scale_pitch = _pitch(centres, levels, levels.index("L2")) / float(ref["pitch"][ref["levels"].index("L2")])
    scale = math.sqrt(max(0.75, min(1.3, scale_pitch)) * patient.size)
    out = []
    for i, lv in enumerate(levels):
        real = _shape_of(lv)
        pitch = _pitch(centres, levels, i)
        above_t9 = lv not in ref["levels"] and lv.startswith("T")
        shrink = pitch / float(real["pitch"]) if above_t9 else 1.0  # above T9: sized with the smaller pitch
        up = centres[levels[max(0, i - 1)]]
        down = centres[levels[i + 1]] if i + 1 < len(levels) else s1
        t = truth.get(lv)
        hu = t.trabecular_hu if t else float(np.clip(patient.l1_hu + 12.0 + 1.5 * (11 - _index(lv))
                                                     + rng.normal(0, 7), 20, 360))
        real_c = 1 - float(real["height_mid"]) / float(real["height_ant"])
        concavity = float(np.clip(real_c, 0.04, 0.12))
        ratio = min(MAX_BODY_TO_PITCH, float(real["height_to_pitch"]) / (1 - concavity))
        out.append(Segment(
            level=lv, centre=tuple(float(c) for c in centres[lv]), axes=frame(up - down),  # type: ignore[arg-type]
            width=float(real["width"]) * scale * shrink * rng.normal(1.0, 0.03),
            depth=float(real["depth"]) * scale * shrink * rng.normal(1.0, 0.03),
            height=ratio * pitch * rng.normal(1.0, 0.02), concavity=concavity,
            outline=tuple(float(r) for r in real["outline"]), hu=hu,
            loss=t.height_loss if t else 0.0, shape=t.shape if t else "none"))
    return out


def _index(level: str) -> int:
    """0 for T1 ... 11 for T12, 12 for L1 ..."""
    return int(level[1:]) - 1 if level.startswith("T") else 11 + int(level[1:])


def shorten_crushed(segments: list[Segment]) -> list[Segment]:
    """A crush fracture shortens the spine: the crushed body keeps its lower endplate and everything above it moves
    down by the height lost."""
    out = list(segments)
    for i in range(len(out) - 1, -1, -1):
        s = out[i]
        if s.shape != "crush" or s.loss <= 0:
            continue
        drop = s.height * s.loss
        out[i] = replace(s, centre=(s.centre[0], s.centre[1], s.centre[2] - drop / 2))
        for j in range(i):
            c = out[j].centre
            out[j] = replace(out[j], centre=(c[0], c[1], c[2] - drop))
    return out


def build_sacrum(rng: np.random.Generator, s1: np.ndarray, lowest: Segment, scale: float,
                 hu: float) -> tuple[list[Segment], float]:
    """S1-S5 along the sacral curve: S1's endplate tilted beyond the lowest lumbar body's by the lumbosacral wedge,
    each segment turning further; the whole sacrum moved down if the disc's back would be thinner than
    :data:`POSTERIOR_DISC_MM`."""
    tilt = math.degrees(math.atan2(-lowest.axes[2][1], lowest.axes[2][2]))  # forward lean of the lowest body
    slope = float(np.clip(tilt + rng.normal(*LUMBOSACRAL_DEG), 15.0, 60.0))
    out: list[Segment] = []
    centre = np.asarray(s1, dtype=float)
    for k, (name, (w, d, h)) in enumerate(zip(SACRAL, SACRAL_SIZE, strict=True)):
        a = math.radians(slope - SACRAL_CURVE_DEG * k)
        axis = np.array([0.0, -math.sin(a), math.cos(a)])  # superior and anterior: the endplate faces forwards
        if k:
            prev = out[-1]
            centre = np.asarray(prev.centre) - axis * (prev.height / 2 + h * scale / 2 + 1.5)
        out.append(Segment(level=name, centre=tuple(float(c) for c in centre),  # type: ignore[arg-type]
                           axes=frame(axis), width=w * scale, depth=d * scale, height=h * scale,
                           concavity=0.04, outline=lowest.outline, hu=hu + rng.normal(0, 5) - 4 * k))
    deficit = POSTERIOR_DISC_MM - (_corner(lowest, -1) - _corner(out[0], 1))
    if deficit > 0:
        out = [replace(s, centre=(s.centre[0], s.centre[1], s.centre[2] - deficit)) for s in out]
    return out, slope


def _corner(s: Segment, end: int) -> float:
    """The z of the posterior corner of a body's upper (``end`` 1) or lower (-1) endplate at the midline."""
    ax = np.asarray(s.axes)
    return float((np.asarray(s.centre) + ax[1] * s.depth / 2 + end * ax[2] * s.height / 2)[2])


def sample_spine(rng: np.random.Generator, patient: Patient, lumbar: int,
               anchor: tuple[float, float, float]) -> Spine:
    """The whole phantom spine of one patient (every draw from ``rng``)."""
    levels = mobile_levels(lumbar)
    centres, s1 = place_centres(rng, lumbar, anchor)
    vertebrae = shorten_crushed(build_vertebrae(rng, patient, centres, levels, s1))
    lowest = vertebrae[-1]
    ref = stats()["verse004"]
    scale = lowest.width / float(ref["width"][-1])
    sacrum, slope = build_sacrum(rng, s1, lowest, scale, lowest.hu + 15.0)
    return Spine(tuple(vertebrae) + tuple(sacrum), lumbar, slope)
