"""Family B's tissue model: HU of every soft tissue by contrast phase, the bone enhancement, and body habitus.

Unenhanced values follow common abdominal CT references (fat -120 to -90, muscle 35-60 falling with age, liver
50-65, spleen 40-50, kidney 25-35, blood 35-45, CSF 0-15). Enhanced values follow the usual biphasic pattern:
the late arterial phase lights the aorta (250-450 HU), the renal cortex (corticomedullary) and the spleen
(heterogeneous); the portal venous phase brings the aorta down (140-200), the portal vein, IVC and liver up and
the kidney homogeneous (nephrographic). Trabecular bone reads higher when enhanced: arterial +13.5 HU (Pompe
2015), portal venous between +11 HU (Pickhardt 2016, SD about 19 HU with measurement noise) and +18.2 HU
(Pompe 2015); see :data:`BONE_ENHANCEMENT`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHASES: dict[str, float] = {"none": 0.46, "arterial": 0.16, "portal_venous": 0.38}
"""Contrast phases of family B's studies and their shares."""
BONE_ENHANCEMENT: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0), "arterial": (13.5, 9.0), "portal_venous": (14.6, 10.0),
}
"""Mean and SD (HU) of the study's trabecular enhancement: arterial 13.5 (Pompe 2015); portal venous 14.6, the
mean of 11.0 (Pickhardt 2016) and 18.2 (Pompe 2015). The SDs are physiological (the published 19 HU SD holds ROI
measurement noise too, which the rendered noise adds here). Each level adds N(0, 3)."""
LEVEL_ENHANCEMENT_SD = 3.0


@dataclass(frozen=True)
class Tissues:
    """HU of every soft tissue in one study (phase applied)."""

    fat: float
    visceral_fat: float
    muscle: float
    aorta: float
    ivc: float
    portal: float
    liver: float
    spleen: float
    kidney_cortex: float
    kidney_medulla: float
    myocardium: float
    bowel_wall: float
    bowel_fluid: float
    bladder: float
    lung: float
    csf: float
    cord: float
    disc: float
    cartilage: float
    bone_offset: float
    """Trabecular enhancement of this study (HU, 0 when unenhanced)."""


