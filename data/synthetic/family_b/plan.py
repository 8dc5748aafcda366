"""Family B's draws before rendering: the patient (shared generative model), spine, habitus, tissues, field of
view, acquisition, contrast phase and how the series is written.

Every draw of study ``index`` comes from generators seeded with ``(seed, index, 98, stream)``: stream 0 the
patient (:func:`data.synthetic.model.draw_patient`), 1 the lumbar count, 2 the plan, 3 the rendering. So the
truth never needs the rendering, the bytes do not depend on the number of workers, and family B's patients differ
from family A's of the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.synthetic.dicom_writer import RESCALES
from data.synthetic.family_b.bones import BoneLook, draw_look
from data.synthetic.family_b.outline import Outline, build_outline
from data.synthetic.family_b.scanner import KERNEL_WEIGHTS, LUNG_KERNELS, Reconstruction, noise_gain
from data.synthetic.family_b.spine import Spine, sample_spine, stats
from data.synthetic.family_b.tissue import PHASES, Habitus, Tissues, draw_habitus, draw_tissues
from data.synthetic.model import Patient, draw_patient

FAMILY_STREAM = 98
FOV_KINDS: dict[str, float] = {"whole": 0.34, "abdomen": 0.16, "lumbar": 0.12, "chest": 0.14, "slab": 0.12,
                               "none": 0.12}
"""Family B's fields of view and their shares: ``whole`` (the top where real scans start, T1-T10, into the
pelvis), ``abdomen`` (top at T11-L2 as real abdominal scans, into the pelvis), ``lumbar`` (a lumbar-spine CT:
T11-L1 to the sacrum, a 150-250 mm field of view centred on the spine), ``chest`` (from the lung apices, ending
T11-L2), ``slab`` (50-120 mm anywhere from T10 to S1), ``none`` (no whole body of T10 to the last lumbar
vertebra: a chest above T10, or the pelvis alone)."""
LUMBAR_COUNTS: dict[int, float] = {4: 0.035, 5: 0.935, 6: 0.03}
"""Four and six lumbar vertebrae (the real keypoints: 2.3 % show an L6, 3.7 % end at L4 after T12)."""
SPACINGS: dict[float, float] = {0.625: 0.12, 0.75: 0.05, 1.0: 0.18, 1.25: 0.12, 1.5: 0.13, 2.0: 0.12,
                                2.5: 0.1, 3.0: 0.1, 4.0: 0.04, 5.0: 0.04}
"""Slice spacings (mm) of a main series and their shares (thin helical reconstructions to 5 mm clinical ones)."""
OVERLAP: dict[float, float] = {1.0: 0.55, 1.25: 0.2, 1.5: 0.15, 2.0: 0.1}
"""Slice thickness over spacing (overlapping reconstructions)."""
SYNTAXES: dict[str, float] = {"explicit": 0.55, "implicit": 0.1, "rle": 0.1, "jpegls": 0.15, "j2k": 0.1}
MIN_SLICES = 24
"""A short scan (a slab) is reconstructed thin enough to hold at least this many slices."""
CONTRAST_AGENTS = ("OMNIPAQUE 350", "Iomeron 400", "VISIPAQUE 320", "Ultravist 370", "IOPAMIDOL", "CONTRAST")


@dataclass(frozen=True)
class Scan:
    """The field of view: its kind, z range (mm) and the in-plane reconstruction."""

    kind: str
    z_top: float
    z_bottom: float
    fov_mm: float
    centre: tuple[float, float]
    """Reconstruction centre (x, y) mm."""
    spine_centred: bool


@dataclass(frozen=True)
class Series:
    """How the study is acquired and written."""

    matrix: int
    rec: Reconstruction
    phase: str
    header_says_contrast: bool
    agent: str
    syntax: str
    rescale_index: int
    circle: bool
    """Pixels outside the reconstruction circle read -1024 (as most scanners write them)."""
    prone: bool
    head_first_numbering: bool
    extra_thick: bool
    extra_lung: str
    """A lung-kernel reconstruction's kernel, or empty."""
    extra_localizer: bool
    blank_demographics: bool


