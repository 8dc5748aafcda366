"""The closed vocabulary of the suggestion engine, as Python data.

Mirrors ``shared/clinical/vocabulary.json`` (the project's clinical vocabulary, read-only and not shipped
with the package) key for key: risk categories, drug classes and their drugs, class aliases, alert keys,
monitoring keys, actions that must never be suggested, and the default model thresholds (R-MODEL-1).
``tests/test_clinical_vocabulary.py`` pins these values so that an edit of either side is noticed.

Additions of this project that are *not* in ``vocabulary.json`` are marked as such below (the lifestyle
topics taken from the source document ``shared/seed/osteoporosis_treatment.txt``, and the alert severities).

Every enum is a ``StrEnum``: members compare equal to, and serialise as, their plain string key.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class RiskCategory(StrEnum):
    """Fracture-risk category, ordered ``low < high < very_high`` (see :func:`category_rank`)."""

    LOW = "low"
    HIGH = "high"
    VERY_HIGH = "very_high"


CATEGORY_ORDER: Final[tuple[RiskCategory, ...]] = (
    RiskCategory.LOW,
    RiskCategory.HIGH,
    RiskCategory.VERY_HIGH,
)


def category_rank(category: RiskCategory) -> int:
    """Return the position of ``category`` in ``low < high < very_high`` (0, 1 or 2)."""
    return CATEGORY_ORDER.index(category)


CATEGORY_LABELS: Final[MappingProxyType[RiskCategory, str]] = MappingProxyType({
    RiskCategory.LOW: "low",
    RiskCategory.HIGH: "high",
    RiskCategory.VERY_HIGH: "very high",
})
"""How each risk category is written for people (UI, PDF, FHIR text)."""


def category_label(category: str | None) -> str:
    """The words for a risk category (``very_high`` -> "very high"); "not categorised" for None."""
    return CATEGORY_LABELS[RiskCategory(category)] if category else "not categorised"


def category_from_rank(rank: int) -> RiskCategory:
    """Return the category at ``rank``, clamped to the valid range 0..2."""
    return CATEGORY_ORDER[max(0, min(rank, len(CATEGORY_ORDER) - 1))]


class DrugClass(StrEnum):
    """Drug classes that may appear in ``first_line``, ``deferred`` and ``avoid``."""

    LIFESTYLE_CALCIUM_VITD = "lifestyle_calcium_vitd"
    ORAL_BISPHOSPHONATE = "oral_bisphosphonate"
    IV_BISPHOSPHONATE = "iv_bisphosphonate"
    DENOSUMAB = "denosumab"
    SERM = "serm"
    MENOPAUSAL_HORMONE_THERAPY = "menopausal_hormone_therapy"
    PTH_ANALOG = "pth_analog"
    ROMOSOZUMAB = "romosozumab"


class Drug(StrEnum):
    """Single drugs of the vocabulary; each belongs to exactly one :class:`DrugClass`."""

    ALENDRONATE = "alendronate"
    RISEDRONATE = "risedronate"
    IBANDRONATE = "ibandronate"
    ZOLEDRONIC_ACID = "zoledronic_acid"
    DENOSUMAB = "denosumab"
    RALOXIFENE = "raloxifene"
    BAZEDOXIFENE = "bazedoxifene"
    ESTROGEN = "estrogen"
    ESTROGEN_PROGESTOGEN = "estrogen_progestogen"
    TIBOLONE = "tibolone"
    TERIPARATIDE = "teriparatide"
    ABALOPARATIDE = "abaloparatide"
    ROMOSOZUMAB = "romosozumab"


DRUGS_BY_CLASS: Final = MappingProxyType(
    {
        DrugClass.LIFESTYLE_CALCIUM_VITD: (),
        DrugClass.ORAL_BISPHOSPHONATE: (Drug.ALENDRONATE, Drug.RISEDRONATE, Drug.IBANDRONATE),
        DrugClass.IV_BISPHOSPHONATE: (Drug.ZOLEDRONIC_ACID,),
        DrugClass.DENOSUMAB: (Drug.DENOSUMAB,),
        DrugClass.SERM: (Drug.RALOXIFENE, Drug.BAZEDOXIFENE),
        DrugClass.MENOPAUSAL_HORMONE_THERAPY: (Drug.ESTROGEN, Drug.ESTROGEN_PROGESTOGEN, Drug.TIBOLONE),
        DrugClass.PTH_ANALOG: (Drug.TERIPARATIDE, Drug.ABALOPARATIDE),
        DrugClass.ROMOSOZUMAB: (Drug.ROMOSOZUMAB,),
    }
)
"""``drug_classes`` of vocabulary.json: the drugs of each class."""

CLASS_OF_DRUG: Final = MappingProxyType({d: c for c, drugs in DRUGS_BY_CLASS.items() for d in drugs})
"""The inverse of :data:`DRUGS_BY_CLASS`."""

CLASS_ALIASES: Final = MappingProxyType(
    {
        "bisphosphonate": (DrugClass.ORAL_BISPHOSPHONATE, DrugClass.IV_BISPHOSPHONATE),
        "anabolic": (DrugClass.PTH_ANALOG, DrugClass.ROMOSOZUMAB),
        "antiresorptive": (
            DrugClass.ORAL_BISPHOSPHONATE,
            DrugClass.IV_BISPHOSPHONATE,
            DrugClass.DENOSUMAB,
            DrugClass.SERM,
        ),
    }
)
"""``class_aliases`` of vocabulary.json."""

BISPHOSPHONATES: Final = frozenset(CLASS_ALIASES["bisphosphonate"])
ANABOLICS: Final = frozenset(CLASS_ALIASES["anabolic"])
ANTIRESORPTIVES: Final = frozenset(CLASS_ALIASES["antiresorptive"])
OSTEOPOROSIS_THERAPY: Final = frozenset(DrugClass) - {DrugClass.LIFESTYLE_CALCIUM_VITD}
"""Classes that count as "approved osteoporosis therapy" (everything except lifestyle)."""


class AlertKey(StrEnum):
    """``alerts`` of vocabulary.json."""

    ANABOLIC_FOLLOWUP_ANTIRESORPTIVE = "anabolic_followup_antiresorptive"
    ATYPICAL_FEMUR_FRACTURE_EVALUATE = "atypical_femur_fracture_evaluate"
    BTM_INADEQUATE_RESPONSE = "btm_inadequate_response"
    CALCIUM_BELOW_RECOMMENDED = "calcium_below_recommended"
    CALCIUM_OVER_UPPER_LIMIT = "calcium_over_upper_limit"
    CKD_MBD_SPECIALIST_REVIEW = "ckd_mbd_specialist_review"
    DENOSUMAB_CKD_HYPOCALCAEMIA_RISK = "denosumab_ckd_hypocalcaemia_risk"
    DENOSUMAB_NO_STOP = "denosumab_no_stop"
    DRUG_HOLIDAY_ELIGIBLE = "drug_holiday_eligible"
    END_DRUG_HOLIDAY = "end_drug_holiday"
    FALL_RISK_INTERVENTION = "fall_risk_intervention"
    FRACTURE_ON_THERAPY = "fracture_on_therapy"
    GLUCOCORTICOID_INDUCED_OSTEOPOROSIS = "glucocorticoid_induced_osteoporosis"
    HYPOCALCAEMIA_CORRECT_FIRST = "hypocalcaemia_correct_first"
    MODEL_CLINICAL_DISCORDANCE = "model_clinical_discordance"
    ORAL_BP_ADMINISTRATION_RULES = "oral_bp_administration_rules"
    PTH_ANALOG_OSTEOSARCOMA_RISK = "pth_analog_osteosarcoma_risk"
    RED_FLAG_URGENT = "red_flag_urgent"
    RENAL_CONTRAINDICATION = "renal_contraindication"
    ROMOSOZUMAB_COURSE_LIMIT = "romosozumab_course_limit"
    ROMOSOZUMAB_CV_CONTRAINDICATION = "romosozumab_cv_contraindication"
    TERIPARATIDE_COURSE_LIMIT = "teriparatide_course_limit"
    VERTEBRAL_AUGMENTATION_CONSIDER = "vertebral_augmentation_consider"
    VERTEBRAL_IMAGING_INDICATED = "vertebral_imaging_indicated"
    VITAMIN_D_BELOW_RECOMMENDED = "vitamin_d_below_recommended"
    VITAMIN_D_DEFICIENCY_CORRECT_FIRST = "vitamin_d_deficiency_correct_first"
    VITAMIN_D_OVER_UPPER_LIMIT = "vitamin_d_over_upper_limit"


class Severity(StrEnum):
    """How soon an alert needs the clinician. PROJECT addition, not in vocabulary.json (issue 23).

    Every consumer (UI, PDF, FHIR) shows alerts in this order: urgent first, then caution, then info.
    """

    URGENT = "urgent"
    """Act before any treatment decision (a contraindication, a red flag, an unsafe stop)."""
    CAUTION = "caution"
    """Changes or limits the plan (a correction first, a course limit, a review)."""
    INFO = "info"
    """Advice that goes with the plan."""


SEVERITY_ORDER: Final[tuple[Severity, ...]] = (Severity.URGENT, Severity.CAUTION, Severity.INFO)


def severity_rank(severity: Severity) -> int:
    """Return the position of ``severity`` in ``urgent < caution < info`` (0, 1 or 2): the display order."""
    return SEVERITY_ORDER.index(severity)


_URGENT, _CAUTION, _INFO = Severity.URGENT, Severity.CAUTION, Severity.INFO
ALERT_SEVERITY: Final = MappingProxyType(
    {
        AlertKey.RED_FLAG_URGENT: _URGENT,
        AlertKey.RENAL_CONTRAINDICATION: _URGENT,
        AlertKey.ROMOSOZUMAB_CV_CONTRAINDICATION: _URGENT,
        AlertKey.HYPOCALCAEMIA_CORRECT_FIRST: _URGENT,
        AlertKey.FRACTURE_ON_THERAPY: _URGENT,
        AlertKey.DENOSUMAB_NO_STOP: _URGENT,
        AlertKey.ATYPICAL_FEMUR_FRACTURE_EVALUATE: _URGENT,
        AlertKey.DENOSUMAB_CKD_HYPOCALCAEMIA_RISK: _URGENT,
        AlertKey.MODEL_CLINICAL_DISCORDANCE: _CAUTION,
        AlertKey.VITAMIN_D_DEFICIENCY_CORRECT_FIRST: _CAUTION,
        AlertKey.CALCIUM_OVER_UPPER_LIMIT: _CAUTION,
        AlertKey.VITAMIN_D_OVER_UPPER_LIMIT: _CAUTION,
        AlertKey.PTH_ANALOG_OSTEOSARCOMA_RISK: _CAUTION,
        AlertKey.CKD_MBD_SPECIALIST_REVIEW: _CAUTION,
        AlertKey.BTM_INADEQUATE_RESPONSE: _CAUTION,
        AlertKey.GLUCOCORTICOID_INDUCED_OSTEOPOROSIS: _CAUTION,
        AlertKey.ROMOSOZUMAB_COURSE_LIMIT: _CAUTION,
        AlertKey.TERIPARATIDE_COURSE_LIMIT: _CAUTION,
        AlertKey.END_DRUG_HOLIDAY: _CAUTION,
        AlertKey.VERTEBRAL_AUGMENTATION_CONSIDER: _CAUTION,
        AlertKey.ANABOLIC_FOLLOWUP_ANTIRESORPTIVE: _INFO,
        AlertKey.CALCIUM_BELOW_RECOMMENDED: _INFO,
        AlertKey.DRUG_HOLIDAY_ELIGIBLE: _INFO,
        AlertKey.FALL_RISK_INTERVENTION: _INFO,
        AlertKey.ORAL_BP_ADMINISTRATION_RULES: _INFO,
        AlertKey.VERTEBRAL_IMAGING_INDICATED: _INFO,
        AlertKey.VITAMIN_D_BELOW_RECOMMENDED: _INFO,
    }
)
"""The severity of every alert key: the one source for the suggestion JSON and every consumer of it."""


class MonitoringKey(StrEnum):
    """``monitoring`` of vocabulary.json."""

    BTM_RECHECK_3_TO_6M = "btm_recheck_3_to_6m"
    CV_RISK_REVIEW = "cv_risk_review"
    DXA_EVERY_1_TO_2Y = "dxa_every_1_to_2y"
    DXA_RECOMMENDED = "dxa_recommended"
    FALL_RISK_ASSESSMENT = "fall_risk_assessment"
    REASSESS_6M = "reassess_6m"
    REASSESS_FRACTURE_RISK_WITHIN_5Y = "reassess_fracture_risk_within_5y"
    REASSESS_ON_HOLIDAY_2_TO_4Y = "reassess_on_holiday_2_to_4y"
    RENAL_FUNCTION_BEFORE_EACH_ZOLEDRONATE_DOSE = "renal_function_before_each_zoledronate_dose"
    RENAL_RECHECK_6M = "renal_recheck_6m"
    SERUM_CALCIUM_CORRECT_AND_RECHECK = "serum_calcium_correct_and_recheck"
    SERUM_CALCIUM_MONITORING = "serum_calcium_monitoring"
    SPECIALIST_REFERRAL_CONSIDER = "specialist_referral_consider"
    URGENT_CLINICAL_REVIEW = "urgent_clinical_review"
    VERTEBRAL_IMAGING = "vertebral_imaging"
    VITAMIN_D_RECHECK_3M = "vitamin_d_recheck_3m"


class BannedAction(StrEnum):
    """``actions_never_to_suggest`` of vocabulary.json: the engine never emits these as advice."""

    DISCONTINUE_DENOSUMAB_WITHOUT_TRANSITION = "discontinue_denosumab_without_transition"
    DRUG_HOLIDAY = "drug_holiday"
    EXTEND_PTH_ANALOG_BEYOND_24_MONTHS_TOTAL = "extend_pth_analog_beyond_24_months_total"
    NO_FOLLOWON_THERAPY = "no_followon_therapy"


MODEL_P_HIGH: Final = 0.03
"""``model_thresholds_default.p_high`` (R-MODEL-1, a project convention to be refitted)."""
MODEL_P_VERY_HIGH: Final = 0.10
"""``model_thresholds_default.p_very_high`` (R-MODEL-1, a project convention to be refitted)."""


class RedFlag(StrEnum):
    """Recognised ``symptoms.red_flags`` keys of context.md (any other key is still a red flag)."""

    SUDDEN_SEVERE_BACK_PAIN = "sudden_severe_back_pain"
    CANCER_HISTORY_WITH_NEW_BACK_PAIN = "cancer_history_with_new_back_pain"
    UNEXPLAINED_WEIGHT_LOSS = "unexplained_weight_loss"
    FEVER = "fever"
    NIGHT_PAIN = "night_pain"
    SADDLE_ANAESTHESIA = "saddle_anaesthesia"
    BLADDER_BOWEL_DYSFUNCTION = "bladder_bowel_dysfunction"
    NEURO_DEFICIT = "neuro_deficit"


VERTEBRAL_LEVELS: Final[tuple[str, ...]] = tuple(
    [f"T{i}" for i in range(4, 13)] + [f"L{i}" for i in range(1, 6)]
)
"""Levels of ``vertebral_<level>`` fracture sites (context.md: T4 ... L5)."""

NON_VERTEBRAL_SITES: Final = frozenset(
    {"hip", "distal_radius", "proximal_humerus", "pelvis", "rib", "ankle", "other"}
)
"""Non-vertebral fracture sites of context.md."""


class LifestyleTopic(StrEnum):
    """Lifestyle advice topics. PROJECT addition, not in vocabulary.json: from the source document."""

    CALCIUM_VITAMIN_D = "calcium_vitamin_d"
    WEIGHT_BEARING_EXERCISE = "weight_bearing_exercise"
    BALANCE_TRAINING = "balance_training"
    FALL_PROOF_HOME = "fall_proof_home"
    CAFFEINE = "caffeine"
    ALCOHOL = "alcohol"
    SALT = "salt"
    TRADITIONAL_CHINESE_MEDICINE = "traditional_chinese_medicine"
