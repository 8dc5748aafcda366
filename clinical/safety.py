"""Safety exclusions (RULES.md section 4): each a small pure function ``(facts, plan) -> Findings``.

These run before ``first_line`` is settled: whatever they avoid or defer never reaches ``first_line``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from clinical import inputs
from clinical.courses import pth_cap, romosozumab_doses
from clinical.dates import within_days
from clinical.facts import Facts
from clinical.findings import NOTHING, Deferral, Findings, alert, avoid, monitor, not_evaluated, note
from clinical.treatment import Plan
from clinical.vocabulary import (
    ANTIRESORPTIVES,
    BISPHOSPHONATES,
    AlertKey,
    Drug,
    DrugClass,
    MonitoringKey,
)

D = DrugClass
HYPOCALCAEMIA_MG_DL = 8.5
VITAMIN_D_DEFICIENT_NG_ML = 20.0
VITAMIN_D_TARGET_NG_ML = 30.0
ALP_ULN_DEFAULT_U_L = 130.0
"""Typical adult ALP upper reference limit, used for R-PTH-3 when the lab's own limit is not given."""
_SKELETAL_MALIGNANCY = re.compile(
    r"bone\s+metast|skeletal\s+metast|osseous\s+metast|metasta\w*\s+to\s+(the\s+)?bone|osteosarcoma|"
    r"chondrosarcoma|ewing|myeloma|bone\s+(cancer|tumou?r|sarcoma)",
    re.IGNORECASE,
)

SafetyRule = Callable[[Facts, Plan], Findings]


def renal_crcl(f: Facts, plan: Plan) -> Findings:
    """R-REN-0: note a computed CrCl and an eGFR/CrCl disagreement across the drug cut-offs."""
    found = NOTHING
    if f.crcl_source == "cockcroft_gault":
        found += note(f"CrCl {f.crcl} mL/min computed by Cockcroft-Gault (actual weight).", "R-REN-0")
    if f.crcl is not None and f.egfr is not None and min(f.crcl, f.egfr) < 35 <= max(f.crcl, f.egfr):
        found += note(
            f"eGFR {f.egfr} and CrCl {f.crcl} fall on different sides of a renal cut-off; the drug "
            "cut-offs use CrCl and the CKD rules the lower value.",
            "R-REN-0",
        )
    return found


def _crcl_below(f: Facts, rule_id: str, limit: float, drugs: tuple[Drug, ...], what: str) -> Findings:
    """Exclude ``drugs`` when CrCl < ``limit`` (exactly at the limit is allowed)."""
    if f.crcl is None:
        return not_evaluated(rule_id, inputs.crcl_gaps(f.patient))
    if f.crcl >= limit:
        return NOTHING
    reason = f"CrCl {f.crcl} mL/min < {limit:g}: {what}"
    return avoid(drugs, reason, rule_id) + alert(AlertKey.RENAL_CONTRAINDICATION, reason, rule_id)


def renal_alendronate(f: Facts, plan: Plan) -> Findings:
    """R-REN-1: alendronate not recommended if CrCl < 35 mL/min."""
    return _crcl_below(f, "R-REN-1", 35, (Drug.ALENDRONATE,), "alendronate is not recommended")


def renal_risedronate_ibandronate(f: Facts, plan: Plan) -> Findings:
    """R-REN-2/3: risedronate and ibandronate not recommended if CrCl < 30 mL/min."""
    return _crcl_below(
        f,
        "R-REN-2/3",
        30,
        (Drug.RISEDRONATE, Drug.IBANDRONATE),
        "risedronate and ibandronate are not recommended",
    )


def renal_zoledronate(f: Facts, plan: Plan) -> Findings:
    """R-REN-4: zoledronic acid contraindicated if CrCl < 35 mL/min or acute renal impairment."""
    history = f.patient.history
    if history and history.acute_renal_impairment:
        reason = "acute renal impairment: zoledronic acid is contraindicated"
        return avoid((Drug.ZOLEDRONIC_ACID,), reason, "R-REN-4") + alert(
            AlertKey.RENAL_CONTRAINDICATION, reason, "R-REN-4"
        )
    return _crcl_below(f, "R-REN-4", 35, (Drug.ZOLEDRONIC_ACID,), "zoledronic acid is contraindicated")


