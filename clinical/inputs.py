"""The context inputs a rule may lack: dotted paths, plain-words labels, and the not-evaluated reason.

A rule that cannot run names the inputs it lacks by their dotted path in the context (``patient.labs.
egfr_ml_min_1_73m2``); the reason shown to the clinician is built from those paths only, so it can never list
an input that was given (issue 23: R-CAL-1 said "no calcium intake, age or sex" although age and sex were given).
Pure data and string building; no rule logic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from clinical.context import Patient

AGE = "patient.age"
SEX = "patient.sex"
WEIGHT = "patient.weight_kg"
CREATININE = "patient.labs.serum_creatinine_mg_dl"
EGFR = "patient.labs.egfr_ml_min_1_73m2"
CRCL = "patient.labs.crcl_cockcroft_gault_ml_min"
CALCIUM_SERUM = "patient.labs.serum_calcium_corrected_mg_dl"
VITAMIN_D_LEVEL = "patient.labs.vitamin_d_25oh_ng_ml"
NTX_BASELINE = "patient.labs.urine_ntx_baseline"
T_SCORES: Final = tuple(
    f"patient.dxa.{site}" for site in ("t_lumbar_spine", "t_femoral_neck", "t_total_hip", "t_radius_33pct")
)
FRAX_MOF = "patient.frax.mof_10y_pct"
FRAX_HIP = "patient.frax.hip_10y_pct"
FALLS_COUNT = "patient.falls.count_12m"
CARDIOVASCULAR = "patient.cardiovascular"
CALCIUM_DIET = "patient.intake.calcium_diet_mg_day"
CALCIUM_SUPPLEMENT = "patient.intake.calcium_supplement_mg_day"
VITAMIN_D_INTAKE = "patient.intake.vitamin_d_iu_day"
VITAMIN_D_REGIMEN = "patient.intake.vitamin_d_regimen"
SYMPTOMS = "patient.symptoms"
HEIGHT_LOSS = ("patient.height_loss_cm.prospective", "patient.height_loss_cm.historical")
PROBABILITY = "model.p_vertebral_fracture_6m"


def medication_start(index: int) -> str:
    """The path of the start date of medication ``index``."""
    return f"patient.medications.{index}.start"


def medication_doses(index: int) -> str:
    """The path of the number of doses received of medication ``index``."""
    return f"patient.medications.{index}.doses_received"


LABELS: Final = {
    AGE: "age",
    SEX: "sex",
    WEIGHT: "weight",
    CREATININE: "serum creatinine",
    EGFR: "eGFR",
    CRCL: "creatinine clearance",
    CALCIUM_SERUM: "corrected serum calcium",
    VITAMIN_D_LEVEL: "25(OH)D level",
    NTX_BASELINE: "baseline urine NTx",
    T_SCORES[0]: "lumbar-spine T-score",
    T_SCORES[1]: "femoral-neck T-score",
    T_SCORES[2]: "total-hip T-score",
    T_SCORES[3]: "33% radius T-score",
    FRAX_MOF: "FRAX major osteoporotic fracture probability",
    FRAX_HIP: "FRAX hip fracture probability",
    FALLS_COUNT: "number of falls in the past 12 months",
    CARDIOVASCULAR: "MI and stroke history",
    CALCIUM_DIET: "dietary calcium",
    CALCIUM_SUPPLEMENT: "calcium supplement",
    VITAMIN_D_INTAKE: "daily vitamin D intake",
    VITAMIN_D_REGIMEN: "vitamin D regimen",
    SYMPTOMS: "symptoms record",
    HEIGHT_LOSS[0]: "prospective height loss",
    HEIGHT_LOSS[1]: "historical height loss",
    PROBABILITY: "model probability",
    "patient.medications.*.start": "start date of medication course",
    "patient.medications.*.doses_received": "doses received of medication course",
}
"""Plain-words label of every path a rule may name (list indices written as ``*``)."""


def label(path: str) -> str:
    """The plain-words label of ``path``; a medication index is kept ("... course 2")."""
    generic = re.sub(r"\.\d+\.", ".*.", path)
    index = re.search(r"\.(\d+)\.", path)
    text = LABELS[generic]
    return f"{text} {index.group(1)}" if index else text


def missing_reason(paths: Sequence[str], why: str | None = None) -> str:
    """"no A, B or C", then ": why" when given; built from the missing paths only."""
    names = [label(p) for p in paths]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"no {listed}" + (f": {why}" if why else "")


def crcl_gaps(patient: Patient) -> tuple[str, ...]:
    """What is missing when there is no creatinine clearance: the clearance and what computing it needs."""
    labs = patient.labs
    needed = {
        CREATININE: labs.serum_creatinine_mg_dl if labs else None,
        AGE: patient.age,
        SEX: patient.sex,
        WEIGHT: patient.weight_kg,
    }
    return (CRCL, *(p for p, v in needed.items() if v is None))


def gfr_gaps(patient: Patient) -> tuple[str, ...]:
    """What is missing when there is neither eGFR nor CrCl: both, and what computing eGFR needs."""
    labs = patient.labs
    needed = {CREATININE: labs.serum_creatinine_mg_dl if labs else None, AGE: patient.age, SEX: patient.sex}
    return (EGFR, CRCL, *(p for p, v in needed.items() if v is None))
