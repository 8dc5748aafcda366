"""Issue 23: what a plan must carry with it: course limits, denosumab continuity, follow-on therapy, monitoring.

Contexts are the smallest that show the behaviour: only the assessment date and the fields the rule reads.
"""

from __future__ import annotations

from typing import Any

from test_clinical_support import days_ago

from clinical.engine import suggest

Out = dict[str, Any]
RECENT_VERTEBRAL = {"site": "vertebral_L1", "date": days_ago(30), "fragility": True}


def smallest(model: float | None = None, **patient: Any) -> Out:
    """``suggest`` of a context holding only the assessment date, ``patient`` and the model probability."""
    ctx: dict[str, Any] = {"assessment_date": days_ago(0), "patient": patient}
    if model is not None:
        ctx["model"] = {"p_vertebral_fracture_6m": model}
    return suggest(ctx)


def very_high(**patient: Any) -> Out:
    """A woman of 70 with a vertebral fragility fracture a month ago (R-CAT-1), plus ``patient``."""
    return smallest(age=70, sex="F", fractures=[RECENT_VERTEBRAL], **patient)


def alert(out: Out, key: str) -> dict[str, Any] | None:
    """The (first) alert with ``key``, or None."""
    return next((a for a in out["alerts"] if a["key"] == key), None)


def message(out: Out, key: str) -> str:
    """The message of the alert ``key`` (which must be present)."""
    found = alert(out, key)
    assert found is not None, (key, [a["key"] for a in out["alerts"]])
    return str(found["message"])


# R-PROJ-1: course limits travel with the drug


def test_suggested_anabolics_carry_their_course_limits() -> None:
    out = very_high()
    assert out["first_line"][:2] == ["pth_analog", "romosozumab"]
    assert message(out, "teriparatide_course_limit").endswith("no prior course recorded.")
    assert message(out, "romosozumab_course_limit") == "Romosozumab: at most 12 monthly doses, then an antiresorptive."
    assert "R-PROJ-1" in out["rules_fired"]


def test_no_anabolic_no_course_limit() -> None:
    out = smallest(age=70, sex="F", dxa={"t_total_hip": -2.6})
    assert out["first_line"][0] == "oral_bisphosphonate"
    assert alert(out, "teriparatide_course_limit") is None and alert(out, "romosozumab_course_limit") is None
    assert "R-PROJ-1" not in out["rules_fired"]


def test_months_already_used_are_counted() -> None:
    out = very_high(medications=[{"drug": "teriparatide", "start": days_ago(304)}])
    assert "10.0 months used (prior courses counted), at most 14.0 remain" in message(out, "teriparatide_course_limit")


def test_an_undated_course_leaves_the_months_unknown() -> None:
    out = very_high(medications=[{"drug": "abaloparatide", "stop": days_ago(400)}])
    assert "at least 0.0 months used" in message(out, "teriparatide_course_limit")
    (item,) = [n for n in out["not_evaluated"] if n["rule"] == "R-PTH-1"]
    assert item["missing_inputs"] == ["patient.medications.0.start"]


def test_deferred_romosozumab_carries_its_limit() -> None:
    out = very_high(labs={"vitamin_d_25oh_ng_ml": 12})
    assert "romosozumab" in out["deferred"]
    assert alert(out, "romosozumab_course_limit") is not None
    assert "R-PROJ-1" in out["rules_fired"]


def test_doses_estimated_from_the_dates() -> None:
    out = very_high(medications=[{"drug": "romosozumab", "start": days_ago(95)}])
    expected = "4 of 12 doses given (estimated from the dates), at most 8 remain"
    assert expected in message(out, "romosozumab_course_limit")