@dataclass(frozen=True)
class StudyPlan:
    """Everything drawn for one study of family B."""

    patient: Patient
    spine: Spine
    habitus: Habitus
    outline: Outline
    tissues: Tissues
    look: BoneLook
    scan: Scan
    series: Series

    def z_positions(self) -> np.ndarray:
        """Slice positions (mm, ascending) of the main series: from the bottom of the range up to the first slice at
        or above its top."""
        n = math.ceil((self.scan.z_top - self.scan.z_bottom) / self.series.rec.spacing - 1e-6) + 1
        return self.scan.z_bottom + self.series.rec.spacing * np.arange(n)


def _pick(rng: np.random.Generator, table: Mapping[Any, float]) -> Any:
    """One key of a {key: weight} table."""
    keys = list(table)
    w = np.array(list(table.values()), dtype=float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _real_top(rng: np.random.Generator, allowed: tuple[str, ...]) -> str:
    """A top level drawn from where real scans start (VID keypoints), among ``allowed`` (C-levels count as T1)."""
    tops = stats()["keypoints"]["top_level"]
    table: dict[str, float] = {}
    for name, n in tops.items():
        key = "T1" if name.startswith("C") else name
        if key in allowed:
            table[key] = table.get(key, 0.0) + float(n)
    return str(_pick(rng, table))


def _pitch(spine: Spine, level: str, up: bool) -> float:
    """Centre distance from ``level`` to its neighbour above (``up``) or below."""
    segs = spine.segments
    names = [s.level for s in segs]
    i = names.index(level)
    j = max(0, i - 1) if up else min(len(segs) - 1, i + 1)
    return abs(segs[i].centre[2] - segs[j].centre[2]) or 25.0


def draw_range(rng: np.random.Generator, kind: str, spine: Spine) -> tuple[float, float]:
    """(top, bottom) z of a scan of the given kind."""
    seg = spine.by_level()
    low = spine.vertebrae()[-1]
    s1 = seg["S1"].centre[2]

    def above(level: str) -> float:  # the level whole, part of the next one up in view
        if level == "T1":
            return seg["T1"].z_span()[1] + float(rng.uniform(10, 50))
        return seg[level].z_span()[1] + float(rng.uniform(1.0, 0.5 * _pitch(spine, level, True)))

    pelvis = s1 - float(rng.uniform(60, 200))
    if kind == "whole":
        return above(_real_top(rng, ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10"))), pelvis
    if kind == "abdomen":
        return above(_real_top(rng, ("T11", "T12", "L1", "L2"))), pelvis
    if kind == "lumbar":
        return above(_real_top(rng, ("T11", "T12", "L1"))), s1 - float(rng.uniform(5, 60))
    if kind == "chest":
        end = str(_pick(rng, {"T11": 0.25, "T12": 0.35, "L1": 0.25, "L2": 0.15}))
        return above("T1"), seg[end].centre[2] - float(rng.uniform(-0.3, 0.9)) * _pitch(spine, end, False)
    if kind == "slab":
        length = float(rng.uniform(50, 120))
        mid = float(rng.uniform(s1, seg["T10"].centre[2]))
        return mid + length / 2, mid - length / 2
    if rng.random() < 0.5:  # none: a chest above T10
        end = str(_pick(rng, {"T6": 1, "T7": 1, "T8": 1, "T9": 1}))
        return above("T1"), seg[end].centre[2] - float(rng.uniform(0.0, 0.5)) * _pitch(spine, end, False)
    top = low.z_span()[0] - float(rng.uniform(0, 20))  # none: the pelvis below the lowest lumbar body
    return top, top - float(rng.uniform(110, 220))


def draw_scan(rng: np.random.Generator, kind: str, spine: Spine, outline: Outline) -> Scan:
    """The field of view: z range and in-plane reconstruction (body-sized, or spine-centred for lumbar CTs and
    half the slabs)."""
    top, bottom = draw_range(rng, kind, spine)
    mid = (top + bottom) / 2
    spine_centred = kind == "lumbar" or (kind == "slab" and rng.random() < 0.5)
    _, _, xc, yc, _, sy, sx = (float(v) for v in outline.at(mid))
    if spine_centred:
        fov = float(rng.uniform(150, 250) if kind == "lumbar" else rng.uniform(150, 300))
        centre = (sx + float(rng.normal(0, 6)), sy + 12.0 + float(rng.normal(0, 6)))
    else:
        widest = float(np.max(outline.at(np.linspace(bottom, top, 9))[0]))
        fov = float(np.clip(2 * widest + rng.uniform(10, 60), 280, 500))
        centre = (xc + float(rng.normal(0, 8)), yc + float(rng.normal(0, 8)))
    return Scan(kind, top, bottom, fov, centre, spine_centred)


def draw_series(rng: np.random.Generator, scan: Scan, matrix: int) -> Series:
    """Acquisition, reconstruction, contrast phase and how the files are written."""
    spacing = float(_pick(rng, SPACINGS))
    if scan.kind == "lumbar":
        spacing = min(spacing, 2.0)
    length = scan.z_top - scan.z_bottom
    allowed = [s for s in SPACINGS if length / s >= MIN_SLICES]
    spacing = max((s for s in allowed if s <= spacing), default=min(SPACINGS))
    thickness = min(5.0, spacing * float(_pick(rng, OVERLAP)))
    kernel = str(_pick(rng, KERNEL_WEIGHTS))
    pixel = scan.fov_mm / matrix
    sd = float(np.exp(rng.normal(math.log(14.0), 0.4))) * math.sqrt(1.25 / max(thickness, 0.625)) ** 0.5
    if rng.random() < 0.1:  # low-dose (colonography-like) studies
        sd *= float(rng.uniform(1.8, 3.0))
    sd = float(np.clip(sd * noise_gain(kernel, pixel), 4.0, 90.0))
    phase = str(_pick(rng, PHASES))
    return Series(
        matrix=matrix, rec=Reconstruction(kernel, round(pixel, 4), round(thickness, 4), spacing, round(sd, 2),
                                          float(rng.uniform(0.2, 0.6))),
        phase=phase, header_says_contrast=phase != "none" and rng.random() < 0.75,
        agent=str(rng.choice(CONTRAST_AGENTS)), syntax=str(_pick(rng, SYNTAXES)),
        rescale_index=int(rng.integers(len(RESCALES))), circle=bool(rng.random() < 0.75),
        prone=bool(rng.random() < 0.05), head_first_numbering=bool(rng.random() < 0.6),
        extra_thick=bool(rng.random() < 0.15 and thickness < 3.0 and length >= 120),
        extra_lung=str(rng.choice(list(LUNG_KERNELS))) if rng.random() < 0.08 else "",
        extra_localizer=bool(rng.random() < 0.2), blank_demographics=bool(rng.random() < 0.08))


def rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """The study's generators: patient, lumbar count, plan, rendering."""
    return tuple(np.random.default_rng([seed, index, FAMILY_STREAM, k]) for k in range(4))


def plan_study(seed: int, index: int, matrix: int | None) -> StudyPlan:
    """Every draw of study ``index`` before rendering."""
    r_patient, r_lumbar, r_plan, _ = rngs(seed, index)
    lumbar = int(_pick(r_lumbar, LUMBAR_COUNTS))
    kind = str(_pick(r_lumbar, FOV_KINDS))
    patient = draw_patient(r_patient, lumbar=lumbar)
    anchor = (float(r_plan.normal(0, 15)), float(r_plan.normal(45, 15)), float(r_plan.uniform(-600, 400)))
    spine = sample_spine(r_plan, patient, lumbar, anchor)
    habitus = draw_habitus(r_plan, patient.sex, patient.size)
    outline = build_outline(spine, habitus)
    m = matrix or int(_pick(r_plan, {256: 0.1, 384: 0.1, 512: 0.8}))
    scan = draw_scan(r_plan, kind, spine, outline)
    series = draw_series(r_plan, scan, m)
    tissues = draw_tissues(r_plan, series.phase, patient.age, patient.sex)
    look = draw_look(r_plan, spine, tissues.bone_offset, patient.age)
    return StudyPlan(patient, spine, habitus, outline, tissues, look, scan, series)
