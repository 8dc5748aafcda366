"""The clinical context: the validated input of the suggestion engine.

Field names and meaning follow ``shared/clinical/context.md``. Every field may be ``null`` or absent when
unknown (the engine then reports which rule it could not evaluate), except ``assessment_date``, which every
date rule is relative to. Impossible values (a negative age, a T-score of -12, a fracture dated after the
assessment, an unknown drug class) are validation errors. Unknown fields are kept and reported as warnings by
:meth:`ClinicalContext.unknown_fields`.

Fields added by this project (not in context.md) are marked ``PROJECT`` in their docstring; they carry facts
that RULES.md needs and context.md has no field for (for example acute renal impairment for R-REN-4).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinical.vocabulary import CLASS_OF_DRUG, Drug, DrugClass

Pct = Annotated[float, Field(ge=0, le=100)]
TScore = Annotated[float, Field(ge=-8, le=8)]


class _Model(BaseModel):
    """Base: unknown fields are allowed (and reported), assignment is validated."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


class Fracture(_Model):
    """One known fracture."""

    site: str | None = None
    """``vertebral_<T4..L5>``, ``hip``, ``distal_radius``, ``proximal_humerus``, ``pelvis``, ``rib``,
    ``ankle`` or ``other``; an unknown site counts as non-vertebral (with a warning)."""
    date: dt.date | None = None
    fragility: bool | None = None
    genant_grade: Annotated[int, Field(ge=0, le=3)] | None = None
    on_osteoporosis_therapy_at_time: bool | None = None


class Medication(_Model):
    """One medication course; ``stop: null`` means still taking it."""

    drug: str | None = None
    drug_class: DrugClass | None = None
    start: dt.date | None = None
    stop: dt.date | None = None
    last_dose: dt.date | None = None
    doses_received: Annotated[int, Field(ge=0, le=1000)] | None = None
    adherent: bool | None = None
    administration_issue: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Medication:
        """Refuse a stop before the start and a drug class that contradicts the drug."""
        if self.start and self.stop and self.stop < self.start:
            raise ValueError("stop date is before start date")
        known = self.known_drug
        if known is not None and self.drug_class is not None and CLASS_OF_DRUG[known] != self.drug_class:
            raise ValueError(f"drug {known.value} is not in class {self.drug_class.value}")
        return self

    @property
    def known_drug(self) -> Drug | None:
        """The drug as a vocabulary member, or None when the name is not in the vocabulary."""
        try:
            return Drug((self.drug or "").strip().lower())
        except ValueError:
            return None

    @property
    def resolved_class(self) -> DrugClass | None:
        """The given class, or the class of a known drug."""
        if self.drug_class is not None:
            return self.drug_class
        known = self.known_drug
        return CLASS_OF_DRUG[known] if known is not None else None


class Dxa(_Model):
    """The latest DXA: date and T-scores by site."""

    date: dt.date | None = None
    t_lumbar_spine: TScore | None = None
    t_femoral_neck: TScore | None = None
    t_total_hip: TScore | None = None
    t_radius_33pct: TScore | None = None
    """PROJECT: the 33% radius site named by R-CAT-2."""


class Frax(_Model):
    """10-year FRAX probabilities in percent."""

    mof_10y_pct: Pct | None = None
    hip_10y_pct: Pct | None = None
    with_bmd: bool | None = None
    gc_adjusted: bool | None = None

    @model_validator(mode="after")
    def _hip_within_mof(self) -> Frax:
        """Hip fracture is one of the major osteoporotic fractures, so hip probability <= MOF probability."""
        if (
            self.mof_10y_pct is not None
            and self.hip_10y_pct is not None
            and self.hip_10y_pct > self.mof_10y_pct
        ):
            raise ValueError("hip_10y_pct cannot exceed mof_10y_pct")
        return self