def test_after_a_completed_romosozumab_course_the_limit_stands() -> None:
    course = {"drug": "romosozumab", "start": days_ago(400), "stop": days_ago(35), "doses_received": 12}
    out = very_high(medications=[course])
    assert "romosozumab" not in out["first_line"]
    assert "12 doses given: the course is complete" in message(out, "romosozumab_course_limit")
    assert alert(out, "anabolic_followup_antiresorptive") is not None
    assert "R-PROJ-1" in out["rules_fired"]


# R-DMAB-1 with R-PROJ-2: denosumab is never simply stopped

DMAB = {"drug": "denosumab", "start": days_ago(1500), "last_dose": days_ago(91)}
"""On denosumab for about 4 years, last injection 91 days before the assessment (2025-12-01)."""


def test_on_denosumab_at_low_risk_continue_or_transition() -> None:
    out = smallest(medications=[DMAB])
    assert out["risk_category"] == "low"
    assert out["first_line"] == ["denosumab", "iv_bisphosphonate", "oral_bisphosphonate"]
    text = message(out, "denosumab_no_stop")
    assert "rebound" in text and "about 2026-06-01 (6 months after the last injection on 2025-12-01)" in text
    assert "R-PROJ-2" in out["rules_fired"]


def test_never_on_denosumab_at_low_risk_lifestyle_only() -> None:
    out = smallest()
    assert out["first_line"] == ["lifestyle_calcium_vitd"]
    assert "R-PROJ-2" not in out["rules_fired"] and alert(out, "denosumab_no_stop") is None


def test_a_request_to_stop_puts_the_transition_first() -> None:
    out = smallest(age=70, sex="F", dxa={"t_total_hip": -2.6}, medications=[DMAB], patient_request="wants to stop")
    assert out["first_line"] == ["iv_bisphosphonate", "oral_bisphosphonate", "denosumab", "serm"]
    assert message(out, "denosumab_no_stop").startswith("The patient asks to stop denosumab.")


def test_at_high_risk_without_a_request_continuing_comes_first() -> None:
    out = smallest(age=70, sex="F", dxa={"t_total_hip": -2.6}, medications=[DMAB], patient_request="no questions")
    assert out["first_line"] == ["denosumab", "iv_bisphosphonate", "oral_bisphosphonate", "serm"]


def test_at_very_high_risk_the_category_list_is_kept() -> None:
    out = very_high(medications=[DMAB])
    assert out["first_line"] == ["pth_analog", "romosozumab", "denosumab", "iv_bisphosphonate"]
    assert "R-PROJ-2" not in out["rules_fired"]


def test_an_overdue_dose_is_due_now() -> None:
    out = smallest(medications=[{**DMAB, "last_dose": days_ago(240)}])
    assert "now: the dose is overdue" in message(out, "denosumab_no_stop")


def test_stopped_without_a_bisphosphonate_the_transition_comes_first() -> None:
    out = smallest(medications=[{**DMAB, "stop": days_ago(200), "last_dose": days_ago(200)}])
    assert out["first_line"] == ["iv_bisphosphonate", "oral_bisphosphonate", "denosumab"]
    assert "Start a bisphosphonate (zoledronic acid preferred) now" in message(out, "denosumab_no_stop")


def test_stopped_then_zoledronic_acid_is_a_completed_transition() -> None:
    zol = {"drug": "zoledronic_acid", "start": days_ago(20), "doses_received": 1}
    out = smallest(medications=[{**DMAB, "stop": days_ago(200)}, zol])
    assert "R-PROJ-2" not in out["rules_fired"] and alert(out, "denosumab_no_stop") is None


def test_deferred_denosumab_is_still_continued_after_the_correction() -> None:
    out = smallest(medications=[DMAB], labs={"serum_calcium_corrected_mg_dl": 8.0})
    assert "denosumab" in out["deferred"]
    assert "then give the next injection on time" in message(out, "denosumab_no_stop")


# R-PTH-2 with R-PROJ-3: an anabolic course is followed by an antiresorptive

TPTD_DONE = {"drug": "teriparatide", "start": days_ago(1160), "stop": days_ago(430)}


