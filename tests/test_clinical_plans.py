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
