"""Risk category: clinical (R-CAT-*, R-PREC-2/3), model (R-MODEL-1) and final (R-MODEL-2/3)."""

from __future__ import annotations

from dataclasses import dataclass

from clinical import inputs
from clinical.dates import within_days
from clinical.facts import Facts
from clinical.findings import NOTHING, Findings, alert, monitor, not_evaluated, note, warning
from clinical.vocabulary import (
    MODEL_P_HIGH,
    MODEL_P_VERY_HIGH,
    AlertKey,
    MonitoringKey,
    RiskCategory,
    category_from_rank,
    category_rank,
)

LOW, HIGH, VERY_HIGH = RiskCategory.LOW, RiskCategory.HIGH, RiskCategory.VERY_HIGH


@dataclass(frozen=True)
class Level:
    """A category with the criteria that produced it."""

    category: RiskCategory
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CategoryResult:
    """Clinical, model and final category, the criteria met, and what the category rules found."""

    clinical: RiskCategory
    model: RiskCategory | None
    final: RiskCategory
    reasons: tuple[str, ...]
    findings: Findings


def lowest_t(f: Facts) -> float | None:
    """The lowest T-score of LS, FN, total hip and 33% radius (R-CAT-1/2), or None without a DXA."""
    dxa = f.patient.dxa
    if dxa is None:
        return None
    values = [dxa.t_lumbar_spine, dxa.t_femoral_neck, dxa.t_total_hip, dxa.t_radius_33pct]
    known = [v for v in values if v is not None]
    return min(known) if known else None


def frax(f: Facts) -> tuple[float | None, float | None]:
    """FRAX (MOF, hip) 10-year percentages, None where unknown."""
    fx = f.patient.frax
    return (fx.mof_10y_pct, fx.hip_10y_pct) if fx else (None, None)


def very_high_reasons(f: Facts) -> list[str]:
    """R-CAT-1 criteria that hold (AACE 2020 very high risk)."""
    fragile = f.fragility_fractures
    reasons = [
        f"fragility fracture within 12 months ({x.site}, {x.when})"
        for x in fragile
        if within_days(x.when, f.today, 365)
    ]
    not_traumatic = [x for x in f.fractures if x.fragility is not False]
    reasons += [f"fracture while on osteoporosis therapy ({x.site})" for x in not_traumatic if x.on_therapy]
    reasons += [
        f"fracture while on long-term glucocorticoids ({x.site})"
        for x in not_traumatic
        if x.on_glucocorticoids
    ]
    if len(fragile) >= 2:
        reasons.append(f"multiple fragility fractures ({len(fragile)})")
    t = lowest_t(f)
    if t is not None and t < -3.0:
        reasons.append(f"T-score {t} < -3.0")
    falls = f.patient.falls
    if falls and ((falls.count_12m or 0) >= 2 or falls.injurious):
        reasons.append("high fall risk (>= 2 falls in 12 months or an injurious fall)")
    mof, hip = frax(f)
    if mof is not None and mof > 30:
        reasons.append(f"FRAX MOF {mof}% > 30%")
    if hip is not None and hip > 4.5:
        reasons.append(f"FRAX hip {hip}% > 4.5%")
    return reasons


def high_reasons(f: Facts) -> list[str]:
    """R-CAT-2 criteria that hold (high risk)."""
    reasons = [f"prior fragility fracture ({x.site})" for x in f.fragility_fractures]
    t = lowest_t(f)
    if t is not None and t <= -2.5:
        reasons.append(f"T-score {t} <= -2.5")
    mof, hip = frax(f)
    osteopenia = t is not None and -2.5 < t <= -1.0
    if osteopenia and ((mof is not None and mof >= 20) or (hip is not None and hip >= 3)):
        reasons.append(f"osteopenia (T {t}) with FRAX MOF {mof}% / hip {hip}% at or above 20% / 3%")
    return reasons


