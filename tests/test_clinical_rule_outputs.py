"""Every rule of the registry, on the smallest context that fires it and the nearest context that must not.

A row gives the rule, the smallest context (the assessment date plus only the fields the rule reads), the keys
that context must raise cited by the rule, and the nearest context that must not fire it (one value moved
across the rule's boundary, or one fact taken away). Together the rows of a rule must raise every key the
registry lists for it (``Rule.outputs``), so every output key is reachable and tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from test_clinical_support import days_ago

from clinical.engine import ALWAYS_FIRED, suggest
from clinical.rules import RULES, RULES_BY_ID

Ctx = dict[str, Any]


def ctx(model: float | None = None, **patient: Any) -> Ctx:
    """A context with only the assessment date, ``patient`` and (when given) the model probability."""
    out: Ctx = {"assessment_date": days_ago(0), "patient": patient}
    if model is not None:
        out["model"] = {"p_vertebral_fracture_6m": model}
    return out


def fx(days: int, site: str = "vertebral_L1", **extra: Any) -> dict[str, Any]:
    """A fragility fracture ``days`` before the assessment."""
    return {"site": site, "date": days_ago(days), "fragility": True, **extra}


def course(drug: str, start: int, stop: int | None = None, **extra: Any) -> dict[str, Any]:
    """A medication course started ``start`` days ago, stopped ``stop`` days ago (None: current)."""
    return {"drug": drug, "start": days_ago(start), **({"stop": days_ago(stop)} if stop is not None else {}), **extra}


F70 = {"age": 70, "sex": "F"}
VH = {**F70, "fractures": [fx(30)]}
"""Very high: a vertebral fragility fracture a month ago (R-CAT-1)."""
HI = {**F70, "dxa": {"t_total_hip": -2.6}}
"""High: T -2.6 (R-CAT-2)."""
GC = {"current": True, "prednisone_eq_mg_day": 5, "duration_months": 6}
HOLIDAY = {
    "age": 65,
    "sex": "F",
    "dxa": {"t_total_hip": -1.5, "t_femoral_neck": -1.5},
    "glucocorticoids": {"current": False},
    "medications": [course("alendronate", 5 * 365 + 2)],
}
ON_HOLIDAY = {"medications": [course("alendronate", 3000, 700)]}
DMAB = course("denosumab", 1500, last_dose=days_ago(91))
DMAB_THEN_ZOL = [course("denosumab", 1500, 200), course("zoledronic_acid", 20, doses_received=1)]
TPTD_DONE = course("teriparatide", 1160, 430)
ON_ALN = course("alendronate", 400)


@dataclass(frozen=True)
class Row:
    """One rule: the smallest context firing it with the keys it raises, and the nearest that must not."""

    rule: str
    fires: Ctx
    nearest: Ctx | None
    keys: tuple[str, ...] = field(default=())


ROWS = [
    # 1. Precedence, project decisions, model
    Row("R-PREC-1", ctx(**VH, cardiovascular={"stroke_dates": [days_ago(800)]}),
        ctx(**VH, cardiovascular={"stroke_dates": [days_ago(200)]})),
    Row("R-PREC-2", ctx(fractures=[fx(500)]), ctx(fractures=[fx(800)])),
    Row("R-PREC-3", ctx(glucocorticoids=GC), ctx(glucocorticoids={**GC, "duration_months": 3})),
    Row("R-PREC-4", ctx(intake={"vitamin_d_regimen": "50,000 IU weekly"}),
        ctx(intake={"vitamin_d_regimen": "1000 IU daily"})),
    Row("R-PROJ-1", ctx(**VH), ctx(**HI)),
    Row("R-PROJ-2", ctx(medications=[DMAB]), ctx(medications=DMAB_THEN_ZOL)),
    Row("R-PROJ-3", ctx(medications=[TPTD_DONE]), ctx(medications=[TPTD_DONE, ON_ALN])),
    Row("R-DATE-1", ctx(fractures=[fx(365)]), ctx(fractures=[fx(366)])),
    Row("R-MODEL-1", ctx(model=0.01), ctx()),
    Row("R-MODEL-2", ctx(model=0.5), ctx()),
    Row("R-MODEL-3", ctx(model=0.2), ctx(model=0.05), ("model_clinical_discordance", "vertebral_imaging")),
    # 2. Risk category
    Row("R-CAT-1", ctx(dxa={"t_total_hip": -3.1}), ctx(dxa={"t_total_hip": -3.0})),
    Row("R-CAT-1", ctx(falls={"count_12m": 2}), ctx(falls={"count_12m": 1}), ("fall_risk_intervention",)),
    Row("R-CAT-1-NOGG", ctx(fractures=[fx(700)]), ctx(fractures=[fx(731)])),
    Row("R-CAT-2", ctx(dxa={"t_total_hip": -2.5}), ctx(dxa={"t_total_hip": -2.49})),
    Row("R-CAT-3", ctx(), ctx(dxa={"t_total_hip": -2.5}), ("dxa_recommended",)),
    Row("R-CAT-GC", ctx(glucocorticoids=GC), ctx(glucocorticoids={**GC, "current": False}),
        ("glucocorticoid_induced_osteoporosis",)),
    Row("R-CAT-DX", ctx(dxa={"t_total_hip": -2.6}), ctx(dxa={"t_total_hip": -2.4})),
    Row("R-CAT-MEN", ctx(sex="M"), ctx(sex="F")),
    # 3. First line
    Row("R-TX-LOW", ctx(), ctx(dxa={"t_total_hip": -2.5})),
    Row("R-TX-HIGH", ctx(**HI), ctx(**F70, dxa={"t_total_hip": -3.1})),
    Row("R-TX-VHIGH", ctx(**F70, dxa={"t_total_hip": -3.1}), ctx(**HI)),
    Row("R-TX-MEN", ctx(**{**HI, "sex": "M"}), ctx(**HI)),
    Row("R-TX-GC", ctx(**HI, glucocorticoids=GC), ctx(**HI, glucocorticoids={**GC, "current": False})),
    # 4. Safety
    Row("R-REN-0", ctx(age=60, sex="F", weight_kg=65, labs={"serum_creatinine_mg_dl": 0.8}),
        ctx(labs={"crcl_cockcroft_gault_ml_min": 70})),
    Row("R-REN-1", ctx(labs={"crcl_cockcroft_gault_ml_min": 34.9}), ctx(labs={"crcl_cockcroft_gault_ml_min": 35}),
        ("renal_contraindication",)),
    Row("R-REN-2/3", ctx(labs={"crcl_cockcroft_gault_ml_min": 29.9}), ctx(labs={"crcl_cockcroft_gault_ml_min": 30}),
        ("renal_contraindication",)),
    Row("R-REN-4", ctx(labs={"crcl_cockcroft_gault_ml_min": 34.9}), ctx(labs={"crcl_cockcroft_gault_ml_min": 35}),
        ("renal_contraindication",)),
    Row("R-REN-4", ctx(**VH, labs={"crcl_cockcroft_gault_ml_min": 35}), ctx(labs={"crcl_cockcroft_gault_ml_min": 35}),
        ("renal_function_before_each_zoledronate_dose",)),
    Row("R-REN-5", ctx(**VH, labs={"egfr_ml_min_1_73m2": 29}), ctx(**VH, labs={"egfr_ml_min_1_73m2": 30}),
        ("denosumab_ckd_hypocalcaemia_risk", "serum_calcium_monitoring")),
    Row("R-REN-6", ctx(labs={"egfr_ml_min_1_73m2": 29}), ctx(labs={"egfr_ml_min_1_73m2": 30}),
        ("ckd_mbd_specialist_review",)),
    Row("R-CA-1", ctx(labs={"serum_calcium_corrected_mg_dl": 8.4}), ctx(labs={"serum_calcium_corrected_mg_dl": 8.5}),
        ("hypocalcaemia_correct_first", "serum_calcium_correct_and_recheck")),
    Row("R-VD-1", ctx(labs={"vitamin_d_25oh_ng_ml": 19.9}), ctx(labs={"vitamin_d_25oh_ng_ml": 30}),
        ("vitamin_d_deficiency_correct_first", "vitamin_d_recheck_3m")),
    Row("R-ROMO-1", ctx(**VH, cardiovascular={"mi_dates": [days_ago(365)]}),
        ctx(**VH, cardiovascular={"mi_dates": [days_ago(366)]}), ("romosozumab_cv_contraindication",)),
    Row("R-ROMO-2", ctx(**VH, cardiovascular={"stroke_dates": [days_ago(366)]}), ctx(**VH, cardiovascular={}),
        ("romosozumab_cv_contraindication",)),
    Row("R-ROMO-3", ctx(**VH), ctx(**HI), ("romosozumab_course_limit",)),
    Row("R-PTH-1", ctx(**VH), ctx(**HI), ("teriparatide_course_limit",)),
    Row("R-PTH-2", ctx(**VH), ctx(**HI), ("anabolic_followup_antiresorptive",)),
    Row("R-PTH-3", ctx(**VH, history={"paget": True}), ctx(**VH, history={"paget": False}),
        ("pth_analog_osteosarcoma_risk",)),
    Row("R-DMAB-1", ctx(medications=[DMAB]), ctx(medications=DMAB_THEN_ZOL), ("denosumab_no_stop",)),
    Row("R-ADM-1", ctx(**HI), ctx(**F70, dxa={"t_total_hip": -3.1}), ("oral_bp_administration_rules",)),
    Row("R-FX-1", ctx(fractures=[fx(900, "distal_radius", on_osteoporosis_therapy_at_time=True)]),
        ctx(fractures=[fx(900, "distal_radius", on_osteoporosis_therapy_at_time=False)]), ("fracture_on_therapy",)),
    # 5. Calcium and vitamin D
    Row("R-CAL-1", ctx(age=60, sex="F", intake={"calcium_diet_mg_day": 800, "calcium_supplement_mg_day": 399}),
        ctx(age=60, sex="F", intake={"calcium_diet_mg_day": 800, "calcium_supplement_mg_day": 400}),
        ("calcium_below_recommended",)),
    Row("R-CAL-2", ctx(age=60, intake={"calcium_diet_mg_day": 800, "calcium_supplement_mg_day": 1201}),
        ctx(age=60, intake={"calcium_diet_mg_day": 800, "calcium_supplement_mg_day": 1200}),
        ("calcium_over_upper_limit",)),
    Row("R-VITD-1", ctx(age=60, intake={"vitamin_d_iu_day": 799}), ctx(age=60, intake={"vitamin_d_iu_day": 800}),
        ("vitamin_d_below_recommended",)),
    Row("R-VITD-2", ctx(intake={"vitamin_d_iu_day": 4001}), ctx(intake={"vitamin_d_iu_day": 4000}),
        ("vitamin_d_over_upper_limit",)),
    # 6. Duration, sequence, holiday
    Row("R-HOL-1", ctx(**HOLIDAY), ctx(**{**HOLIDAY, "medications": [course("alendronate", 730)]}),
        ("drug_holiday_eligible",)),
    Row("R-HOL-2", ctx(**ON_HOLIDAY), ctx(), ("reassess_on_holiday_2_to_4y",)),
    Row("R-HOL-3", ctx(**ON_HOLIDAY, fractures=[fx(100, "distal_radius")]),
        ctx(**ON_HOLIDAY, fractures=[fx(1000, "distal_radius")]), ("end_drug_holiday",)),
    Row("R-DMAB-2", ctx(medications=[course("denosumab", 6 * 365)]), ctx(medications=[course("denosumab", 730)])),
    # 7. Red flags, imaging, procedures
    Row("R-RF-1", ctx(symptoms={"red_flags": ["night_pain"]}), ctx(symptoms={"red_flags": []}),
        ("red_flag_urgent", "urgent_clinical_review", "vertebral_imaging")),
    Row("R-RF-2", ctx(sex="F", height_loss_cm={"prospective": 2.1}), ctx(sex="F", height_loss_cm={"prospective": 2.0}),
        ("vertebral_imaging_indicated", "vertebral_imaging")),
    Row("R-VA-1", ctx(**VH, symptoms={"severe_pain_despite_optimal_analgesia": True}),
        ctx(**VH, symptoms={"severe_pain_despite_optimal_analgesia": False}), ("vertebral_augmentation_consider",)),
    Row("R-AFF-1", ctx(medications=[ON_ALN], symptoms={"thigh_or_groin_pain": True}),
        ctx(symptoms={"thigh_or_groin_pain": True}), ("atypical_femur_fracture_evaluate",)),
    # 8. Bone turnover markers
    Row("R-BTM-0", ctx(medications=[ON_ALN], labs={"urine_ntx_nmol_bce_per_mmol_cr": 60}),
        ctx(medications=[ON_ALN], labs={"urine_ntx_nmol_bce_per_mmol_cr": 55})),
    Row("R-BTM-1", ctx(medications=[ON_ALN], labs={"urine_ntx_baseline": 60, "urine_ntx_nmol_bce_per_mmol_cr": 43.2}),
        ctx(medications=[ON_ALN], labs={"urine_ntx_baseline": 60, "urine_ntx_nmol_bce_per_mmol_cr": 42}),
        ("btm_inadequate_response",)),
    Row("R-BTM-2", ctx(sex="F", labs={"urine_ntx_nmol_bce_per_mmol_cr": 125}),
        ctx(sex="F", labs={"urine_ntx_nmol_bce_per_mmol_cr": 124})),
    # 9. Imaging anchors
    Row("R-CT-1", ctx(imaging={"l1_trabecular_hu": 110}), ctx(imaging={"l1_trabecular_hu": 111}), ("dxa_recommended",)),
    Row("R-GEN-1", ctx(fractures=[fx(2000, genant_grade=2)]), ctx(fractures=[fx(2000, genant_grade=1)])),
    # 10. Monitoring keys
    Row("R-MON-REASSESS-6M", ctx(**HI), ctx(**F70), ("reassess_6m",)),
    Row("R-MON-DXA", ctx(**HI), ctx(**F70), ("dxa_every_1_to_2y",)),
    Row("R-MON-DXA-BASELINE", ctx(fractures=[fx(1000)]), ctx(fractures=[fx(1000)], dxa={"t_total_hip": -1.0}),
        ("dxa_recommended",)),
    Row("R-MON-BTM", ctx(**VH, labs={"egfr_ml_min_1_73m2": 70}), ctx(**VH, labs={"egfr_ml_min_1_73m2": 29}),
        ("btm_recheck_3_to_6m",)),
    Row("R-MON-SPECIALIST", ctx(**VH), ctx(**HI), ("specialist_referral_consider",)),
    Row("R-MON-LOW-5Y", ctx(), ctx(**ON_HOLIDAY), ("reassess_fracture_risk_within_5y",)),
    Row("R-MON-RENAL-6M", ctx(**HI, labs={"crcl_cockcroft_gault_ml_min": 40}),
        ctx(**HI, labs={"crcl_cockcroft_gault_ml_min": 46}), ("renal_recheck_6m",)),
    Row("R-MON-FALLS", ctx(falls={"count_12m": 1}), ctx(falls={"count_12m": 0}), ("fall_risk_assessment",)),
    Row("R-MON-CV", ctx(**VH), ctx(**HI), ("cv_risk_review",)),
    # Source document
    Row("SRC-CAVD", ctx(), None),
    Row("SRC-LIFESTYLE", ctx(), None),
    Row("SRC-RENAL-6M", ctx(medications=[ON_ALN], labs={"crcl_cockcroft_gault_ml_min": 70}),
        ctx(labs={"crcl_cockcroft_gault_ml_min": 70}), ("renal_recheck_6m",)),
    Row("SRC-REASSESS", ctx(**HI), ctx(**F70)),
    Row("SRC-DXA-2Y", ctx(age=51, sex="F"), ctx(age=50, sex="F"), ("dxa_every_1_to_2y",)),
    Row("SRC-URGENT", ctx(height_loss_cm={"prospective": 2.1}), ctx(height_loss_cm={"prospective": 2.0}),
        ("urgent_clinical_review",)),
    Row("SRC-BONE-PROTECT", ctx(medications=[{"drug": "omeprazole"}]),
        ctx(medications=[{"drug": "omeprazole", "stop": days_ago(10)}])),
]


def cites(out: dict[str, Any], rule: str) -> set[str]:
    """The alert and monitoring keys cited with ``rule``; ``"note"`` and ``"avoid"`` when those cite it."""
    keys = {i["key"] for i in out["alerts"] + out["monitoring"] if i["rule"] == rule}
    keys |= {"note"} if any(n["rule"] == rule for n in out["notes"]) else set()
    return keys | ({"avoid"} if any(a["rule"] == rule for a in out["avoid"]) else set())


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.rule} {i}" for i, r in enumerate(ROWS)])
def test_smallest_context_fires_the_rule_with_its_keys(row: Row) -> None:
    out = suggest(row.fires)
    assert row.rule in out["rules_fired"], out["rules_fired"]
    assert set(row.keys) <= cites(out, row.rule), (row.keys, cites(out, row.rule))


@pytest.mark.parametrize("row", [r for r in ROWS if r.nearest is not None], ids=lambda r: r.rule)
def test_nearest_context_does_not_fire_the_rule(row: Row) -> None:
    assert row.nearest is not None
    out = suggest(row.nearest)
    assert row.rule not in out["rules_fired"], out["rules_fired"]
    assert not cites(out, row.rule), cites(out, row.rule)


def test_every_rule_has_rows_and_every_output_key_is_reached() -> None:
    for rule in RULES:
        rows = [r for r in ROWS if r.rule == rule.id]
        assert rows, f"{rule.id} has no row"
        assert {k for r in rows for k in r.keys} == {k.value for k in rule.outputs}, rule.id
        if rule.id not in ALWAYS_FIRED:
            assert any(r.nearest is not None for r in rows), f"{rule.id} has no nearest context"


def test_rows_name_registered_rules() -> None:
    assert {r.rule for r in ROWS} <= set(RULES_BY_ID)