def test_a_finished_anabolic_course_at_low_risk_brings_the_follow_on() -> None:
    out = smallest(medications=[TPTD_DONE])
    assert out["first_line"] == ["oral_bisphosphonate", "iv_bisphosphonate", "denosumab"]
    assert message(out, "anabolic_followup_antiresorptive").startswith("A past anabolic course has no antiresorptive")
    assert "R-PROJ-3" in out["rules_fired"]


def test_a_finished_anabolic_course_with_its_follow_on_changes_nothing() -> None:
    out = smallest(medications=[TPTD_DONE, {"drug": "alendronate", "start": days_ago(400)}])
    assert out["first_line"] == ["lifestyle_calcium_vitd"]
    assert "R-PROJ-3" not in out["rules_fired"]


def test_a_current_anabolic_at_low_risk_ends_with_a_follow_on() -> None:
    out = smallest(medications=[{"drug": "abaloparatide", "start": days_ago(200)}])
    assert out["first_line"] == ["oral_bisphosphonate", "iv_bisphosphonate", "denosumab"]
    assert message(out, "anabolic_followup_antiresorptive").startswith("At low risk the anabolic course ends")


def test_after_a_completed_romosozumab_course_antiresorptives_come_first() -> None:
    course = {"drug": "romosozumab", "start": days_ago(400), "stop": days_ago(35), "doses_received": 12}
    out = very_high(medications=[course])
    assert out["first_line"] == ["denosumab", "iv_bisphosphonate", "pth_analog"]


# Monitoring completes the plan

KIDNEY = {"egfr_ml_min_1_73m2": 70}
HIGH_F = {"age": 70, "sex": "F", "dxa": {"t_total_hip": -2.6}}


def monitoring(out: Out, key: str) -> dict[str, Any] | None:
    """The monitoring item ``key``, or None."""
    return next((m for m in out["monitoring"] if m["key"] == key), None)


def test_starting_therapy_brings_the_btm_recheck() -> None:
    out = very_high(labs=KIDNEY)
    item = monitoring(out, "btm_recheck_3_to_6m")
    assert item is not None and item["message"].endswith("3-6 months after starting pth analog.")


def test_no_btm_recheck_below_egfr_30() -> None:
    assert monitoring(very_high(labs={"egfr_ml_min_1_73m2": 29}), "btm_recheck_3_to_6m") is None


def test_without_renal_function_the_btm_recheck_is_not_evaluated() -> None:
    out = very_high()
    assert monitoring(out, "btm_recheck_3_to_6m") is None
    (item,) = [n for n in out["not_evaluated"] if n["rule"] == "R-MON-BTM"]
    assert item["missing_inputs"] == [
        "patient.labs.egfr_ml_min_1_73m2",
        "patient.labs.crcl_cockcroft_gault_ml_min",
        "patient.labs.serum_creatinine_mg_dl",
    ]


def test_switching_therapy_brings_the_btm_recheck() -> None:
    out = very_high(labs=KIDNEY, medications=[{"drug": "alendronate", "start": days_ago(800)}])
    item = monitoring(out, "btm_recheck_3_to_6m")
    assert item is not None and "after switching to pth analog" in item["message"]


def test_correcting_administration_brings_the_btm_recheck() -> None:
    course = {"drug": "alendronate", "start": days_ago(400), "administration_issue": "taken with breakfast"}
    out = smallest(**HIGH_F, labs=KIDNEY, medications=[course])
    item = monitoring(out, "btm_recheck_3_to_6m")
    assert item is not None and "correcting how the oral bisphosphonate is taken" in item["message"]


def test_continuing_the_same_therapy_needs_no_btm_recheck() -> None:
    out = smallest(**HIGH_F, labs=KIDNEY, medications=[{"drug": "alendronate", "start": days_ago(400)}])
    assert out["first_line"][0] == "oral_bisphosphonate"
    assert monitoring(out, "btm_recheck_3_to_6m") is None