def _missing(f: Facts, reached: RiskCategory) -> Findings:
    """Not-evaluated entries for criteria that lack data and could still raise ``reached``."""
    out = NOTHING
    mof, hip = frax(f)
    missing = [inputs.T_SCORES] if lowest_t(f) is None else []
    missing += [(inputs.FRAX_MOF, inputs.FRAX_HIP)] if mof is None and hip is None else []
    falls = f.patient.falls
    no_count = falls is None or falls.count_12m is None
    if reached != VERY_HIGH:
        for paths in missing + ([(inputs.FALLS_COUNT,)] if no_count else []):
            out += not_evaluated("R-CAT-1", paths)
    if reached == LOW:
        for paths in missing:
            out += not_evaluated("R-CAT-2", paths)
    return out


def aace_level(f: Facts) -> tuple[Level, Findings]:
    """AACE 2020 category (R-CAT-1, R-CAT-2, R-CAT-3); R-CAT-MEN applies the same numbers to men."""
    found = Findings(fired=("R-CAT-MEN",)) if f.sex == "M" else NOTHING
    vh, hi = very_high_reasons(f), high_reasons(f)
    if vh:
        recent = any(r.startswith("fragility fracture within 12 months") for r in vh)
        fired = ("R-CAT-1", "R-DATE-1") if recent else ("R-CAT-1",)
        level, found = Level(VERY_HIGH, tuple(vh)), found + Findings(fired=fired)
    elif hi:
        level, found = Level(HIGH, tuple(hi)), found + Findings(fired=("R-CAT-2",))
    else:
        level, found = Level(LOW, ("no high-risk criterion met",)), found + Findings(fired=("R-CAT-3",))
    return level, found + _missing(f, level.category) + _population_warnings(f)


def _population_warnings(f: Facts) -> Findings:
    """Warn when the patient is outside the populations the criteria were written for."""
    if f.sex == "M" and f.age is not None and f.age < 50:
        return warning("R-CAT-MEN covers men >= 50; the same criteria were applied to a younger man")
    if f.sex == "F" and f.patient.postmenopausal is False:
        return warning("AACE 2020 criteria are for postmenopausal women; applied to a premenopausal woman")
    if f.age is not None and f.age < 19:
        return warning("the rules are written for adults; applied to a patient under 19")
    return NOTHING


def acr_level(f: Facts) -> tuple[Level | None, Findings]:
    """ACR 2022 category for glucocorticoid users (R-CAT-GC); moderate maps to high (R-PREC-3)."""
    gc = f.patient.glucocorticoids
    mof, hip = frax(f)
    t = lowest_t(f)
    vh = [f"prior osteoporotic fracture ({x.site})" for x in f.fragility_fractures]
    vh += [f"T-score {t} <= -3.5"] if t is not None and t <= -3.5 else []
    vh += [f"FRAX MOF {mof}% >= 30%"] if mof is not None and mof >= 30 else []
    vh += [f"FRAX hip {hip}% >= 4.5%"] if hip is not None and hip >= 4.5 else []
    if gc and (gc.prednisone_eq_mg_day or 0) >= 30 and (gc.duration_months or 0) * 365.25 / 12 > 30:
        vh.append("glucocorticoid >= 30 mg/day for > 30 days")
    if gc and (gc.cumulative_g_past_year or 0) >= 5:
        vh.append("glucocorticoid >= 5 g cumulative in a year")
    hi = [f"FRAX MOF {mof}% >= 20%"] if mof is not None and mof >= 20 else []
    hi += [f"FRAX hip {hip}% >= 3%"] if hip is not None and hip >= 3 else []
    hi += [f"T-score {t} <= -2.5"] if t is not None and t <= -2.5 else []
    moderate = (mof is not None and 10 <= mof < 20) or (hip is not None and 1 < hip < 3)
    hi += ["ACR moderate risk (FRAX MOF 10-19% or hip >1 to <3%), treated as high"] if moderate else []
    fired = Findings(fired=("R-CAT-GC", "R-PREC-3"))
    if f.patient.frax and f.patient.frax.gc_adjusted is False:
        fired += warning("FRAX is not glucocorticoid-adjusted; the ACR 2022 category may be underestimated")
    if vh:
        return Level(VERY_HIGH, tuple(f"ACR 2022: {r}" for r in vh)), fired
    if hi:
        return Level(HIGH, tuple(f"ACR 2022: {r}" for r in hi)), fired
    if mof is not None and hip is not None and mof < 10 and hip <= 1:
        return Level(LOW, ("ACR 2022 low risk",)), fired
    gaps = tuple(p for p, v in ((inputs.FRAX_MOF, mof), (inputs.FRAX_HIP, hip)) if v is None)
    return None, fired + not_evaluated("R-CAT-GC", gaps, "the ACR 2022 low and moderate strata cannot be told apart")


