"""Nutrition, red flags, imaging and monitoring rules (RULES.md sections 5, 7, 9, 10; source document).

Each is a small pure function ``(facts, plan) -> Findings``.
"""

from __future__ import annotations

from collections.abc import Callable

from clinical import inputs
from clinical.category import lowest_t
from clinical.dates import within_days
from clinical.facts import Facts
from clinical.findings import NOTHING, Findings, alert, monitor, not_evaluated, note, warning
from clinical.intake import (
    VITAMIN_D_MIN_IU_AGE_50,
    VITAMIN_D_UL_IU,
    calcium_rda_mg,
    calcium_ul_mg,
    parse_vitamin_d_regimen,
)
from clinical.treatment import Plan
from clinical.vocabulary import (
    BISPHOSPHONATES,
    OSTEOPOROSIS_THERAPY,
    AlertKey,
    DrugClass,
    MonitoringKey,
    RedFlag,
    RiskCategory,
)

ScreeningRule = Callable[[Facts, Plan], Findings]
LOW, HIGH, VERY_HIGH = RiskCategory.LOW, RiskCategory.HIGH, RiskCategory.VERY_HIGH
ACID_SUPPRESSANTS = frozenset(
    {
        "omeprazole",
        "esomeprazole",
        "lansoprazole",
        "dexlansoprazole",
        "pantoprazole",
        "rabeprazole",
        "famotidine",
        "ranitidine",
        "cimetidine",
        "nizatidine",
        "ppi",
        "proton_pump_inhibitor",
    }
)
HEIGHT_LOSS_CM = {"F": (2.0, 4.0), "M": (3.0, 6.0)}
"""R-RF-2: (prospective, historical) height-loss thresholds in cm, strictly above."""


def calcium(f: Facts, plan: Plan) -> Findings:
    """R-CAL-1 (below the RDA) and R-CAL-2 (above the UL; exactly at the UL does not alert); R-PREC-4."""
    intake = f.patient.intake
    parts = {
        inputs.CALCIUM_DIET: intake.calcium_diet_mg_day if intake else None,
        inputs.CALCIUM_SUPPLEMENT: intake.calcium_supplement_mg_day if intake else None,
    }
    known = sum(v for v in parts.values() if v is not None)
    gaps = tuple(p for p, v in parts.items() if v is None)
    return _calcium_upper(f, known, gaps) + _calcium_below(f, known, gaps)


def _calcium_upper(f: Facts, known: float, gaps: tuple[str, ...]) -> Findings:
    """R-CAL-2: total calcium above the age's UL; a partial total already above it is enough."""
    if f.age is None:
        return not_evaluated("R-CAL-2", (inputs.AGE, *gaps))
    ul = calcium_ul_mg(f.age)
    if known > ul:
        return alert(
            AlertKey.CALCIUM_OVER_UPPER_LIMIT,
            f"Total calcium {known:g} mg/day is above the upper "
            f"limit of {ul:g} mg/day (kidney stones, hypercalcaemia).",
            "R-CAL-2",
        ) + _supervised(f)
    return not_evaluated("R-CAL-2", gaps) if gaps else NOTHING


def _calcium_below(f: Facts, known: float, gaps: tuple[str, ...]) -> Findings:
    """R-CAL-1: total calcium below the RDA for age and sex; a partial total already at the RDA is enough."""
    if f.age is None or f.sex not in ("F", "M"):
        who = tuple(p for p, v in ((inputs.AGE, f.age), (inputs.SEX, f.sex)) if v is None)
        return not_evaluated("R-CAL-1", (*who, *gaps))
    rda = calcium_rda_mg(f.age, "F" if f.sex == "F" else "M")
    if known >= rda:
        return NOTHING
    if gaps:
        return not_evaluated("R-CAL-1", gaps)
    return alert(
        AlertKey.CALCIUM_BELOW_RECOMMENDED,
        f"Total calcium {known:g} mg/day is below the "
        f"recommended {rda:g} mg/day (diet first, then supplements).",
        "R-CAL-1",
    )