class Labs(_Model):
    """Laboratory values in the units of their names."""

    urine_ntx_nmol_bce_per_mmol_cr: Annotated[float, Field(ge=0, le=3000)] | None = None
    urine_ntx_baseline: Annotated[float, Field(ge=0, le=3000)] | None = None
    urine_ntx_baseline_date: dt.date | None = None
    serum_ctx_ng_ml: Annotated[float, Field(ge=0, le=20)] | None = None
    serum_creatinine_mg_dl: Annotated[float, Field(gt=0, le=30)] | None = None
    egfr_ml_min_1_73m2: Annotated[float, Field(ge=0, le=250)] | None = None
    crcl_cockcroft_gault_ml_min: Annotated[float, Field(ge=0, le=400)] | None = None
    serum_calcium_corrected_mg_dl: Annotated[float, Field(ge=3, le=25)] | None = None
    vitamin_d_25oh_ng_ml: Annotated[float, Field(ge=0, le=300)] | None = None
    alkaline_phosphatase_u_l: Annotated[float, Field(ge=0, le=10000)] | None = None
    alkaline_phosphatase_uln_u_l: Annotated[float, Field(gt=0, le=1000)] | None = None
    """PROJECT: the laboratory's upper reference limit for ALP (R-PTH-3); default 130 U/L when absent."""
    pth_pg_ml: Annotated[float, Field(ge=0, le=5000)] | None = None


class Glucocorticoids(_Model):
    """Glucocorticoid exposure (prednisone-equivalent)."""

    current: bool | None = None
    prednisone_eq_mg_day: Annotated[float, Field(ge=0, le=2000)] | None = None
    duration_months: Annotated[float, Field(ge=0, le=1200)] | None = None
    cumulative_g_past_year: Annotated[float, Field(ge=0, le=1000)] | None = None


class Cardiovascular(_Model):
    """Dates of myocardial infarctions and strokes."""

    mi_dates: list[dt.date] = Field(default_factory=list)
    stroke_dates: list[dt.date] = Field(default_factory=list)


class Intake(_Model):
    """Daily calcium and vitamin D intake."""

    calcium_diet_mg_day: Annotated[float, Field(ge=0, le=20000)] | None = None
    calcium_supplement_mg_day: Annotated[float, Field(ge=0, le=20000)] | None = None
    vitamin_d_iu_day: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    vitamin_d_regimen: str | None = None


class Falls(_Model):
    """Falls in the past 12 months."""

    count_12m: Annotated[int, Field(ge=0, le=1000)] | None = None
    injurious: bool | None = None


class Symptoms(_Model):
    """Red flags and back pain."""

    red_flags: list[str] = Field(default_factory=list)
    back_pain: str | None = None
    thigh_or_groin_pain: bool | None = None
    """PROJECT: R-AFF-1."""
    severe_pain_despite_optimal_analgesia: bool | None = None
    """PROJECT: R-VA-1 (severe ongoing pain despite optimal pain management)."""
    posture_change: bool | None = None
    """PROJECT: R-RF-2 (new posture change, for example kyphosis)."""


class HeightLoss(_Model):
    """Height loss in cm: historical (from peak adult height) and prospective (measured)."""

    historical: Annotated[float, Field(ge=0, le=60)] | None = None
    prospective: Annotated[float, Field(ge=0, le=60)] | None = None


class History(_Model):
    """Relevant history."""

    cancer: list[str] = Field(default_factory=list)
    skeletal_radiation: bool | None = None
    paget: bool | None = None
    kidney_stones: bool | None = None
    other: list[str] = Field(default_factory=list)
    acute_renal_impairment: bool | None = None
    """PROJECT: R-REN-4."""
    dialysis: bool | None = None
    """PROJECT: R-REN-5/6 (CKD G5D)."""
    open_epiphyses: bool | None = None
    """PROJECT: R-PTH-3."""
    oesophageal_emptying_disorder: bool | None = None
    """PROJECT: R-ADM-1 (for example stricture or achalasia)."""
    unable_to_stay_upright_30min: bool | None = None
    """PROJECT: R-ADM-1."""


class Deformity(_Model):
    """A vertebral deformity found on imaging."""

    level: str | None = None
    genant_grade: Annotated[int, Field(ge=0, le=3)] | None = None
    height_loss_pct: Annotated[float, Field(ge=0, le=100)] | None = None