def ckd_g4_5(f: Facts, plan: Plan) -> Findings:
    """R-REN-6: CKD G4-5D (GFR < 30 or dialysis): CKD-MBD specialist work-up before antiresorptives."""
    gfr, dialysis = f.kidney_gfr, bool(f.patient.history and f.patient.history.dialysis)
    if gfr is None and not dialysis:
        return not_evaluated("R-REN-6", inputs.gfr_gaps(f.patient))
    if not dialysis and gfr is not None and gfr >= 30:
        return NOTHING
    stage = "dialysis (G5D)" if dialysis else f"GFR {gfr} < 30 (G4-5)"
    msg = f"CKD {stage}: specialist CKD-MBD work-up (a bone biopsy may be considered) before antiresorptives."
    return alert(AlertKey.CKD_MBD_SPECIALIST_REVIEW, msg, "R-REN-6")


def _defer(classes: frozenset[DrugClass], reason: str, rule_id: str) -> Findings:
    """Defer ``classes`` until a deficiency is corrected."""
    return Findings(fired=(rule_id,), deferred=tuple(Deferral(c, reason, rule_id) for c in sorted(classes)))


def hypocalcaemia(f: Facts, plan: Plan) -> Findings:
    """R-CA-1: corrected calcium < 8.5 mg/dL: correct before bisphosphonates, denosumab, romosozumab."""
    labs = f.patient.labs
    ca = labs.serum_calcium_corrected_mg_dl if labs else None
    if ca is None:
        return not_evaluated("R-CA-1", (inputs.CALCIUM_SERUM,))
    if ca >= HYPOCALCAEMIA_MG_DL:
        return NOTHING
    classes = BISPHOSPHONATES | {D.DENOSUMAB, D.ROMOSOZUMAB}
    reason = f"corrected calcium {ca} mg/dL < {HYPOCALCAEMIA_MG_DL}: correct hypocalcaemia first"
    found = avoid(tuple(sorted(classes)), reason + " (until corrected)", "R-CA-1") + _defer(
        classes, reason, "R-CA-1"
    )
    found += alert(AlertKey.HYPOCALCAEMIA_CORRECT_FIRST, reason + " before these drugs.", "R-CA-1")
    return found + monitor(
        MonitoringKey.SERUM_CALCIUM_CORRECT_AND_RECHECK,
        "Correct calcium and recheck before starting.",
        "R-CA-1",
    )


def vitamin_d_deficiency(f: Facts, plan: Plan) -> Findings:
    """R-VD-1: 25(OH)D < 20 ng/mL: treat before antiresorptives or romosozumab; long-term target >= 30."""
    labs = f.patient.labs
    vd = labs.vitamin_d_25oh_ng_ml if labs else None
    if vd is None:
        return not_evaluated("R-VD-1", (inputs.VITAMIN_D_LEVEL,))
    if vd >= VITAMIN_D_DEFICIENT_NG_ML:
        below_target = vd < VITAMIN_D_TARGET_NG_ML
        return (
            note(f"25(OH)D {vd} ng/mL is below the long-term target of 30.", "R-VD-1")
            if below_target
            else NOTHING
        )
    classes = ANTIRESORPTIVES | {D.ROMOSOZUMAB}
    reason = f"25(OH)D {vd} ng/mL < 20: treat vitamin D deficiency first"
    found = _defer(classes, reason, "R-VD-1")
    found += alert(AlertKey.VITAMIN_D_DEFICIENCY_CORRECT_FIRST, reason + " (target >= 30 ng/mL).", "R-VD-1")
    return found + monitor(
        MonitoringKey.VITAMIN_D_RECHECK_3M, "Recheck 25(OH)D after about 3 months of repletion.", "R-VD-1"
    )


def _cv_events(f: Facts) -> list[tuple[str, date]]:
    """(kind, date) of every MI and stroke, most recent first."""
    cv = f.patient.cardiovascular
    if cv is None:
        return []
    events = [("MI", d) for d in cv.mi_dates] + [("stroke", d) for d in cv.stroke_dates]
    return sorted(events, key=lambda e: e[1], reverse=True)


