"""What drove the prediction, per vertebral level: the findings the risk rests on, for the viewer overlay.

This is not a saliency map of the network. It ranks each detected level by the two image findings the
model reports and the suggestion engine uses: a prevalent fracture (Genant grade) and low trabecular
attenuation (L1 <= 110 HU is > 90 % specific for osteoporosis, Pickhardt 2013, rule R-CT-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.findings import Vertebra
from inference.thresholds import L1_LOW_HU, L1_NORMAL_HU

LOW_HU = L1_LOW_HU
"""Trabecular HU at or below which a level is flagged as low attenuation (R-CT-1)."""
NORMAL_HU = L1_NORMAL_HU
"""Trabecular HU at or above which attenuation contributes nothing (R-CT-1's sensitive threshold)."""
VERY_LOW_HU = 50.0
"""Trabecular HU at or below which attenuation contributes fully."""
FRACTURE_WEIGHT = {grade: 0.0 if grade == 0 else 0.4 + 0.2 * grade for grade in range(4)}
"""Contribution of a Genant grade (0 for none, then 0.6, 0.8, 1.0: a display weight, not a model output)."""
RED, ORANGE, GREEN = (230, 57, 70), (244, 162, 97), (82, 183, 136)
MAX_HALF_EXTENT_MM = 20.0


@dataclass(frozen=True)
class LevelMark:
    """One detected level as drawn: where, how much it contributes, its colour, label and reason."""

    level: str
    z_index: float
    """Fractional index along the volume's Z axis (inferior to superior)."""
    half_extent: float
    """Half the band height, in Z indices."""
    contribution: float
    """0 (nothing) to 1 (strongest finding)."""
    colour: tuple[int, int, int]
    label: str
    reason: str


def hu_score(hu: float) -> float:
    """0 at or above NORMAL_HU, 1 at or below VERY_LOW_HU, linear between."""
    return float(np.clip((NORMAL_HU - hu) / (NORMAL_HU - VERY_LOW_HU), 0.0, 1.0))


def contribution(grade: int, hu: float) -> tuple[float, tuple[int, int, int], str]:
    """Contribution, colour and reason of one level from its Genant grade and trabecular HU."""
    score = max(FRACTURE_WEIGHT.get(grade, 1.0), hu_score(hu))
    if grade >= 1:
        return score, RED, f"fracture, Genant grade {grade}"
    if hu <= LOW_HU:
        return score, ORANGE, f"low trabecular attenuation ({hu:.0f} HU <= {LOW_HU:.0f})"
    return score, GREEN, "no fracture, attenuation above the low-HU threshold"


def z_index_of(z_mm: float, affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """Fractional Z index of a patient (LPS) z coordinate on the volume's central column."""
    jc, ic = (shape[1] - 1) / 2.0, (shape[2] - 1) / 2.0
    a = affine
    return float((z_mm - a[2, 3] - a[2, 1] * jc - a[2, 2] * ic) / a[2, 0])


def level_label(v: Vertebra) -> str:
    """``L1  G2  0.71  84 HU``: level (``L1? (0.62)`` when its name is uncertain), Genant grade, height ratio and
    trabecular HU."""
    return f"{v.name_label()}  G{v.genant_grade}  {v.height_ratio or 0:.2f}  {v.trabecular_hu or 0:.0f} HU"


def _half_extents(z: list[float], default: float, cap: float) -> list[float]:
    """Half the gap to the nearest other level, at most ``cap``; ``default`` when alone."""
    out = []
    for i, zi in enumerate(z):
        gaps = [abs(zi - zj) for j, zj in enumerate(z) if j != i and abs(zi - zj) > 0]
        out.append(min(cap, min(gaps) / 2.0) if gaps else default)
    return out


def level_marks(vertebrae: Sequence[Vertebra], affine: np.ndarray, shape: tuple[int, ...],
                z_spacing_mm: float) -> list[LevelMark]:
    """Marks for every found level of a prediction's vertebrae."""
    found = [v for v in vertebrae if v.present and v.z_mm is not None]
    z = [z_index_of(float(v.z_mm), affine, shape) for v in found]  # type: ignore[arg-type]
    cap = MAX_HALF_EXTENT_MM / z_spacing_mm
    marks = []
    for v, zi, half in zip(found, z, _half_extents(z, cap / 2.0, cap), strict=True):
        score, colour, reason = contribution(int(v.genant_grade or 0), float(v.trabecular_hu or 0.0))
        marks.append(LevelMark(v.level, zi, half, score, colour, level_label(v), reason))
    return marks


def drivers_table(marks: list[LevelMark]) -> list[list[str]]:
    """Rows (level, contribution, reason) sorted by contribution, for the result table."""
    ranked = sorted(marks, key=lambda m: -m.contribution)
    return [[m.level, f"{m.contribution:.2f}", m.reason] for m in ranked]
