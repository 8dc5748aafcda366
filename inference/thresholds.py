"""The clinical and anatomical numbers every part of vfrisk shares, defined once.

Genant's semiquantitative grading (rule R-GEN-1 of ``clinical/RULES.md``), the trabecular-attenuation
thresholds of rule R-CT-1, and the typical distance between thoracolumbar levels. The inference code, the
suggestion engine, the report writers, the synthetic generator and the soft thresholds inside the ONNX graph all
read them from here (a source test checks that the Genant boundaries are written nowhere else).
"""

from __future__ import annotations

GENANT_LOSS: tuple[float, float, float] = (0.20, 0.25, 0.40)
"""Vertebral height loss (fraction) at which Genant grades 1, 2 and 3 begin (Genant 1993; R-GEN-1):
loss < 20 %: grade 0; 20 to < 25 %: 1; 25 to 40 %: 2; > 40 %: 3."""
GENANT_RATIO: tuple[float, float, float] = tuple(round(1.0 - t, 12) for t in GENANT_LOSS)  # type: ignore[assignment]
"""The same boundaries as height ratios (0.80, 0.75, 0.60), for code that works on ratios."""
GENANT_TOLERANCE = 1e-9
"""Comparisons with the boundaries allow this much floating-point error: a ratio of exactly 0.80 is a 20 % loss."""

L1_LOW_HU = 110.0
"""L1 trabecular attenuation at or below which CT is > 90 % specific for DXA osteoporosis (Pickhardt 2013; R-CT-1)."""
L1_NORMAL_HU = 160.0
"""L1 trabecular attenuation at or below which CT is 90 % sensitive for DXA osteoporosis (Pickhardt 2013; R-CT-1)."""

LEVEL_PITCH_MM = 36.0
"""Typical distance between adjacent thoracolumbar level centres (body plus disc), in mm."""


def genant_grade_from_loss(loss: float) -> int:
    """Genant grade (0-3) of a fractional height loss, R-GEN-1: < 0.20 -> 0; 0.20 to < 0.25 -> 1; 0.25 to 0.40
    -> 2; > 0.40 -> 3. The boundaries are compared with :data:`GENANT_TOLERANCE`, so 0.2 (however it was computed)
    is grade 1 and 0.4 grade 2."""
    one, two, three = GENANT_LOSS
    if loss > three + GENANT_TOLERANCE:
        return 3
    if loss >= two - GENANT_TOLERANCE:
        return 2
    return 1 if loss >= one - GENANT_TOLERANCE else 0


def genant_grade(height_ratio: float) -> int:
    """Genant grade (0-3) of a vertebral height ratio (shortest over reference height; 1.0 is intact)."""
    return genant_grade_from_loss(1.0 - height_ratio)


def genant_grade_from_pct(height_loss_pct: float | None) -> int | None:
    """Genant grade of a height loss given in percent (None when not given)."""
    return None if height_loss_pct is None else genant_grade_from_loss(height_loss_pct / 100.0)