def _n(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def draw_tissues(rng: np.random.Generator, phase: str, age: int, sex: str) -> Tissues:
    """Draw the tissue HU of one study in the given phase."""
    muscle = _n(rng, 56.0 - 0.25 * (age - 40) + (4.0 if sex == "M" else 0.0), 5.0, 25.0, 65.0)  # myosteatosis
    blood = _n(rng, 41.0, 4.0, 30.0, 52.0)
    liver = _n(rng, 58.0, 7.0, 30.0, 72.0)  # lower in steatosis
    base = {"aorta": blood, "ivc": blood, "portal": blood, "liver": liver, "spleen": _n(rng, 47, 4, 38, 56),
            "kidney_cortex": _n(rng, 31, 4, 22, 40), "kidney_medulla": _n(rng, 29, 4, 20, 38),
            "myocardium": _n(rng, 44, 4, 35, 55), "bowel_wall": _n(rng, 38, 5, 25, 50), "muscle": muscle}
    if phase == "arterial":
        base |= {"aorta": _n(rng, 330, 60, 200, 480), "ivc": _n(rng, 90, 25, 50, 160),
                 "portal": _n(rng, 140, 30, 80, 220), "liver": liver + _n(rng, 18, 6, 5, 35),
                 "spleen": _n(rng, 125, 18, 80, 170), "kidney_cortex": _n(rng, 185, 30, 120, 260),
                 "kidney_medulla": _n(rng, 85, 20, 50, 140), "myocardium": _n(rng, 110, 15, 70, 150),
                 "bowel_wall": _n(rng, 95, 15, 60, 140), "muscle": muscle + 5.0}
    elif phase == "portal_venous":
        base |= {"aorta": _n(rng, 170, 25, 120, 240), "ivc": _n(rng, 150, 22, 100, 210),
                 "portal": _n(rng, 180, 22, 130, 240), "liver": liver + _n(rng, 50, 10, 25, 75),
                 "spleen": _n(rng, 120, 12, 90, 150), "kidney_cortex": _n(rng, 175, 25, 120, 240),
                 "kidney_medulla": _n(rng, 165, 25, 110, 230), "myocardium": _n(rng, 100, 12, 70, 140),
                 "bowel_wall": _n(rng, 75, 12, 50, 110), "muscle": muscle + 8.0}
    mean, sd = BONE_ENHANCEMENT[phase]
    return Tissues(
        fat=_n(rng, -104, 7, -125, -85), visceral_fat=_n(rng, -95, 7, -115, -75), bowel_fluid=_n(rng, 12, 6, 0, 30),
        bladder=_n(rng, 8, 4, 0, 20), lung=_n(rng, -850, 35, -920, -750), csf=_n(rng, 8, 4, 0, 18),
        cord=_n(rng, 32, 4, 22, 42), disc=_n(rng, 85, 10, 60, 110), cartilage=_n(rng, 115, 20, 80, 200),
        bone_offset=0.0 if phase == "none" else max(-5.0, float(rng.normal(mean, sd))), **base)


@dataclass(frozen=True)
class Habitus:
    """Body build in mm: half-widths (x) and half-depths (y) of the outline at the chest, waist and hips, fat
    and muscle layers, and how far the back's skin lies behind the vertebral bodies."""

    bmi: float
    shoulder_a: float
    chest_a: float
    chest_b: float
    waist_a: float
    waist_b: float
    hip_a: float
    hip_b: float
    fat: float
    """Subcutaneous fat at the abdomen (the back has 0.6 of it)."""
    muscle: float
    """Abdominal wall muscle thickness."""
    visceral: float
    """Share of the visceral space that is fat (0-1)."""
    back: float
    """Distance from the posterior wall of a lumbar body to the skin of the back, without the fat."""
    pelvis: float
    """Pelvic scale (iliac wings, femoral heads): wider in women."""


def draw_habitus(rng: np.random.Generator, sex: str, size: float) -> Habitus:
    """Draw a body build: BMI log-normal about 27 (adults), the outline growing with BMI, fat with BMI and sex."""
    bmi = float(np.clip(np.exp(rng.normal(np.log(27.0), 0.17)), 16.5, 46.0))
    fat_over = bmi - 22.0
    male = sex == "M"
    frame = size * rng.normal(1.0, 0.04)
    waist_a = (122 + 4.2 * fat_over + (8 if male else 0)) * frame
    waist_b = (80 + 4.0 * fat_over + (10 if male else 0)) * frame
    return Habitus(
        bmi=round(bmi, 1), shoulder_a=(165 + 2.0 * fat_over + (18 if male else 0)) * frame,
        chest_a=(138 + 2.6 * fat_over + (14 if male else 0)) * frame,
        chest_b=(92 + 2.2 * fat_over + (8 if male else 0)) * frame, waist_a=waist_a, waist_b=waist_b,
        hip_a=(150 + 4.0 * fat_over + (0 if male else 12)) * frame, hip_b=(92 + 3.0 * fat_over) * frame,
        fat=float(np.clip(5.0 + 1.5 * fat_over + (0 if male else 6) + rng.normal(0, 4), 3.0, 80.0)),
        muscle=float(np.clip(rng.normal(12.0 if male else 9.5, 2.0), 5.0, 18.0)),
        visceral=float(np.clip(0.15 + 0.025 * fat_over + (0.12 if male else 0) + rng.normal(0, 0.08), 0.03, 0.7)),
        back=float(np.clip(rng.normal(52.0, 5.0) * frame, 38.0, 70.0)),
        pelvis=float(np.clip(rng.normal(1.0 if male else 1.07, 0.05), 0.85, 1.25)) * frame)
