"""The found levels as the viewer draws them, and the per-level findings table.

Only what the model and the measurement produced is shown: each level's name and how sure the name is, its
Genant grade (from the height ratio, rule R-GEN-1) and its trabecular attenuation (HU) beside the thresholds of
rule R-CT-1. Nothing is ranked or weighted here (no made-up "contribution" of a level to the probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from inference.contrast import Contrast
from inference.findings import Vertebra
from inference.thresholds import GENANT_RATIO, L1_LOW_HU, L1_NORMAL_HU, LEVEL_PITCH_MM

BODY_SHARE = 0.75
"""Share of the distance to the nearest neighbouring level taken as the body height when the level was not
measured (the rest is disc)."""
BODY_DEPTH_MM = (85.0, 50.0)
"""The body lies this far in front of the spine column point (mm: front edge, back edge): the vertebra's depth
of :data:`interop.spine.VERTEBRA_DEPTH_MM` minus the canal and posterior elements."""
BODY_HALF_WIDTH_MM = 22.0
"""Half the left-right width drawn for a body (a lumbar body is 40-50 mm wide)."""
WHITE, YELLOW = (255, 255, 255), (255, 221, 0)
"""Label colours: a sure name in white, an uncertain one in yellow (both on black)."""


@dataclass(frozen=True)
class LevelMark:
    """One found level as drawn: its name label and the body region in canonical voxel indices."""

    level: str
    label: str
    """Name first: ``L1 0.97``, or ``L2? 0.62`` when the name is uncertain."""
    uncertain: bool
    z_index: float
    """Fractional index along the volume's Z axis (inferior to superior) of the level centre."""
    half_extent: float
    """Half the body height, in Z indices."""
    j: tuple[float, float] | None = None
    """Front and back of the body along Y (anterior to posterior), when the spine column was found."""
    i: tuple[float, float] | None = None
    """Right and left edges of the body along X, when the spine column was found."""

    @property
    def colour(self) -> tuple[int, int, int]:
        """White for a sure name, yellow for an uncertain one."""
        return YELLOW if self.uncertain else WHITE


