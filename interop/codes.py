"""Coded concepts used by the DICOM and FHIR writers: the one registry of codes (no other module spells one).

Standard codes are used wherever one exists: SNOMED CT (``SCT``) for the vertebrae and the risk levels, DCM
for "Probability" and "Attenuation Coefficient", UCUM for units. Concepts that no standard terminology names
(the model's fracture outcome, the interval bounds, the Genant grade, the height ratio, the very-high risk
level) use the private scheme ``99VFRISK``, declared in each SR's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99VFRISK"
PRIVATE_SCHEME_NAME = "vfrisk private concepts"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


# Vertebral levels: SNOMED CT "<level> vertebra" (C1-L5). S1 has no "vertebra" code in pydicom's dictionary.
LEVELS = tuple(f"C{i}" for i in range(1, 8)) + tuple(f"T{i}" for i in range(1, 13)) + tuple(
    f"L{i}" for i in range(1, 6)
)


def vertebra(level: str) -> Code:
    """SNOMED CT code of a vertebra named ``C1``..``L5``; ``KeyError`` for anything else."""
    if level not in LEVELS:
        raise KeyError(f"no vertebra code for level {level!r}")
    code: Code = getattr(codes.SCT, f"{level}Vertebra")
    return code


VERTEBRAL_COLUMN = codes.SCT.StructureOfVertebralColumn  # 421060004
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure  # 91723000
COMPUTED_TOMOGRAPHY = codes.SCT.ComputedTomography  # 77477000, the procedure reported

PROBABILITY = codes.DCM.Probability  # 122157
ATTENUATION = codes.DCM.AttenuationCoefficient  # 112031
MEAN = codes.SCT.Mean  # 373098007, derivation of the trabecular HU
AI = codes.DCM.ArtificialIntelligence  # 123110, algorithm family

UNIT_ONE = codes.UCUM.NoUnits  # "1"
UNIT_RATIO = codes.UCUM.Ratio  # "{ratio}"
UNIT_HU = codes.UCUM.HounsfieldUnit
UNIT_GRADE = Code("{grade}", "UCUM", "grade")

FRACTURE_6M = _private("VFR-001", "New vertebral fracture within 6 months")
INTERVAL_LOWER = _private("VFR-002", "Lower limit of probability interval")
INTERVAL_UPPER = _private("VFR-003", "Upper limit of probability interval")
RISK_CATEGORY = _private("VFR-004", "Vertebral fracture risk category")
GENANT_GRADE = _private("VFR-005", "Genant semiquantitative grade")
HEIGHT_RATIO = _private("VFR-006", "Vertebral body height ratio")
VERTEBRAL_ASSESSMENT = _private("VFR-007", "Vertebral body assessment")
VERY_HIGH_RISK = _private("VFR-008", "Very high risk")

RISK_LEVEL = {
    "low": codes.SCT.LowRisk,  # 75976002
    "high": codes.SCT.HighRisk,  # 15508007
    "very_high": VERY_HIGH_RISK,
}

# Labs in the FHIR basis.
# DXA T-score: LOINC 38265-5 "DXA [T-score] Bone density" (no site: the result carries the lowest T-score of
# any site).
# Urine NTX per creatinine: the LOINC term is "Collagen crosslinked N-telopeptide/Creatinine [Molar ratio] in
# Urine"; its number could not be verified offline, so the observation carries that name as text and a vfrisk
# local code, never a guessed LOINC number. Add the LOINC coding here once checked against loinc.org.
LOINC_SYSTEM = "http://loinc.org"
LOCAL_LAB_SYSTEM = "urn:vfrisk:lab"
TSCORE_LOINC = ("38265-5", "DXA [T-score] Bone density")
NTX_TEXT = "Collagen crosslinked N-telopeptide/Creatinine [Molar ratio] in Urine"
NTX_LOCAL = ("ntx_nmol_bce_per_mmol_cr", "Urine NTX, nmol BCE/mmol creatinine")