def _supervised(f: Facts) -> Findings:
    """R-PREC-4: an upper-limit alert is not suppressed for an intentional regimen."""
    intake = f.patient.intake
    if intake is None or not intake.vitamin_d_regimen:
        return Findings(fired=("R-PREC-4",))
    return note(
        "An upper-limit alert stands even for intentional supervised repletion; acknowledge it.", "R-PREC-4"
    )


def vitamin_d_intake(f: Facts, plan: Plan) -> Findings:
    """R-VITD-1 (below 800 IU/day at age >= 50) and R-VITD-2 (average above 4000 IU/day); R-PREC-4."""
    intake = f.patient.intake
    daily = intake.vitamin_d_iu_day if intake else None
    regimen, found = _regimen_daily(f)
    if daily is None and regimen is None:
        text = intake.vitamin_d_regimen if intake else None
        gaps = (inputs.VITAMIN_D_INTAKE,) if text else (inputs.VITAMIN_D_INTAKE, inputs.VITAMIN_D_REGIMEN)
        why = "the regimen could not be read" if text else None
        return found + not_evaluated("R-VITD-1", gaps, why) + not_evaluated("R-VITD-2", gaps, why)
    average = max(v for v in (daily, regimen) if v is not None)
    if average > VITAMIN_D_UL_IU:
        found += alert(
            AlertKey.VITAMIN_D_OVER_UPPER_LIMIT,
            f"Average vitamin D intake {average:.0f} IU/day is above "
            "the upper limit of 4000 IU/day (hypercalcaemia).",
            "R-VITD-2",
        ) + _supervised(f)
    if f.age is None:
        return found + not_evaluated("R-VITD-1", (inputs.AGE,))
    if f.age >= 50 and average < VITAMIN_D_MIN_IU_AGE_50:
        found += alert(
            AlertKey.VITAMIN_D_BELOW_RECOMMENDED,
            f"Vitamin D intake {average:.0f} IU/day is below the "
            "recommended 800-1000 IU/day (source document: D3 800-2000 IU).",
            "R-VITD-1",
        )
    return found


def _regimen_daily(f: Facts) -> tuple[float | None, Findings]:
    """The average daily dose of ``intake.vitamin_d_regimen``, with a warning when it cannot be parsed."""
    intake = f.patient.intake
    text = intake.vitamin_d_regimen if intake else None
    if not text:
        return None, NOTHING
    daily = parse_vitamin_d_regimen(text)
    if daily is None:
        return None, warning(
            f"vitamin D regimen {text!r} could not be parsed; R-VITD-2 used the daily intake only"
        )
    return daily, note(f"Vitamin D regimen {text!r} read as {daily:.0f} IU/day on average.", "R-VITD-2")


def red_flags_of(f: Facts) -> list[str]:
    """R-RF-1 red flags: the given keys, plus a cancer history with new back pain (``history.cancer``)."""
    symptoms = f.patient.symptoms
    flags = list(symptoms.red_flags) if symptoms else []
    cancer = bool(f.patient.history and f.patient.history.cancer)
    derived = RedFlag.CANCER_HISTORY_WITH_NEW_BACK_PAIN.value
    if cancer and _new_back_pain(f) and derived not in flags:
        flags.append(derived)
    return flags


def _new_back_pain(f: Facts) -> bool:
    """True when ``symptoms.back_pain`` says the pain is new (new, acute, sudden, recent)."""
    symptoms = f.patient.symptoms
    back_pain = (symptoms.back_pain or "").strip().lower() if symptoms else ""
    return back_pain.startswith(("new", "acute", "sudden", "recent"))


def red_flags(f: Facts, plan: Plan) -> Findings:
    """R-RF-1: any red flag needs urgent evaluation; unrecognised keys still count and are reported."""
    flags = red_flags_of(f)
    if f.patient.symptoms is None:
        return not_evaluated("R-RF-1", (inputs.SYMPTOMS,))
    if not flags:
        return NOTHING
    known = {r.value for r in RedFlag}
    found = NOTHING
    for flag in flags:
        found += (
            NOTHING
            if flag in known
            else warning(f"red flag {flag!r} is not recognised; treated as a red flag")
        )
    msg = f"Red flags ({', '.join(flags)}): urgent evaluation (fracture, malignancy, infection, cord lesion)."
    return (
        found
        + alert(AlertKey.RED_FLAG_URGENT, msg, "R-RF-1")
        + monitor(MonitoringKey.URGENT_CLINICAL_REVIEW, "Urgent clinical review.", "R-RF-1")
        + monitor(
            MonitoringKey.VERTEBRAL_IMAGING, "Spine imaging as part of the urgent evaluation.", "R-RF-1"
        )
    )