def nogg_notes(f: Facts, aace: RiskCategory) -> Findings:
    """R-CAT-1-NOGG and R-PREC-2: NOGG very-high indicators recorded as notes when AACE is not very high."""
    vertebral = [x for x in f.fractures if x.vertebral and x.fragility is not False]
    found = [
        f"vertebral fracture within 2 years ({x.site})"
        for x in vertebral
        if within_days(x.when, f.today, 730)
    ]
    found += [f"{len(vertebral)} vertebral fractures"] if len(vertebral) >= 2 else []
    t = lowest_t(f)
    found += [f"T-score {t} <= -3.5"] if t is not None and t <= -3.5 else []
    gc = f.patient.glucocorticoids
    if gc and gc.current and (gc.prednisone_eq_mg_day or 0) >= 7.5 and (gc.duration_months or 0) >= 3:
        found.append("prednisolone >= 7.5 mg/day for >= 3 months")
    if not found or aace == VERY_HIGH:
        return NOTHING
    text = (
        f"NOGG 2022 very-high indicators present ({'; '.join(found)}): NOGG would consider specialist "
        "referral and parenteral treatment. Recorded only; the category follows AACE 2020 (R-PREC-2)."
    )
    return note(text, "R-CAT-1-NOGG") + Findings(fired=("R-PREC-2",))


def model_level(p: float | None) -> RiskCategory | None:
    """R-MODEL-1: p < 0.03 low, 0.03 <= p < 0.10 high, p >= 0.10 very_high; None without a probability."""
    if p is None:
        return None
    if p >= MODEL_P_VERY_HIGH:
        return VERY_HIGH
    return HIGH if p >= MODEL_P_HIGH else LOW


def final_category(clinical: RiskCategory, model: RiskCategory | None) -> RiskCategory:
    """R-MODEL-2: max(clinical, min(model, clinical + 1)); the clinical category without a model level."""
    if model is None:
        return clinical
    c, m = category_rank(clinical), category_rank(model)
    return category_from_rank(max(c, min(m, c + 1)))


def categorize(f: Facts) -> CategoryResult:
    """Clinical category (AACE, or the higher of AACE and ACR for glucocorticoid users), model and final."""
    aace, found = aace_level(f)
    level = aace
    if f.gc_user:
        acr, acr_found = acr_level(f)
        found += acr_found
        if acr is not None and category_rank(acr.category) > category_rank(aace.category):
            level = acr
    found += nogg_notes(f, aace.category)
    model = model_level(f.ctx.model.p_vertebral_fracture_6m)
    found += _model_findings(level.category, model)
    return CategoryResult(level.category, model, final_category(level.category, model), level.reasons, found)


def _model_findings(clinical: RiskCategory, model: RiskCategory | None) -> Findings:
    """R-MODEL-1/2/3 bookkeeping: fired rules, missing probability, discordance alert and imaging review."""
    if model is None:
        return not_evaluated("R-MODEL-1", (inputs.PROBABILITY,), "the final category is the clinical one")
    found = Findings(fired=("R-MODEL-1", "R-MODEL-2"))
    if abs(category_rank(model) - category_rank(clinical)) >= 2:
        msg = (
            f"The model level ({model.value}) and the clinical level ({clinical.value}) differ by two "
            "levels: "
            "review the images and the data (stale imaging, an unreported deformity)."
        )
        found += alert(AlertKey.MODEL_CLINICAL_DISCORDANCE, msg, "R-MODEL-3") + monitor(
            MonitoringKey.VERTEBRAL_IMAGING,
            "Review the vertebral imaging behind the model (stale imaging, an unreported deformity).",
            "R-MODEL-3",
        )
    return found
