"""Coded concepts used by the DICOM and FHIR writers: the one registry of codes (no other module spells one).

Standard codes are used wherever one exists and could be checked offline (pydicom's code dictionary, which is
DICOM PS3.16): SNOMED CT (``SCT``) for the vertebrae, the risk levels, the Genant grades' severity (normal, mild,
moderate, severe), the height sites (anterior, central, posterior), yes/no and mean/median; DCM for "Probability",
"Attenuation Coefficient", "Height" and "Comment"; UCUM for units; LOINC for the two labs. Concepts that no
standard terminology names (the model's fracture outcome, the interval bounds, the Genant grade as a concept, the
height ratio, the very-high risk level, the level-name confidence, the suggestion engine's category rules) use the
private scheme ``99VFRISK``, declared in the Coding Scheme Identification Sequence of every SR and SEG.
``VERTEBRAL_BODY`` is private too: SNOMED CT has vertebral-body concepts, but none could be checked offline against
PS3.16, so no number is guessed (the SEG pairs it with the SNOMED CT code of the vertebra as anatomic region).
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
VERTEBRAL_BODY = _private("VFR-009", "Vertebral body")
RISK_CATEGORY_RULE = _private("VFR-010", "Risk category rule")
RISK_CATEGORY_REASON = _private("VFR-011", "Risk category reason")
NAME_CONFIDENCE = _private("VFR-012", "Vertebral level name confidence")
NAME_UNCERTAIN = _private("VFR-013", "Vertebral level name uncertain")
BODY_NOT_DELINEATED = _private("VFR-014", "Vertebral body not delineated")
MEASUREMENT_ALGORITHM = "vfrisk transparent measurement"
"""Algorithm name on the values of :mod:`inference.measure` (heights, measured HU), beside the model's own."""

HEIGHT = codes.DCM.Height  # 121207
MEDIAN = codes.SCT.Median  # 373099004, derivation of the measured trabecular HU
UNIT_MM = codes.UCUM.Millimeter
YES, NO = codes.SCT.Yes, codes.SCT.No  # 373066001, 373067005
COMMENT = codes.DCM.Comment  # 121106
HEIGHT_SITES = {
    "anterior": codes.SCT.Anterior,  # 255549009
    "middle": codes.SCT.Central,  # 26216008
    "posterior": codes.SCT.Posterior,  # 255551008
}
"""Topographical modifier of each of the three body heights of :mod:`inference.measure`."""
GENANT = {
    0: codes.SCT.Normal,  # 17621005
    1: codes.SCT.Mild,  # 255604002
    2: codes.SCT.Moderate,  # 6736007
    3: codes.SCT.Severe,  # 24484000
}
"""Genant semiquantitative grade (0 none, 1 mild, 2 moderate, 3 severe) as the SNOMED CT severity it names."""


def rule_code(rule_id: str) -> Code:
    """A suggestion-engine rule (``R-CAT-1``...) as a private code (clinical/RULES.md is the definition)."""
    return _private(rule_id, f"vfrisk rule {rule_id}")

RISK_LEVEL = {
    "low": codes.SCT.LowRisk,  # 75976002
    "high": codes.SCT.HighRisk,  # 15508007
    "very_high": VERY_HIGH_RISK,
}

# Labs in the FHIR basis.
# DXA T-score: LOINC 38265-5 "DXA [T-score] Bone density" (no site: the result carries the lowest T-score of
# any site).
# Urine NTX per creatinine: LOINC 14115-0 "Collagen crosslinked N-telopeptide/Creatinine [Molar ratio] in Urine",
# the code a laboratory catalogue gives for the urine NTX test reported in nmol BCE/mmol creatinine (Michigan
# Medicine Laboratories, NTX-Telopeptide, Urine, sent to Mayo NTXPR). The vfrisk local code stays beside it.
LOINC_SYSTEM = "http://loinc.org"
LOCAL_LAB_SYSTEM = "urn:vfrisk:lab"
TSCORE_LOINC = ("38265-5", "DXA [T-score] Bone density")
NTX_LOINC = ("14115-0", "Collagen crosslinked N-telopeptide/Creatinine [Molar ratio] in Urine")
NTX_TEXT = NTX_LOINC[1]
NTX_LOCAL = ("ntx_nmol_bce_per_mmol_cr", "Urine NTX, nmol BCE/mmol creatinine")