def height_loss(f: Facts, plan: Plan) -> Findings:
    """R-RF-2: vertebral imaging for height loss above the thresholds, new back pain or posture change."""
    reasons = _height_reasons(f)
    hl = f.patient.height_loss_cm
    found = NOTHING
    if hl is None or (hl.prospective is None and hl.historical is None):
        found += not_evaluated("R-RF-2", inputs.HEIGHT_LOSS)
    elif f.sex is None:
        found += not_evaluated("R-RF-2", (inputs.SEX,), "the height-loss thresholds differ by sex")
    if not reasons:
        return found
    msg = f"Vertebral imaging indicated ({'; '.join(reasons)})."
    return (
        found
        + alert(AlertKey.VERTEBRAL_IMAGING_INDICATED, msg, "R-RF-2")
        + monitor(
            MonitoringKey.VERTEBRAL_IMAGING, "Vertebral imaging (lateral spine X-ray or VFA).", "R-RF-2"
        )
    )


def _height_reasons(f: Facts) -> list[str]:
    """The R-RF-2 criteria that hold."""
    hl, symptoms = f.patient.height_loss_cm, f.patient.symptoms
    reasons = []
    if hl and f.sex in HEIGHT_LOSS_CM:
        prospective, historical = HEIGHT_LOSS_CM[f.sex]
        reasons += (
            [f"prospective height loss {hl.prospective} cm > {prospective:g}"]
            if (hl.prospective is not None and hl.prospective > prospective)
            else []
        )
        reasons += (
            [f"historical height loss {hl.historical} cm > {historical:g}"]
            if (hl.historical is not None and hl.historical > historical)
            else []
        )
    if _new_back_pain(f):
        reasons.append(f"new back pain ({symptoms.back_pain if symptoms else ''})")
    if symptoms and symptoms.posture_change:
        reasons.append("posture change")
    return reasons


def sudden_height_loss(f: Facts, plan: Plan) -> Findings:
    """Source document: seek medical attention for sudden height loss > 2 cm (any sex)."""
    hl = f.patient.height_loss_cm
    if hl is None or hl.prospective is None or hl.prospective <= 2.0:
        return NOTHING
    return monitor(
        MonitoringKey.URGENT_CLINICAL_REVIEW,
        f"Height loss of {hl.prospective} cm (> 2 cm): prompt clinical review (source document).",
        "SRC-URGENT",
    )


def vertebral_augmentation(f: Facts, plan: Plan) -> Findings:
    """R-VA-1: vertebroplasty/kyphoplasty for a recent vertebral fracture with severe pain.

    Only despite optimal pain management (never before an analgesic trial).
    """
    symptoms = f.patient.symptoms
    recent = [x for x in f.fractures if x.vertebral and within_days(x.when, f.today, 365)]
    if not recent or not (symptoms and symptoms.severe_pain_despite_optimal_analgesia):
        return NOTHING
    return alert(
        AlertKey.VERTEBRAL_AUGMENTATION_CONSIDER,
        f"Severe ongoing pain after a recent vertebral fracture "
        f"({recent[0].site}) despite optimal pain management: vertebroplasty or kyphoplasty may be "
        "considered if examination and imaging confirm an unhealed fracture.",
        "R-VA-1",
    )


