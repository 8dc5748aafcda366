"""Alerts that depend on the settled plan: drug courses, sequence, holidays, administration, BTM.

Each is a small pure function ``(facts, plan) -> Findings``; ``plan.first_line`` is final here (after the
safety exclusions), so "conditional on suggesting X" means ``plan.suggests(X)``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from clinical import inputs
from clinical.category import lowest_t
from clinical.courses import pth_course_limit, romosozumab_course_limit
from clinical.dates import add_months, months_between
from clinical.facts import Course, Facts, treatment_years
from clinical.findings import NOTHING, Findings, alert, monitor, not_evaluated, note, warning
from clinical.sequence import anabolic_uncovered, asks_to_stop, denosumab_course, denosumab_stopped_uncovered
from clinical.treatment import Plan
from clinical.vocabulary import (
    ANABOLICS,
    ANTIRESORPTIVES,
    BISPHOSPHONATES,
    OSTEOPOROSIS_THERAPY,
    AlertKey,
    DrugClass,
    MonitoringKey,
    RiskCategory,
)

D = DrugClass
FollowUpRule = Callable[[Facts, Plan], Findings]
DMAB_OVERDUE_MONTHS = 7.0
BTM_LSC = 0.30
NTX_PREMENOPAUSAL_LOWER_HALF = (17 + 94) / 2
"""R-BTM-0: the middle of the premenopausal urine NTx range 17-94; on treatment aim below it."""
NTX_UPPER = {"M": 83.0, "F_post": 124.0, "F_pre": 94.0}
"""R-BTM-0: ARUP upper reference limits (men; postmenopausal and premenopausal women)."""


def _taking(f: Facts, classes: frozenset[DrugClass]) -> tuple[Course, ...]:
    """Current courses of ``classes``."""
    return f.courses_of(classes, current=True)


def zoledronate_renal_check(f: Facts, plan: Plan) -> Findings:
    """R-REN-4 (monitoring part): measure CrCl before each zoledronic acid dose."""
    if not (plan.suggests(D.IV_BISPHOSPHONATE) or _taking(f, frozenset({D.IV_BISPHOSPHONATE}))):
        return NOTHING
    return monitor(
        MonitoringKey.RENAL_FUNCTION_BEFORE_EACH_ZOLEDRONATE_DOSE,
        "Measure creatinine clearance before each zoledronic acid infusion.",
        "R-REN-4",
    )


def denosumab_ckd(f: Facts, plan: Plan) -> Findings:
    """R-REN-5: denosumab with eGFR < 30 or dialysis: hypocalcaemia risk, CKD-MBD expert, calcium checks.

    The CKD-MBD review alert itself is R-REN-6's, which fires on the same condition for every antiresorptive.
    """
    deferred = D.DENOSUMAB in plan.deferred
    relevant = plan.suggests(D.DENOSUMAB) or deferred or bool(_taking(f, frozenset({D.DENOSUMAB})))
    dialysis = bool(f.patient.history and f.patient.history.dialysis)
    gfr = f.kidney_gfr
    if not relevant:
        return NOTHING
    if gfr is None and not dialysis:
        return not_evaluated("R-REN-5", inputs.gfr_gaps(f.patient))
    if not dialysis and gfr is not None and gfr >= 30:
        return NOTHING
    why = "on dialysis" if dialysis else f"eGFR {gfr} < 30"
    rid = "R-REN-5"
    msg = (
        f"Denosumab {why}: boxed warning for severe hypocalcaemia; evaluate for CKD-MBD first and have the "
        "treatment supervised by a CKD-MBD expert (ckd_mbd_specialist_review, R-REN-6)."
    )
    return alert(AlertKey.DENOSUMAB_CKD_HYPOCALCAEMIA_RISK, msg, rid) + monitor(
        MonitoringKey.SERUM_CALCIUM_MONITORING, "Monitor serum calcium closely on denosumab.", rid
    )


def anabolic_followup(f: Facts, plan: Plan) -> Findings:
    """R-PTH-2: after any anabolic course an antiresorptive is required (R-PROJ-3 puts it in the plan)."""
    suggested = any(plan.proposes(c) for c in ANABOLICS)
    current = bool(_taking(f, ANABOLICS))
    uncovered = anabolic_uncovered(f)
    if not (suggested or current or uncovered):
        return NOTHING
    msg = "An anabolic course must be followed by an antiresorptive (the gains are lost otherwise)."
    if uncovered:
        msg = "A past anabolic course has no antiresorptive after it: start one now. " + msg
    elif current and plan.category.final == RiskCategory.LOW:
        msg = "At low risk the anabolic course ends: follow it with an antiresorptive. " + msg
    return alert(AlertKey.ANABOLIC_FOLLOWUP_ANTIRESORPTIVE, msg, "R-PTH-2")


def denosumab_no_stop(f: Facts, plan: Plan) -> Findings:
    """R-DMAB-1 and R-DMAB-2: never stop denosumab without a transition, timed from the last injection."""
    course = denosumab_course(f)
    if course is not None:
        return _denosumab_current(f, plan, course)
    stop = denosumab_stopped_uncovered(f)
    if stop is None:
        return NOTHING
    last = _last_injection(f, stop)
    return alert(
        AlertKey.DENOSUMAB_NO_STOP,
        f"Denosumab stopped on {stop} with no bisphosphonate after it: rebound bone loss and multiple vertebral "
        f"fractures follow. Start a bisphosphonate (zoledronic acid preferred) now (it was due about "
        f"{add_months(last, 6)}, 6 months after the last injection), or restart denosumab; recheck bone "
        "turnover 3 and 6 months after the switch.",
        "R-DMAB-1",
    )


def _last_injection(f: Facts, stop: date) -> date:
    """The last recorded denosumab injection, else the stop date."""
    doses = [c.med.last_dose for c in f.courses_of(frozenset({D.DENOSUMAB})) if c.med.last_dose]
    return max(doses) if doses else stop


def _denosumab_current(f: Facts, plan: Plan, course: Course) -> Findings:
    """Alerts for a patient taking denosumab now: continue, or a transition timed from the last injection."""
    who = "The patient asks to stop denosumab. " if asks_to_stop(f) else ""
    msg = (
        f"{who}Never stop denosumab without a transition (no drug holiday): stopping causes rebound bone loss "
        f"and multiple vertebral fractures. Continue it, or switch to a bisphosphonate (zoledronic acid "
        f"preferred) {_transition_timing(f, course)}; recheck bone turnover 3 and 6 months after the switch."
    )
    if D.DENOSUMAB in plan.deferred:
        msg += " Correct the deficiency first, then give the next injection on time."
    found = alert(AlertKey.DENOSUMAB_NO_STOP, msg, "R-DMAB-1")
    years = (course.months or 0.0) / 12
    if years >= 5:
        found += note(
            f"{years:.1f} years of denosumab: reassess (5-10 years), but never stop without a transition.",
            "R-DMAB-2",
        )
    return found


def _transition_timing(f: Facts, course: Course) -> str:
    """When the next injection or the first bisphosphonate dose is due (R-DMAB-1: 6 months, overdue after 7)."""
    last = course.med.last_dose
    if last is None:
        return "6 months after the last injection (its date is not given)"
    if months_between(last, f.today) > DMAB_OVERDUE_MONTHS:
        return f"now: the dose is overdue (last injection {last}, more than 7 months ago)"
    return f"at the next due date, about {add_months(last, 6)} (6 months after the last injection on {last})"


def oral_bp_administration(f: Facts, plan: Plan) -> Findings:
    """R-ADM-1: how to take an oral bisphosphonate; required when an administration issue is documented."""
    current = _taking(f, frozenset({D.ORAL_BISPHOSPHONATE}))
    issues = [c.med.administration_issue for c in current if c.med.administration_issue]
    if not (plan.suggests(D.ORAL_BISPHOSPHONATE) or current):
        return NOTHING
    msg = (
        "Take fasting with 6-8 oz (a large glass) of plain water, stay upright at least 30 minutes (60 for "
        "ibandronate) before food, drink or other drugs; keep 1-2 hours apart from dairy and calcium."
    )
    if issues:
        msg = f"Administration issue documented ({'; '.join(issues)}). " + msg
    return alert(AlertKey.ORAL_BP_ADMINISTRATION_RULES, msg, "R-ADM-1")


def fracture_on_therapy(f: Facts, plan: Plan) -> Findings:
    """R-FX-1: fracture while on therapy: check adherence, administration, secondary causes; escalate."""
    sites = [x.site for x in f.fractures if x.on_therapy and x.fragility is not False]
    if not sites:
        return NOTHING
    return alert(
        AlertKey.FRACTURE_ON_THERAPY,
        f"Fracture on therapy ({', '.join(sites)}): check adherence, "
        "administration and secondary causes; escalate treatment.",
        "R-FX-1",
    )


def holiday(f: Facts, plan: Plan) -> Findings:
    """R-HOL-1/2/3: reassess long bisphosphonate courses; holiday monitoring; a fracture ends a holiday."""
    if f.on_holiday:
        return _on_holiday(f, plan)
    courses = [c for c in _taking(f, BISPHOSPHONATES)]
    if not courses or _taking(f, frozenset({D.DENOSUMAB})):
        return NOTHING
    return _reassess_bp(f, plan, max(courses, key=treatment_years))


def _on_holiday(f: Facts, plan: Plan) -> Findings:
    """R-HOL-3 (a fracture during the holiday ends it), R-HOL-2 (a risk change ends it; else reassess 2-4 y)."""
    start = f.holiday_start
    late = [x.site for x in f.fractures if x.when and start and x.when > start]
    if late:
        return alert(
            AlertKey.END_DRUG_HOLIDAY,
            f"Fracture during the holiday ({', '.join(late)}): end the holiday and restart treatment.",
            "R-HOL-3",
        )
    final = plan.category.final
    if final != RiskCategory.LOW:
        return note(
            f"On a bisphosphonate holiday since {start}, but the risk is now {final.value}: the holiday ends; "
            "restart treatment (first_line).",
            "R-HOL-2",
        )
    return _holiday_reassessment(f"On a bisphosphonate holiday since {start}")


def _holiday_reassessment(opening: str) -> Findings:
    """R-HOL-2: reassess every 2-4 years during a holiday; restart earlier on a change."""
    return monitor(
        MonitoringKey.REASSESS_ON_HOLIDAY_2_TO_4Y,
        f"{opening}: reassess every 2-4 years; restart earlier if BMD falls, a fracture occurs or risk changes.",
        "R-HOL-2",
    )


def _reassess_bp(f: Facts, plan: Plan, course: Course) -> Findings:
    """R-HOL-1 for a current bisphosphonate course."""
    iv = course.drug_class == D.IV_BISPHOSPHONATE
    years = treatment_years(course)
    threshold = 3.0 if iv else 5.0
    window = not iv and 3.0 <= years < threshold
    if years < threshold and not window:
        return NOTHING
    blockers = _holiday_blockers(f, plan)
    route = "IV" if iv else "oral"
    if blockers:
        limit = "6 years IV" if iv else "10 years oral"
        return note(
            f"{years:.1f} years of {route} bisphosphonate: reassess; not holiday-eligible "
            f"({'; '.join(blockers)}); continue up to {limit}.",
            "R-HOL-1",
        )
    extra = " (3-5 year label window: optional)" if window else ""
    return alert(
        AlertKey.DRUG_HOLIDAY_ELIGIBLE,
        f"{years:.1f} years of {route} bisphosphonate at low risk: a "
        f"bisphosphonate holiday may be considered{extra}; reassess every 2-4 years.",
        "R-HOL-1",
    ) + _holiday_reassessment("If the holiday is taken")


def _holiday_blockers(f: Facts, plan: Plan) -> list[str]:
    """The R-HOL-1 holiday criteria that fail or cannot be checked."""
    dxa = f.patient.dxa
    hip_t = [t for t in ((dxa.t_total_hip, dxa.t_femoral_neck) if dxa else ()) if t is not None]
    checks = {
        f"category {plan.category.final.value}": plan.category.final != RiskCategory.LOW,
        "age unknown or >= 75": f.age is None or f.age >= 75,
        "prior hip or vertebral fracture": any(x.vertebral or x.site == "hip" for x in f.fractures),
        "fracture on therapy": any(x.on_therapy for x in f.fractures),
        "glucocorticoid dose unknown or prednisolone >= 7.5 mg/day": _prednisolone_blocks(f),
        "hip/femoral-neck T-score unknown or <= -2.5": not hip_t or min(hip_t) <= -2.5,
    }
    return [reason for reason, fails in checks.items() if fails]


def _prednisolone_blocks(f: Facts) -> bool:
    """R-HOL-1 needs prednisolone < 7.5 mg/day: unknown use or an unknown current dose blocks the holiday."""
    gc = f.patient.glucocorticoids
    if gc is None or gc.current is None:
        return True
    if not gc.current:
        return False
    return gc.prednisone_eq_mg_day is None or gc.prednisone_eq_mg_day >= 7.5


def atypical_femur(f: Facts, plan: Plan) -> Findings:
    """R-AFF-1: thigh or groin pain on a bisphosphonate or denosumab: evaluate for atypical fracture."""
    symptoms = f.patient.symptoms
    exposed = _taking(f, BISPHOSPHONATES | {D.DENOSUMAB}) or f.on_holiday
    if not (symptoms and symptoms.thigh_or_groin_pain and exposed):
        return NOTHING
    return alert(
        AlertKey.ATYPICAL_FEMUR_FRACTURE_EVALUATE,
        "Thigh or groin pain on antiresorptive therapy: image both femurs for an atypical femoral fracture.",
        "R-AFF-1",
    )


def btm_response(f: Facts, plan: Plan) -> Findings:
    """R-BTM-1: urine NTx fall < 30% after >= 3 months on an antiresorptive: inadequate response."""
    labs = f.patient.labs
    started = [c for c in _taking(f, ANTIRESORPTIVES) if c.months is not None and c.months >= 3]
    if not started or labs is None or labs.urine_ntx_nmol_bce_per_mmol_cr is None:
        return NOTHING
    if labs.urine_ntx_baseline is None:
        return not_evaluated("R-BTM-1", (inputs.NTX_BASELINE,))
    if labs.urine_ntx_baseline == 0:
        return warning("baseline urine NTx is 0: R-BTM-1 cannot compute the fall from baseline")
    fall = (labs.urine_ntx_baseline - labs.urine_ntx_nmol_bce_per_mmol_cr) / labs.urine_ntx_baseline
    if fall >= BTM_LSC:
        return NOTHING
    return alert(
        AlertKey.BTM_INADEQUATE_RESPONSE,
        f"Urine NTx fell {fall:.0%} from baseline (< 30%) after >= 3 "
        "months of antiresorptive: check adherence and administration.",
        "R-BTM-1",
    )


def btm_reference(f: Facts, plan: Plan) -> Findings:
    """R-BTM-0 and R-BTM-2: notes on NTx against the reference range (never a category criterion)."""
    labs = f.patient.labs
    ntx = labs.urine_ntx_nmol_bce_per_mmol_cr if labs else None
    if ntx is None:
        return NOTHING
    found = NOTHING
    if _taking(f, ANTIRESORPTIVES) and ntx > NTX_PREMENOPAUSAL_LOWER_HALF:
        found += note(
            f"Urine NTx {ntx} on treatment is above the lower half of the premenopausal range "
            f"(< {NTX_PREMENOPAUSAL_LOWER_HALF:g}).",
            "R-BTM-0",
        )
    upper = _ntx_upper(f)
    if upper is not None and ntx > upper:
        found += note(
            f"Urine NTx {ntx} is above the reference range (<= {upper:g}): high turnover predicts faster "
            "bone loss; informs the assessment, not the category.",
            "R-BTM-2",
        )
    return found


def _ntx_upper(f: Facts) -> float | None:
    """The R-BTM-0 upper reference limit for this patient, or None when sex is unknown."""
    if f.sex == "M":
        return NTX_UPPER["M"]
    if f.sex == "F":
        return NTX_UPPER["F_pre"] if f.patient.postmenopausal is False else NTX_UPPER["F_post"]
    return None


def osteoporosis_diagnosis(f: Facts, plan: Plan) -> Findings:
    """R-CAT-DX: a diagnosis by T <= -2.5 persists; the category uses current values."""
    t = lowest_t(f)
    treated = bool(f.courses_of(OSTEOPOROSIS_THERAPY))
    if t is None or not (t <= -2.5 or treated):
        return NOTHING
    if t <= -2.5:
        text = f"Osteoporosis by T-score (lowest T {t} <= -2.5): the diagnosis persists even if the T-score improves"
    else:
        text = f"On osteoporosis therapy, lowest T now {t}: an osteoporosis diagnosed earlier by T <= -2.5 persists"
    return note(text + "; the risk category is recomputed from current values.", "R-CAT-DX")


FOLLOW_UP_RULES: tuple[FollowUpRule, ...] = (
    zoledronate_renal_check,
    denosumab_ckd,
    anabolic_followup,
    pth_course_limit,
    romosozumab_course_limit,
    denosumab_no_stop,
    oral_bp_administration,
    fracture_on_therapy,
    holiday,
    atypical_femur,
    btm_response,
    btm_reference,
    osteoporosis_diagnosis,
)
"""Drug-course rules, run after ``first_line`` is settled."""
