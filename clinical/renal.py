"""Renal function estimates for the drug cut-offs (R-REN-0, RULES.md section 12 item 5)."""

from __future__ import annotations

from typing import Literal

Sex = Literal["F", "M"]


def cockcroft_gault(creatinine_mg_dl: float, age: float, sex: Sex, weight_kg: float) -> float:
    """Return creatinine clearance in mL/min by Cockcroft-Gault with actual body weight.

    ``CrCl = (140 - age) * weight / (72 * Scr)``, times 0.85 for women (Cockcroft & Gault 1976). Clamped at 0.
    """
    crcl = (140.0 - age) * weight_kg / (72.0 * creatinine_mg_dl)
    if sex == "F":
        crcl *= 0.85
    return max(0.0, crcl)


def ckd_epi_2021(creatinine_mg_dl: float, age: float, sex: Sex) -> float:
    """Return eGFR in mL/min/1.73 m2 by the race-free CKD-EPI 2021 creatinine equation (Inker 2021)."""
    kappa, alpha, factor = (0.7, -0.241, 1.012) if sex == "F" else (0.9, -0.302, 1.0)
    ratio = creatinine_mg_dl / kappa
    return 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age * factor