def test_a_pending_correction_or_work_up_holds_the_btm_recheck() -> None:
    deficient = very_high(labs={**KIDNEY, "vitamin_d_25oh_ng_ml": 12})
    flagged = very_high(labs=KIDNEY, symptoms={"red_flags": ["fever"]})
    assert monitoring(deficient, "btm_recheck_3_to_6m") is None
    assert monitoring(flagged, "btm_recheck_3_to_6m") is None


HOLIDAY_READY = {
    "age": 65,
    "sex": "F",
    "dxa": {"t_total_hip": -1.5, "t_femoral_neck": -1.5},
    "glucocorticoids": {"current": False},
    "medications": [{"drug": "alendronate", "start": days_ago(5 * 365 + 2)}],
}


def test_a_holiday_proposed_brings_its_reassessment_interval() -> None:
    out = smallest(**HOLIDAY_READY)
    assert alert(out, "drug_holiday_eligible") is not None
    item = monitoring(out, "reassess_on_holiday_2_to_4y")
    assert item is not None and item["message"].startswith("If the holiday is taken: reassess every 2-4 years")


def test_not_eligible_no_holiday_interval() -> None:
    out = smallest(**{**HOLIDAY_READY, "age": 75})
    assert alert(out, "drug_holiday_eligible") is None
    assert monitoring(out, "reassess_on_holiday_2_to_4y") is None


def test_unknown_glucocorticoid_use_blocks_the_holiday() -> None:
    out = smallest(**{**HOLIDAY_READY, "glucocorticoids": None})
    assert alert(out, "drug_holiday_eligible") is None
    assert any("glucocorticoid dose unknown" in n["text"] for n in out["notes"] if n["rule"] == "R-HOL-1")


ON_HOLIDAY = {"medications": [{"drug": "alendronate", "start": days_ago(3000), "stop": days_ago(700)}]}


def test_on_a_holiday_at_low_risk_reassess_every_2_to_4_years() -> None:
    out = smallest(**ON_HOLIDAY)
    assert monitoring(out, "reassess_on_holiday_2_to_4y") is not None


def test_a_risk_change_ends_the_holiday() -> None:
    out = smallest(**ON_HOLIDAY, dxa={"t_total_hip": -2.6})
    assert monitoring(out, "reassess_on_holiday_2_to_4y") is None
    assert any("the holiday ends" in n["text"] for n in out["notes"] if n["rule"] == "R-HOL-2")
    assert out["first_line"][0] == "oral_bisphosphonate"


def test_a_fracture_during_the_holiday_ends_it() -> None:
    wrist = {"site": "distal_radius", "date": days_ago(100), "fragility": True}
    out = smallest(**ON_HOLIDAY, fractures=[wrist])
    assert alert(out, "end_drug_holiday") is not None
    assert monitoring(out, "reassess_on_holiday_2_to_4y") is None


def test_model_discordance_requests_the_vertebral_imaging() -> None:
    out = smallest(model=0.2)
    assert alert(out, "model_clinical_discordance") is not None
    item = monitoring(out, "vertebral_imaging")
    assert item is not None and item["rule"] == "R-MODEL-3"


def test_one_level_apart_no_imaging_review() -> None:
    out = smallest(model=0.05)
    assert alert(out, "model_clinical_discordance") is None and monitoring(out, "vertebral_imaging") is None


def test_cancer_history_with_new_back_pain_is_a_red_flag() -> None:
    out = smallest(history={"cancer": ["breast cancer 2015"]}, symptoms={"back_pain": "new, two weeks"})
    assert "cancer_history_with_new_back_pain" in message(out, "red_flag_urgent")


def test_cancer_history_with_chronic_back_pain_is_not() -> None:
    out = smallest(history={"cancer": ["breast cancer 2015"]}, symptoms={"back_pain": "chronic"})
    assert alert(out, "red_flag_urgent") is None