def z_index_of(z_mm: float, affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """Fractional Z index of a patient (LPS) z coordinate on the volume's central column."""
    jc, ic = (shape[1] - 1) / 2.0, (shape[2] - 1) / 2.0
    a = affine
    return float((z_mm - a[2, 3] - a[2, 1] * jc - a[2, 2] * ic) / a[2, 0])


def mark_label(v: Vertebra) -> str:
    """The label drawn on the image, name first: ``L1 0.97`` (sure), ``L2? 0.62`` (uncertain), ``L3`` (no
    confidence reported)."""
    conf = "" if v.name_confidence is None else f" {v.name_confidence:.2f}"
    return f"{v.level}{'?' if v.name_uncertain else ''}{conf}"


def _half_heights(found: Sequence[Vertebra], z: list[float], z_spacing_mm: float) -> list[float]:
    """Half the body height of each level in Z indices: measured when the level was, else a share of the gap to
    the nearest other level (of the typical pitch when alone)."""
    out = []
    for n, (v, zi) in enumerate(zip(found, z, strict=True)):
        measured = v.measured.height_middle_mm if v.measured is not None else None
        if measured:
            out.append(measured / 2.0 / z_spacing_mm)
            continue
        gaps = [abs(zi - zj) for m, zj in enumerate(z) if m != n and abs(zi - zj) > 0]
        gap = min(gaps) if gaps else LEVEL_PITCH_MM / z_spacing_mm
        out.append(BODY_SHARE * gap / 2.0)
    return out


def level_marks(vertebrae: Sequence[Vertebra], affine: np.ndarray, shape: tuple[int, ...],
                spacing_mm: tuple[float, float, float],
                column: tuple[float, float] | None = None) -> list[LevelMark]:
    """Marks for every found level; ``column`` is the (j, i) spine column point (``interop.spine``), which
    places the body region in front of it (without it only the levels' heights are drawn)."""
    found = [v for v in vertebrae if v.present and v.z_mm is not None]
    z = [z_index_of(float(v.z_mm), affine, shape) for v in found]  # type: ignore[arg-type]
    sz, sy, sx = spacing_mm
    j = i = None
    if column is not None:
        j = (column[0] - BODY_DEPTH_MM[0] / sy, column[0] - BODY_DEPTH_MM[1] / sy)
        i = (column[1] - BODY_HALF_WIDTH_MM / sx, column[1] + BODY_HALF_WIDTH_MM / sx)
    return [LevelMark(v.level, mark_label(v), v.name_uncertain, zi, half, j, i)
            for v, zi, half in zip(found, z, _half_heights(found, z, sz), strict=True)]


def grade_reading(v: Vertebra) -> str:
    """The Genant grade beside its R-GEN-1 boundary."""
    if v.genant_grade is None:
        return "-"
    if v.genant_grade == 0:
        return f"no fracture (height ratio above {GENANT_RATIO[0]:.2f})"
    ratio = "-" if v.height_ratio is None else f"{v.height_ratio:.2f}"
    return f"fracture, grade {v.genant_grade} (height ratio {ratio}; grade 1 from {GENANT_RATIO[0]:.2f})"


def hu_reading(hu: float | None) -> str:
    """Trabecular HU beside the R-CT-1 thresholds (defined at L1)."""
    if hu is None:
        return "-"
    if hu <= L1_LOW_HU:
        return f"at or below {L1_LOW_HU:.0f} HU"
    if hu <= L1_NORMAL_HU:
        return f"at or below {L1_NORMAL_HU:.0f} HU"
    return f"above {L1_NORMAL_HU:.0f} HU"


def _num(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _corrected(v: Vertebra) -> str:
    m = v.measured
    if m is None or m.trabecular_hu_corrected is None:
        return "-"
    return f"{m.trabecular_hu:.0f} → {m.trabecular_hu_corrected:.0f} ± {m.trabecular_hu_corrected_sd:.0f}"


def findings_html(vertebrae: Sequence[Vertebra], contrast: Contrast | None = None) -> str:
    """The per-level table (what the model and the measurement produced, each beside its threshold); on an
    enhanced scan, a line on the contrast and a column of the measured trabecular HU corrected for it."""
    enhanced = contrast is not None and contrast.enhanced
    extra = "<th>Measured HU → contrast-corrected (± SD)</th>" if enhanced else ""
    head = ("<tr><th>Level</th><th>Name conf.</th><th>Genant grade (R-GEN-1)</th><th>Height ratio</th>"
            f"<th>Trabecular HU</th><th>HU vs R-CT-1</th>{extra}</tr>")
    rows = []
    for v in vertebrae:
        if not v.present:
            rows.append(f'<tr class="vf-absent"><td>{escape(v.level)}</td><td colspan="{6 if enhanced else 5}">'
                        "not found in the scan</td></tr>")
            continue
        name = f'<span class="vf-uncertain">{escape(v.level)}?</span>' if v.name_uncertain else escape(v.level)
        grade = "" if v.genant_grade in (None, 0) else ' class="vf-grade"'
        rows.append(f"<tr><td>{name}</td><td>{_num(v.name_confidence, '{:.2f}')}</td>"
                    f"<td{grade} title=\"{escape(grade_reading(v))}\">{_num(v.genant_grade, '{}')}</td>"
                    f"<td>{_num(v.height_ratio, '{:.2f}')}</td><td>{_num(v.trabecular_hu, '{:.0f}')}</td>"
                    f"<td>{escape(hu_reading(v.trabecular_hu))}</td>"
                    + (f"<td>{escape(_corrected(v))}</td>" if enhanced else "") + "</tr>")
    note = (f"Genant grade from the height ratio (R-GEN-1: grade 1 at {GENANT_RATIO[0]:.2f} or below, 2 at "
            f"{GENANT_RATIO[1]:.2f}, 3 below {GENANT_RATIO[2]:.2f}). Trabecular HU against R-CT-1 (defined at L1): "
            f"{L1_LOW_HU:.0f} HU or less is > 90 % specific, {L1_NORMAL_HU:.0f} HU or less 90 % sensitive for "
            "osteoporosis. A name with ? is uncertain.")
    line = "" if contrast is None else contrast.summary()
    return ('<div class="vf-levels-title">Per-level findings (what the model and the measurement produced)</div>'
            + (f'<p class="vf-contrast" id="vf-contrast">{escape(line)}</p>' if line else "")
            + f'<table class="vf-table" id="vf-levels-table">{head}{"".join(rows)}</table>'
            f'<p class="vf-note">{escape(note)}</p>')
