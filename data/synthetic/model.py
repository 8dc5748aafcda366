"""The documented generative model: patient, bone density, prevalent fractures, labs and the 6-month outcome.

Every number here is in the README's effect-size table with its source. Nothing in this module touches
images; :mod:`data.synthetic.anatomy` turns a :class:`Patient` into HU.

Effect sizes (6-month new vertebral fracture, log-odds scale, multiplicative on the odds):

=========================================  ==========  =====================================================
factor                                      odds ratio  source
=========================================  ==========  =====================================================
per SD (35 HU) lower L1 trabecular HU       2.0         Marshall 1996 BMJ meta-analysis (spine BMD RR 2.3/SD);
                                                        Pickhardt 2013 Ann Intern Med (L1 HU thresholds)
per SD (1.0) lower DXA T-score              1.3         adds to HU (partly collinear): Marshall 1996
per doubling of urine NTX                   1.6         Garnero 1996 (EPIDOS), Ross 2000: high turnover RR ~2
per 10 years of age                         1.4         Kanis 2001 (age independent of BMD)
male sex                                    0.7         Cauley 2007 (lower vertebral incidence in men)
prevalent fracture, worst Genant grade 1    2.0         Black 1999 JBMR (Fracture Intervention Trial)
prevalent fracture, worst Genant grade 2    4.0         Black 1999; Delmas 2003 (severity gradient)
prevalent fracture, worst Genant grade 3    7.5         Black 1999; Lindsay 2001 JAMA (imminent risk)
each further prevalent fracture             1.5         Black 1999 (number of prevalent fractures)
base (reference patient, 6 months)          1.5 %       Lindsay 2001: 19.2 % at 1 year after an incident VF
=========================================  ==========  =====================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from inference.thresholds import GENANT_LOSS

LEVELS: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
"""Vertebral levels every synthetic study contains (the model's level slots)."""

HU_SD = 35.0
"""Population SD of L1 trabecular HU in adults (Pickhardt 2013)."""

ODDS_RATIOS: dict[str, float] = {
    "hu_per_sd_lower": 2.0,
    "tscore_per_sd_lower": 1.3,
    "ntx_per_doubling": 1.6,
    "age_per_decade": 1.4,
    "male": 0.7,
    "grade_1": 2.0,
    "grade_2": 4.0,
    "grade_3": 7.5,
    "each_further_fracture": 1.5,
}
BASE_RISK = 0.015
"""6-month risk of the reference patient: 70-year-old woman, L1 150 HU, T-score -1.5, NTX 40, no fracture."""

LEVEL_HU_OFFSET: dict[str, float] = {
    "T11": 8.0, "T12": 4.0, "L1": 0.0, "L2": -2.0, "L3": -4.0, "L4": -6.0, "L5": -7.0, "L6": -8.0,
}
"""Mean trabecular HU of each level relative to L1 (thoracic slightly denser; Budoff 2010)."""

FRACTURE_LEVEL_WEIGHT: dict[str, float] = {
    "T11": 1.2, "T12": 2.2, "L1": 2.4, "L2": 1.3, "L3": 0.9, "L4": 0.7, "L5": 0.5, "L6": 0.4,
}
"""Relative frequency of prevalent fractures by level: the thoracolumbar junction dominates (Ismail 2001)."""

MAX_LOSS = 0.60
"""Largest height loss the generator draws (a severe crush)."""
GRADE_LOSS: dict[int, tuple[float, float]] = {
    0: (0.08, 0.19), 1: (GENANT_LOSS[0], GENANT_LOSS[1]), 2: (GENANT_LOSS[1], GENANT_LOSS[2]),
    3: (GENANT_LOSS[2], MAX_LOSS),
}
"""Height loss ranges drawn for the Genant semiquantitative grades (grade 0: a non-fracture deformity), from the
one definition of the grade boundaries (:mod:`inference.thresholds`)."""


@dataclass(frozen=True)
class Vertebra:
    """Truth for one vertebral level."""

    level: str
    trabecular_hu: float
    grade: int
    """Genant grade 0-3 (0 may still carry a mild non-fracture deformity)."""
    height_loss: float
    """Fractional loss of the most affected height (0 = intact)."""
    shape: str
    """none, wedge, biconcave or crush."""

    @property
    def height_ratio(self) -> float:
        """Ratio of the most affected height to the expected height (1 - loss)."""
        return round(1.0 - self.height_loss, 4)


@dataclass(frozen=True)
class Patient:
    """One synthetic patient: demographics, bone, labs and the outcome."""

    age: int
    sex: str
    l1_hu: float
    vertebrae: tuple[Vertebra, ...]
    tscore: float
    ntx: float
    p_true: float
    fracture_6m: int
    size: float = 1.0
    """Body-size scale (vertebral and body dimensions)."""
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def worst_grade(self) -> int:
        """Worst prevalent Genant grade (0 when no fracture)."""
        return max(v.grade for v in self.vertebrae)


def l1_hu_mean(age: float, sex: str) -> float:
    """Expected L1 trabecular HU: about 225 HU under 30, falling 2.5 HU a year (Jang 2019; Pickhardt 2013)."""
    decline = 2.5 * max(0.0, age - 30.0)
    post_menopause = 8.0 if (sex == "F" and age > 52) else 0.0
    return 225.0 - decline - post_menopause + (6.0 if sex == "M" else 0.0)


def patient_levels(lumbar: int = 5) -> tuple[str, ...]:
    """The levels of a patient with ``lumbar`` lumbar vertebrae (4, 5 or 6: transitional anatomy, numbered
    from the last rib-bearing vertebra, T12, down to the sacrum)."""
    if lumbar not in (4, 5, 6):
        raise ValueError(f"lumbar count must be 4, 5 or 6, not {lumbar}")
    return ("T11", "T12", *(f"L{i}" for i in range(1, lumbar + 1)))


def _draw_fractures(rng: np.random.Generator, l1_hu: float, age: int,
                    levels: tuple[str, ...] = LEVELS) -> dict[str, tuple[int, float, str]]:
    """Draw prevalent fractures and grade-0 deformities, more likely at low density and older age."""
    logit = -1.7 - 0.025 * (l1_hu - 120.0) + 0.03 * (age - 70)
    n_fx = rng.poisson(1.3 * (1.0 / (1.0 + math.exp(-logit))))
    weights = np.array([FRACTURE_LEVEL_WEIGHT[lv] for lv in levels])
    out: dict[str, tuple[int, float, str]] = {}
    for _ in range(min(n_fx, 4)):
        level = levels[int(rng.choice(len(levels), p=weights / weights.sum()))]
        grade = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        lo, hi = GRADE_LOSS[grade]
        out[level] = (grade, float(rng.uniform(lo, hi)), str(rng.choice(["wedge", "biconcave", "crush"],
                                                                           p=[0.55, 0.3, 0.15])))
    if rng.random() < 0.2:  # non-fracture deformity as a confounder
        level = levels[int(rng.integers(len(levels)))]
        if level not in out:
            lo, hi = GRADE_LOSS[0]
            out[level] = (0, float(rng.uniform(lo, hi)), str(rng.choice(["wedge", "biconcave"])))
    return out


def risk_logit(l1_hu: float, tscore: float, ntx: float, age: float, sex: str,
               grades: list[int]) -> float:
    """Log-odds of a new vertebral fracture within 6 months under the documented model."""
    lo = math.log(BASE_RISK / (1 - BASE_RISK))
    lo += math.log(ODDS_RATIOS["hu_per_sd_lower"]) * (150.0 - l1_hu) / HU_SD
    lo += math.log(ODDS_RATIOS["tscore_per_sd_lower"]) * (-1.5 - tscore)
    lo += math.log(ODDS_RATIOS["ntx_per_doubling"]) * math.log2(ntx / 40.0)
    lo += math.log(ODDS_RATIOS["age_per_decade"]) * (age - 70.0) / 10.0
    lo += math.log(ODDS_RATIOS["male"]) * (sex == "M")
    fractured = sorted((g for g in grades if g > 0), reverse=True)
    if fractured:
        lo += math.log(ODDS_RATIOS[f"grade_{fractured[0]}"])
        lo += math.log(ODDS_RATIOS["each_further_fracture"]) * (len(fractured) - 1)
    return lo


def draw_patient(rng: np.random.Generator, lumbar: int = 5) -> Patient:
    """Draw one patient from the generative model (``lumbar``: 4 or 6 for transitional anatomy; the draws of an
    ordinary spine are those of earlier versions)."""
    levels = patient_levels(lumbar)
    sex = "F" if rng.random() < 0.7 else "M"
    age = int(np.clip(round(rng.normal(70, 10)), 45, 95))
    l1_hu = float(np.clip(l1_hu_mean(age, sex) + rng.normal(0, 28.0), 25.0, 320.0))
    fx = _draw_fractures(rng, l1_hu, age, levels)
    vertebrae = []
    for level in levels:
        hu = float(np.clip(l1_hu + LEVEL_HU_OFFSET[level] + rng.normal(0, 6.0), 15.0, 340.0))
        grade, loss, shape = fx.get(level, (0, 0.0, "none"))
        vertebrae.append(Vertebra(level, round(hu, 1), grade, round(loss, 4), shape))
    # DXA T-score: -1.0 at 160 HU, -2.5 at 110 HU (Pickhardt 2013), r about 0.65 with HU.
    tscore = float(np.clip(-1.0 + (l1_hu - 160.0) / 33.0 + rng.normal(0, 1.1), -5.0, 3.0))
    # Urine NTX (nmol BCE/mmol Cr): log-normal, median 40, higher after menopause and at low density.
    log_ntx = math.log(38.0) + 0.18 * (sex == "F" and age > 52) - 0.003 * (l1_hu - 130.0) + rng.normal(0, 0.4)
    ntx = float(np.clip(math.exp(log_ntx), 5.0, 250.0))
    grades = [v.grade for v in vertebrae]
    p = 1.0 / (1.0 + math.exp(-risk_logit(l1_hu, tscore, ntx, age, sex, grades)))
    return Patient(
        age=age, sex=sex, l1_hu=round(l1_hu, 1), vertebrae=tuple(vertebrae), tscore=round(tscore, 2),
        ntx=round(ntx, 1), p_true=p, fracture_6m=int(rng.random() < p),
        size=float(np.clip(rng.normal(1.0 if sex == "F" else 1.08, 0.06), 0.85, 1.25)),
    )
