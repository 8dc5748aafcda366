"""Facts derived once from the clinical context, so that each rule stays a few lines long.

:func:`derive_facts` turns a validated :class:`~clinical.context.ClinicalContext` into a frozen
:class:`Facts`: renal function (R-REN-0), the fracture list merged with imaging deformities (R-GEN-1),
current and past medication courses, glucocorticoid use (R-PREC-3), and the holiday state (R-HOL-2).
Data-quality remarks found on the way are returned as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from clinical.context import ClinicalContext, Fracture, Medication, Patient
from clinical.dates import months_between, years_between
from clinical.renal import ckd_epi_2021, cockcroft_gault
from clinical.vocabulary import (
    BISPHOSPHONATES,
    NON_VERTEBRAL_SITES,
    OSTEOPOROSIS_THERAPY,
    VERTEBRAL_LEVELS,
    DrugClass,
)
from inference.thresholds import genant_grade_from_pct

GC_USER_MIN_MG_DAY = 2.5
"""R-PREC-3: glucocorticoid user = >= 2.5 mg/day prednisone-equivalent ..."""
GC_USER_MIN_MONTHS = 3.0
"""... for more than 3 months."""
HOLIDAY_MIN_BP_YEARS = 3.0
"""A bisphosphonate course of at least this long, then stopped with no other therapy, is read as a holiday."""
HOLIDAY_MAX_YEARS = 5.0
"""R-HOL-2: a holiday lasts up to about 5 years."""


@dataclass(frozen=True)
class FractureFact:
    """A fracture as the rules see it: reported in ``fractures`` or found on imaging."""

    site: str
    when: date | None
    fragility: bool | None
    vertebral: bool
    level: str | None
    on_therapy: bool | None
    on_glucocorticoids: bool
    from_imaging: bool
    grade: int | None


@dataclass(frozen=True)
class Course:
    """A medication course with its resolved class and its span up to the assessment date."""

    med: Medication
    drug_class: DrugClass
    current: bool
    months: float | None
    """Months from start to stop (or to the assessment date when current); None without a start date."""
    index: int
    """Position of the medication in ``patient.medications`` (for naming a missing start date)."""


@dataclass(frozen=True)
class Facts:
    """Everything the rules read, derived once."""

    ctx: ClinicalContext
    today: date
    age: float | None
    sex: str | None
    crcl: float | None
    crcl_source: str | None
    egfr: float | None
    egfr_source: str | None
    fractures: tuple[FractureFact, ...]
    courses: tuple[Course, ...]
    gc_user: bool | None
    on_holiday: bool
    holiday_start: date | None

    @property
    def patient(self) -> Patient:
        """The patient record of the context."""
        return self.ctx.patient

    @property
    def kidney_gfr(self) -> float | None:
        """The lower of eGFR and CrCl (R-REN-0 cross-check), for the CKD stage rules."""
        values = [v for v in (self.egfr, self.crcl) if v is not None]
        return min(values) if values else None

    @property
    def fragility_fractures(self) -> tuple[FractureFact, ...]:
        """Fractures known to be fragility fractures (imaging deformities of grade >= 1 included)."""
        return tuple(f for f in self.fractures if f.fragility)

    @property
    def current_classes(self) -> frozenset[DrugClass]:
        """Classes the patient is taking now."""
        return frozenset(c.drug_class for c in self.courses if c.current)

    def courses_of(self, classes: frozenset[DrugClass], *, current: bool | None = None) -> tuple[Course, ...]:
        """Return the courses of ``classes``; only current (True) or only past (False) ones when asked."""
        return tuple(
            c for c in self.courses if c.drug_class in classes and (current is None or c.current == current)
        )


def derive_facts(ctx: ClinicalContext) -> tuple[Facts, list[str]]:
    """Return the derived facts of ``ctx`` and the data-quality warnings found while deriving them."""
    warnings: list[str] = []
    patient = ctx.patient
    crcl, crcl_source, egfr, egfr_source = _renal(patient)
    courses = tuple(_courses(patient.medications, ctx.assessment_date, warnings))
    gc_user = _gc_user(patient)
    fractures = _fractures(patient, ctx.assessment_date, courses, warnings)
    on_holiday, holiday_start = _holiday(courses, ctx.assessment_date)
    facts = Facts(
        ctx=ctx,
        today=ctx.assessment_date,
        age=patient.age,
        sex=patient.sex,
        crcl=crcl,
        crcl_source=crcl_source,
        egfr=egfr,
        egfr_source=egfr_source,
        fractures=fractures,
        courses=courses,
        gc_user=gc_user,
        on_holiday=on_holiday,
        holiday_start=holiday_start,
    )
    return facts, warnings


def _renal(patient: Patient) -> tuple[float | None, str | None, float | None, str | None]:
    """CrCl and eGFR, given or computed from creatinine, age, sex (and weight for CrCl)."""
    labs = patient.labs
    crcl = labs.crcl_cockcroft_gault_ml_min if labs else None
    egfr = labs.egfr_ml_min_1_73m2 if labs else None
    crcl_source = "given" if crcl is not None else None
    egfr_source = "given" if egfr is not None else None
    scr = labs.serum_creatinine_mg_dl if labs else None
    if scr is None or patient.age is None or patient.sex is None:
        return crcl, crcl_source, egfr, egfr_source
    if crcl is None and patient.weight_kg is not None:
        crcl, crcl_source = (
            round(cockcroft_gault(scr, patient.age, patient.sex, patient.weight_kg), 1),
            "cockcroft_gault",
        )
    if egfr is None:
        egfr, egfr_source = round(ckd_epi_2021(scr, patient.age, patient.sex), 1), "ckd_epi_2021"
    return crcl, crcl_source, egfr, egfr_source


def _courses(meds: list[Medication], today: date, warnings: list[str]) -> list[Course]:
    """Medication courses with a known osteoporosis class; other drugs are kept out with a warning."""
    courses = []
    for i, med in enumerate(meds):
        cls = med.resolved_class
        if cls is None:
            if med.drug and med.drug.strip().lower() not in _NON_OSTEOPOROSIS_OK:
                warnings.append(
                    f"medication {i} ({med.drug}) is not in the drug vocabulary; no rule reads it"
                )
            continue
        current = med.stop is None or med.stop > today
        end = today if current else med.stop
        months = months_between(med.start, end) if med.start and end else None
        courses.append(Course(med, cls, current, months, i))
    return courses


_NON_OSTEOPOROSIS_OK = frozenset({"calcium", "vitamin_d", "prednisone", "prednisolone", "cholecalciferol"})


def _gc_user(patient: Patient) -> bool | None:
    """R-PREC-3: >= 2.5 mg/day prednisone-equivalent for > 3 months (None when unknown)."""
    gc = patient.glucocorticoids
    if gc is None or gc.current is None:
        return None
    if not gc.current:
        return False
    if gc.prednisone_eq_mg_day is None or gc.duration_months is None:
        return None
    return gc.prednisone_eq_mg_day >= GC_USER_MIN_MG_DAY and gc.duration_months > GC_USER_MIN_MONTHS


def _fractures(
    patient: Patient, today: date, courses: tuple[Course, ...], warnings: list[str]
) -> tuple[FractureFact, ...]:
    """Reported fractures plus imaging deformities at levels not already reported (R-GEN-1)."""
    facts = [_reported(fx, today, patient, courses, warnings) for fx in patient.fractures]
    kept = [f for f in facts if f is not None]
    reported_levels = {f.level for f in kept if f.level}
    for dfm in patient.imaging.vertebral_deformities if patient.imaging else []:
        grade = dfm.genant_grade if dfm.genant_grade is not None else genant_grade(dfm.height_loss_pct)
        level = (dfm.level or "").upper() or None
        if grade is None or grade < 1 or level in reported_levels:
            continue
        warnings.append(
            f"vertebral deformity at {level or 'unknown level'} (Genant {grade}) on imaging is not "
            "in the fracture list; counted as a prevalent vertebral fracture (R-GEN-1)"
        )
        kept.append(FractureFact(f"vertebral_{level}", None, True, True, level, None, False, True, grade))
    return tuple(kept)


def _reported(
    fx: Fracture, today: date, patient: Patient, courses: tuple[Course, ...], warnings: list[str]
) -> FractureFact | None:
    """One reported fracture as a :class:`FractureFact`; Genant grade 0 is not a fracture (None)."""
    site = (fx.site or "other").strip()
    level = site.split("_", 1)[1].upper() if site.lower().startswith("vertebral_") else None
    vertebral = level is not None
    if vertebral and level not in VERTEBRAL_LEVELS:
        warnings.append(f"fracture site {site!r}: unknown vertebral level, counted as vertebral")
    if not vertebral and site not in NON_VERTEBRAL_SITES:
        warnings.append(
            f"fracture site {site!r} is not in the vocabulary; counted as a non-vertebral fracture"
        )
    if fx.genant_grade == 0:
        warnings.append(f"fracture at {site} has Genant grade 0, which is not a fracture (R-GEN-1); ignored")
        return None
    if fx.fragility is None:
        warnings.append(f"fracture at {site}: fragility unknown, not counted as a fragility fracture")
    on_therapy = _on_therapy(fx, courses, warnings, site)
    on_gc = _on_glucocorticoids(fx.date, today, patient)
    return FractureFact(
        site, fx.date, fx.fragility, vertebral, level, on_therapy, on_gc, False, fx.genant_grade
    )


def _on_therapy(fx: Fracture, courses: tuple[Course, ...], warnings: list[str], site: str) -> bool | None:
    """The given flag, else derived from medication dates; a disagreement is reported."""
    derived: bool | None = None
    if fx.date is not None:
        spans = [c for c in courses if c.drug_class in OSTEOPOROSIS_THERAPY and c.med.start is not None]
        derived = any(
            c.med.start <= fx.date and (c.med.stop is None or fx.date <= c.med.stop)
            for c in spans
            if c.med.start is not None
        )
    if fx.on_osteoporosis_therapy_at_time is None:
        return derived
    if derived is not None and derived != fx.on_osteoporosis_therapy_at_time:
        warnings.append(
            f"fracture at {site}: on_osteoporosis_therapy_at_time={fx.on_osteoporosis_therapy_at_time} "
            f"disagrees with the medication dates; the given flag is used"
        )
    return fx.on_osteoporosis_therapy_at_time


def _on_glucocorticoids(when: date | None, today: date, patient: Patient) -> bool:
    """True when the fracture happened during the current long-term glucocorticoid course."""
    gc = patient.glucocorticoids
    if when is None or gc is None or not gc.current or gc.duration_months is None:
        return False
    if gc.duration_months <= GC_USER_MIN_MONTHS or (gc.prednisone_eq_mg_day or 0) < GC_USER_MIN_MG_DAY:
        return False
    return when >= today - timedelta(days=round(gc.duration_months * 365.25 / 12))


def _holiday(courses: tuple[Course, ...], today: date) -> tuple[bool, date | None]:
    """On a holiday: a >= 3-year bisphosphonate course stopped <= 5 years ago and no current therapy."""
    if any(c.current and c.drug_class in OSTEOPOROSIS_THERAPY for c in courses):
        return False, None
    stops = [
        c.med.stop
        for c in courses
        if c.drug_class in BISPHOSPHONATES
        and not c.current
        and c.med.stop
        and treatment_years(c) >= HOLIDAY_MIN_BP_YEARS
    ]
    if not stops:
        return False, None
    last = max(stops)
    return years_between(last, today) <= HOLIDAY_MAX_YEARS, last


def treatment_years(course: Course) -> float:
    """Years of treatment of a course; for zoledronic acid also the number of yearly infusions received."""
    years = (course.months or 0.0) / 12
    if course.drug_class == DrugClass.IV_BISPHOSPHONATE and course.med.doses_received:
        years = max(years, float(course.med.doses_received))
    return years


def genant_grade(height_loss_pct: float | None) -> int | None:
    """R-GEN-1 grade from percent height loss (:func:`inference.thresholds.genant_grade_from_pct`)."""
    return genant_grade_from_pct(height_loss_pct)