def romosozumab_cv(f: Facts, plan: Plan) -> Findings:
    """R-ROMO-1 (MI/stroke within 1 year), R-ROMO-2 + R-PREC-1 (any prior MI/stroke): no romosozumab."""
    if f.patient.cardiovascular is None:
        return not_evaluated("R-ROMO-1", (inputs.CARDIOVASCULAR,)) + not_evaluated(
            "R-ROMO-2", (inputs.CARDIOVASCULAR,)
        )
    events = _cv_events(f)
    if not events:
        return NOTHING
    recent = [(k, d) for k, d in events if within_days(d, f.today, 365)]
    on_romo = bool(f.courses_of(frozenset({D.ROMOSOZUMAB}), current=True))
    if recent:
        kind, when = recent[0]
        verb = "stop romosozumab" if on_romo else "do not start romosozumab"
        reason = f"{kind} on {when} (within 1 year): {verb}"
        return avoid((D.ROMOSOZUMAB,), reason, "R-ROMO-1") + alert(
            AlertKey.ROMOSOZUMAB_CV_CONTRAINDICATION, reason + " (boxed warning).", "R-ROMO-1"
        )
    kind, when = events[0]
    reason = f"prior {kind} on {when}: ES 2020 excludes romosozumab after any MI or stroke (stricter source)"
    return (
        avoid((D.ROMOSOZUMAB,), reason, "R-ROMO-2")
        + Findings(fired=("R-PREC-1",))
        + alert(AlertKey.ROMOSOZUMAB_CV_CONTRAINDICATION, reason + ".", "R-ROMO-2")
    )


def pth_osteosarcoma(f: Facts, plan: Plan) -> Findings:
    """R-PTH-3: avoid PTH analogs with osteosarcoma risk factors."""
    risks = _osteosarcoma_risks(f)
    if not risks:
        return NOTHING
    reason = "osteosarcoma risk (" + "; ".join(risks) + ")"
    return avoid((D.PTH_ANALOG,), reason, "R-PTH-3") + alert(
        AlertKey.PTH_ANALOG_OSTEOSARCOMA_RISK, reason + ": avoid teriparatide and abaloparatide.", "R-PTH-3"
    )


def _osteosarcoma_risks(f: Facts) -> list[str]:
    """The R-PTH-3 risk factors present."""
    h, labs = f.patient.history, f.patient.labs
    risks = []
    if h:
        risks += [f"history: {c}" for c in h.cancer if _SKELETAL_MALIGNANCY.search(c)]
        risks += ["prior skeletal radiation"] if h.skeletal_radiation else []
        risks += ["Paget's disease"] if h.paget else []
        risks += ["open epiphyses"] if h.open_epiphyses else []
    if labs and labs.alkaline_phosphatase_u_l is not None:
        uln = labs.alkaline_phosphatase_uln_u_l or ALP_ULN_DEFAULT_U_L
        if labs.alkaline_phosphatase_u_l > uln:
            risks.append(f"raised ALP {labs.alkaline_phosphatase_u_l} U/L > {uln:g} unless explained")
    return risks


def oral_bp_contraindication(f: Facts, plan: Plan) -> Findings:
    """R-ADM-1 (exclusion part): no oral bisphosphonate with an oesophageal emptying disorder.

    Nor when the patient cannot stay upright for 30 minutes.
    """
    h = f.patient.history
    if h is None or not (h.oesophageal_emptying_disorder or h.unable_to_stay_upright_30min):
        return NOTHING
    why = (
        "oesophageal emptying disorder"
        if h.oesophageal_emptying_disorder
        else "unable to stay upright 30 min"
    )
    return avoid((D.ORAL_BISPHOSPHONATE,), f"{why}: oral bisphosphonates are contraindicated", "R-ADM-1")


SAFETY_RULES: tuple[SafetyRule, ...] = (
    renal_crcl,
    renal_alendronate,
    renal_risedronate_ibandronate,
    renal_zoledronate,
    ckd_g4_5,
    hypocalcaemia,
    vitamin_d_deficiency,
    romosozumab_cv,
    romosozumab_doses,
    pth_cap,
    pth_osteosarcoma,
    oral_bp_contraindication,
)
"""Exclusion rules, run before ``first_line`` is settled."""