def dxa_needed(f: Facts, plan: Plan) -> Findings:
    """R-CT-1 (L1 <= 110 HU, no DXA in 2 years); no DXA at all: R-CAT-3 at low risk, else the monitoring baseline."""
    dxa = f.patient.dxa
    recent = dxa is not None and within_days(dxa.date, f.today, 730)
    imaging = f.patient.imaging
    hu = imaging.l1_trabecular_hu if imaging else None
    if hu is not None and hu <= 110 and not recent:
        return monitor(
            MonitoringKey.DXA_RECOMMENDED,
            f"L1 trabecular attenuation {hu:g} HU (<= 110 HU, >90% "
            "specific for osteoporosis) and no DXA in the past 2 years: arrange a DXA.",
            "R-CT-1",
        )
    if lowest_t(f) is not None:
        return NOTHING
    if plan.category.final == LOW:
        return monitor(MonitoringKey.DXA_RECOMMENDED, "No DXA T-score available: measure BMD.", "R-CAT-3")
    return monitor(
        MonitoringKey.DXA_RECOMMENDED,
        "No DXA T-score available: measure BMD as the baseline for treatment monitoring.",
        "R-MON-DXA-BASELINE",
    )


def genant_note(f: Facts, plan: Plan) -> Findings:
    """R-GEN-1: grade >= 2 or >= 2 vertebral fractures is 'severe or multiple' in ES wording."""
    vertebral = [x for x in f.fractures if x.vertebral]
    severe = [x for x in vertebral if (x.grade or 0) >= 2]
    if not severe and len(vertebral) < 2:
        return NOTHING
    return note(
        f"Severe or multiple vertebral fractures (ES wording): {len(vertebral)} vertebral, "
        f"{len(severe)} of Genant grade >= 2.",
        "R-GEN-1",
    )


def falls(f: Facts, plan: Plan) -> Findings:
    """R-CAT-1 high fall risk: fall-risk intervention; any fall in 12 months: fall-risk assessment."""
    record = f.patient.falls
    if record is None or (record.count_12m is None and record.injurious is None):
        return NOTHING
    found = NOTHING
    if (record.count_12m or 0) >= 2 or record.injurious:
        found += alert(
            AlertKey.FALL_RISK_INTERVENTION,
            "High fall risk (>= 2 falls in 12 months or an injurious "
            "fall): balance training, home hazards, vision, medications.",
            "R-CAT-1",
        )
    if (record.count_12m or 0) >= 1 or record.injurious:
        found += monitor(MonitoringKey.FALL_RISK_ASSESSMENT, "Fall-risk assessment.", "R-MON-FALLS")
    return found


def bone_protection(f: Facts, plan: Plan) -> Findings:
    """R-CAT-GC and source document: glucocorticoid and acid-suppressant users start bone protection early."""
    found = NOTHING
    if f.gc_user:
        gc = f.patient.glucocorticoids
        dose = (gc.prednisone_eq_mg_day if gc else None) or 0.0
        found += alert(
            AlertKey.GLUCOCORTICOID_INDUCED_OSTEOPOROSIS,
            f"Long-term glucocorticoids ({dose:g} mg/day "
            "prednisone-equivalent): glucocorticoid-induced osteoporosis risk; ACR 2022 categories "
            "applied; start bone protection early.",
            "R-CAT-GC",
        )
    acid = [
        m.drug
        for m in f.patient.medications
        if m.drug and m.drug.strip().lower() in ACID_SUPPRESSANTS and m.stop is None
    ]
    if acid:
        found += note(
            f"Acid suppressant ({', '.join(acid)}): start bone protection early (source document).",
            "SRC-BONE-PROTECT",
        )
    return found


def monitoring(f: Facts, plan: Plan) -> Findings:
    """RULES.md section 10: the category-driven monitoring keys."""
    final = plan.category.final
    found = NOTHING
    if final in (HIGH, VERY_HIGH):
        found += monitor(
            MonitoringKey.REASSESS_6M,
            "Re-score and review at 6 months (the model horizon); if risk "
            "has not improved after 6 months of treatment, adjust the regimen.",
            "R-MON-REASSESS-6M",
        )
        found += Findings(fired=("SRC-REASSESS",))
        found += monitor(MonitoringKey.DXA_EVERY_1_TO_2Y, "DXA every 1-2 years.", "R-MON-DXA")
    if final == VERY_HIGH:
        found += monitor(
            MonitoringKey.SPECIALIST_REFERRAL_CONSIDER, "Consider specialist referral.", "R-MON-SPECIALIST"
        )
    if final == LOW and not f.on_holiday:
        found += monitor(
            MonitoringKey.REASSESS_FRACTURE_RISK_WITHIN_5Y,
            "Reassess fracture risk within 5 years.",
            "R-MON-LOW-5Y",
        )
    if final == LOW and f.sex == "F" and f.age is not None and f.age > 50:
        found += monitor(
            MonitoringKey.DXA_EVERY_1_TO_2Y,
            "DXA every 2 years for women over 50 (source document).",
            "SRC-DXA-2Y",
        )
    if plan.suggests(DrugClass.ROMOSOZUMAB):
        found += monitor(
            MonitoringKey.CV_RISK_REVIEW, "Review cardiovascular risk before romosozumab.", "R-MON-CV"
        )
    return found + _btm_recheck(f, plan) + _renal_recheck(f, plan)