class Imaging(_Model):
    """Findings of the scored study (filled by the service)."""

    study: str | None = None
    study_date: dt.date | None = None
    l1_trabecular_hu: Annotated[float, Field(ge=-1024, le=3000)] | None = None
    vertebral_deformities: list[Deformity] = Field(default_factory=list)


class Patient(_Model):
    """Everything known about the patient."""

    age: Annotated[float, Field(ge=0, le=120)] | None = None
    sex: Literal["F", "M"] | None = None
    postmenopausal: bool | None = None
    weight_kg: Annotated[float, Field(ge=20, le=400)] | None = None
    fractures: list[Fracture] = Field(default_factory=list)
    medications: list[Medication] = Field(default_factory=list)
    dxa: Dxa | None = None
    frax: Frax | None = None
    labs: Labs | None = None
    glucocorticoids: Glucocorticoids | None = None
    cardiovascular: Cardiovascular | None = None
    intake: Intake | None = None
    falls: Falls | None = None
    symptoms: Symptoms | None = None
    height_loss_cm: HeightLoss | None = None
    history: History | None = None
    imaging: Imaging | None = None
    patient_request: str | None = None


class ModelOutput(_Model):
    """The calibrated model output (filled by the service)."""

    p_vertebral_fracture_6m: Annotated[float, Field(ge=0, le=1)] | None = None


class ClinicalContext(_Model):
    """The suggestion engine's input: the assessment date, the patient, and the model output."""

    assessment_date: dt.date
    patient: Patient = Field(default_factory=Patient)
    model: ModelOutput = Field(default_factory=ModelOutput)

    @model_validator(mode="after")
    def _no_future_dates(self) -> ClinicalContext:
        """Refuse any event dated after the assessment date: the rules would read it as the past."""
        for path, when in _dated_fields(self.patient):
            if when > self.assessment_date:
                raise ValueError(f"{path} {when.isoformat()} is after assessment_date")
        return self

    def unknown_fields(self) -> list[str]:
        """Return the dotted paths of every field that is not part of the schema (tolerated, reported)."""
        return _extra_paths(self, "")


def _dated_fields(patient: Patient) -> list[tuple[str, dt.date]]:
    """Every event date of the patient with its dotted path (medication stops may lie in the future)."""
    found: list[tuple[str, dt.date]] = []
    for i, fx in enumerate(patient.fractures):
        found += [(f"patient.fractures.{i}.date", fx.date)] if fx.date else []
    for i, med in enumerate(patient.medications):
        for name in ("start", "last_dose"):
            when = getattr(med, name)
            found += [(f"patient.medications.{i}.{name}", when)] if when else []
    if patient.cardiovascular:
        found += [
            (f"patient.cardiovascular.mi_dates.{i}", d) for i, d in enumerate(patient.cardiovascular.mi_dates)
        ]
        found += [
            (f"patient.cardiovascular.stroke_dates.{i}", d)
            for i, d in enumerate(patient.cardiovascular.stroke_dates)
        ]
    for path, holder in (("patient.dxa", patient.dxa), ("patient.imaging", patient.imaging)):
        when = getattr(holder, "date", None) or getattr(holder, "study_date", None)
        found += [(f"{path}.date", when)] if isinstance(when, dt.date) else []
    if patient.labs and patient.labs.urine_ntx_baseline_date:
        found.append(("patient.labs.urine_ntx_baseline_date", patient.labs.urine_ntx_baseline_date))
    return found


def _extra_paths(value: Any, prefix: str) -> list[str]:
    """Collect the dotted paths of unknown fields below ``value`` (a model, a list, or a leaf)."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _extra_paths(item, f"{prefix}{i}.")]
    if not isinstance(value, BaseModel):
        return []
    paths = [f"{prefix}{name}" for name in (value.model_extra or {})]
    for name in type(value).model_fields:
        paths += _extra_paths(getattr(value, name), f"{prefix}{name}.")
    return paths