def _btm_recheck(f: Facts, plan: Plan) -> Findings:
    """btm_recheck_3_to_6m: starting, switching or correcting how therapy is taken; eGFR >= 30; nothing pending.

    eGFR is read as the lower of eGFR and CrCl (R-REN-0). Pending: a deficiency to correct (a deferred class),
    an urgent work-up (a red flag) or a CKD-MBD work-up (dialysis).
    """
    change = _therapy_change(f, plan)
    if change is None or _pending(f, plan):
        return NOTHING
    gfr = f.kidney_gfr
    if gfr is None:
        return not_evaluated("R-MON-BTM", inputs.gfr_gaps(f.patient), "the recheck needs eGFR >= 30")
    if gfr < 30:
        return NOTHING
    return monitor(
        MonitoringKey.BTM_RECHECK_3_TO_6M,
        f"Recheck a bone turnover marker (serum CTX/P1NP or urine NTx) 3-6 months after {change}.",
        "R-MON-BTM",
    )


def _therapy_change(f: Facts, plan: Plan) -> str | None:
    """What the plan changes now: starting or switching to its preferred drug, or correcting administration."""
    drugs = [c for c in plan.first_line if c != DrugClass.LIFESTYLE_CALCIUM_VITD]
    taking = f.current_classes & OSTEOPOROSIS_THERAPY
    if drugs and drugs[0] not in taking:
        verb = "switching to" if taking else "starting"
        return f"{verb} {drugs[0].value.replace('_', ' ')}"
    oral = f.courses_of(frozenset({DrugClass.ORAL_BISPHOSPHONATE}), current=True)
    if drugs and drugs[0] == DrugClass.ORAL_BISPHOSPHONATE and any(c.med.administration_issue for c in oral):
        return "correcting how the oral bisphosphonate is taken"
    return None


def _pending(f: Facts, plan: Plan) -> bool:
    """True when a correction or a work-up comes before the therapy (no BTM recheck yet)."""
    dialysis = bool(f.patient.history and f.patient.history.dialysis)
    return bool(plan.deferred) or bool(red_flags_of(f)) or dialysis


def _renal_recheck(f: Facts, plan: Plan) -> Findings:
    """Renal function every 6 months on a bisphosphonate (source document; R-MON-RENAL-6M for CrCl 30-45)."""
    on_bp = bool(f.courses_of(BISPHOSPHONATES, current=True))
    suggested = any(plan.suggests(c) for c in BISPHOSPHONATES)
    band = f.crcl is not None and 30 <= f.crcl <= 45
    if on_bp or (suggested and band):
        rule_id = "R-MON-RENAL-6M" if band else "SRC-RENAL-6M"
        return monitor(
            MonitoringKey.RENAL_RECHECK_6M,
            "Check renal function every 6 months on a bisphosphonate; adjust by creatinine clearance.",
            rule_id,
        )
    return NOTHING


SCREENING_RULES: tuple[ScreeningRule, ...] = (
    calcium,
    vitamin_d_intake,
    red_flags,
    height_loss,
    sudden_height_loss,
    vertebral_augmentation,
    dxa_needed,
    genant_note,
    falls,
    bone_protection,
    monitoring,
)
"""Nutrition, red-flag, imaging and monitoring rules, run after ``first_line`` is settled."""
