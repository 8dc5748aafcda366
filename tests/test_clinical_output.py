"""The suggestion JSON as consumers read it: alert severity and order, cited sources, one alert per key and rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError
from test_clinical_support import HIGH, VERY_HIGH, days_ago, given, make, med, run

from clinical.engine import _alerts, suggest
from clinical.findings import Flag
from clinical.inputs import label, missing_reason
from clinical.rules import RULES_BY_ID
from clinical.suggestion import Suggestion
from clinical.vocabulary import ALERT_SEVERITY, AlertKey, MonitoringKey, Severity, severity_rank

A = AlertKey
BUSY = {
    **VERY_HIGH,
    "patient.labs.crcl_cockcroft_gault_ml_min": 25,
    "patient.labs.egfr_ml_min_1_73m2": None,
    "patient.cardiovascular.stroke_dates": [days_ago(200)],
    "patient.intake.calcium_supplement_mg_day": 100,
    "patient.falls.count_12m": 2,
}
"""A context that raises alerts of all three severities."""
GC_USER = {"patient.glucocorticoids": {"current": True, "prednisone_eq_mg_day": 5, "duration_months": 6}}


def test_every_alert_key_has_one_severity() -> None:
    assert set(ALERT_SEVERITY) == set(AlertKey)
    assert {Severity(v) for v in ALERT_SEVERITY.values()} == set(Severity)


def test_alerts_carry_the_severity_of_their_key_in_order() -> None:
    out = run(BUSY)
    severities = [a["severity"] for a in out["alerts"]]
    assert set(severities) == {"urgent", "caution", "info"}
    assert all(a["severity"] == ALERT_SEVERITY[AlertKey(a["key"])] for a in out["alerts"])
    ranks = [severity_rank(Severity(s)) for s in severities]
    assert ranks == sorted(ranks)


def test_order_is_stable_within_a_severity() -> None:
    flags = [
        Flag(A.CALCIUM_BELOW_RECOMMENDED, "info 1", "R-CAL-1"),
        Flag(A.TERIPARATIDE_COURSE_LIMIT, "caution 1", "R-PTH-1"),
        Flag(A.FALL_RISK_INTERVENTION, "info 2", "R-CAT-1"),
        Flag(A.RED_FLAG_URGENT, "urgent", "R-RF-1"),
        Flag(A.END_DRUG_HOLIDAY, "caution 2", "R-HOL-3"),
    ]
    assert [a["message"] for a in _alerts(flags)] == ["urgent", "caution 1", "caution 2", "info 1", "info 2"]


def test_suggestion_refuses_a_severity_other_than_the_keys_own() -> None:
    out = copy.deepcopy(run(BUSY))
    info = next(a for a in out["alerts"] if a["severity"] == "info")
    info["severity"] = "urgent"
    with pytest.raises(ValidationError, match="not its own"):
        Suggestion.model_validate(out)


def test_suggestion_refuses_alerts_out_of_severity_order() -> None:
    out = copy.deepcopy(run(BUSY))
    out["alerts"].reverse()
    with pytest.raises(ValidationError, match="severity order"):
        Suggestion.model_validate(out)


def _cited(out: dict[str, Any]) -> list[dict[str, Any]]:
    return out["alerts"] + out["monitoring"] + out["avoid"] + out["notes"]


@pytest.mark.parametrize("changes", [HIGH, BUSY, {"patient.dxa.t_total_hip": -2.6}])
def test_every_alert_monitoring_avoid_and_note_cites_a_source(changes: dict[str, Any]) -> None:
    out = run(changes)
    assert out["notes"] and out["alerts"], "the case must have notes and alerts to check"
    for item in _cited(out):
        assert item["source"].strip() and item["verification"].strip(), item
        assert item["source"] == RULES_BY_ID[item["rule"]].source
        assert item["verification"] == RULES_BY_ID[item["rule"]].verification


def test_the_r_cat_dx_note_names_its_source() -> None:
    out = run({"patient.dxa.t_total_hip": -2.6})
    note = next(n for n in out["notes"] if n["rule"] == "R-CAT-DX")
    assert note["source"] == "AACE2020 [V guidelinecentral 41073]; ASBMR2016 [V]"


def test_the_r_cat_dx_note_claims_a_t_score_diagnosis_only_when_the_t_score_shows_it() -> None:
    def note(changes: dict[str, Any]) -> dict[str, Any]:
        return next(n for n in run(changes)["notes"] if n["rule"] == "R-CAT-DX")

    low_t = note({"patient.dxa.t_total_hip": -2.6})
    treated = note({"patient.medications": [med("alendronate", 400)]})
    assert low_t["text"].startswith("Osteoporosis by T-score (lowest T -2.6 <= -2.5)")
    assert treated["text"].startswith("On osteoporosis therapy, lowest T now -1.5: an osteoporosis diagnosed earlier")


def test_one_renal_alert_per_rule_names_each_excluded_drug() -> None:
    out = run({**HIGH, "patient.labs.crcl_cockcroft_gault_ml_min": 25})
    renal = {a["rule"]: a["message"] for a in out["alerts"] if a["key"] == "renal_contraindication"}
    assert set(renal) == {"R-REN-1", "R-REN-2/3", "R-REN-4"}
    assert "alendronate" in renal["R-REN-1"]
    assert "risedronate" in renal["R-REN-2/3"]
    assert "zoledronic acid" in renal["R-REN-4"]


def _not_evaluated(out: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [n for n in out["not_evaluated"] if n["rule"] == rule]


def test_r_cal_1_names_only_the_missing_intake_when_age_and_sex_are_given() -> None:
    ctx = {"assessment_date": "2026-03-02", "patient": {"age": 60, "sex": "F"}}
    (item,) = _not_evaluated(suggest(ctx), "R-CAL-1")
    assert item["missing_inputs"] == ["patient.intake.calcium_diet_mg_day", "patient.intake.calcium_supplement_mg_day"]
    assert item["reason"] == "no dietary calcium or calcium supplement"


def test_r_cal_1_without_sex_names_sex_only_and_r_cal_2_still_runs() -> None:
    out = run({"patient.sex": None})
    (item,) = _not_evaluated(out, "R-CAL-1")
    assert item["missing_inputs"] == ["patient.sex"]
    assert not _not_evaluated(out, "R-CAL-2")


@pytest.mark.parametrize(
    ("changes", "rule", "missing"),
    [
        ({"patient.frax": {"mof_10y_pct": 5.0}, **GC_USER}, "R-CAT-GC", ["patient.frax.hip_10y_pct"]),
        ({"patient.height_loss_cm.prospective": 5.0, "patient.sex": None}, "R-RF-2", ["patient.sex"]),
        (
            {"patient.intake.vitamin_d_iu_day": None, "patient.intake.vitamin_d_regimen": "as directed"},
            "R-VITD-2",
            ["patient.intake.vitamin_d_iu_day"],
        ),
        (
            {"patient.labs.crcl_cockcroft_gault_ml_min": None, "patient.weight_kg": None},
            "R-REN-1",
            ["patient.labs.crcl_cockcroft_gault_ml_min", "patient.weight_kg"],
        ),
        (
            {"patient.falls": {"count_12m": None, "injurious": False}},
            "R-CAT-1",
            ["patient.falls.count_12m"],
        ),
        (
            {"patient.medications": [{"drug": "teriparatide", "stop": days_ago(100)}]},
            "R-PTH-1",
            ["patient.medications.0.start"],
        ),
    ],
)
def test_not_evaluated_names_exactly_what_is_missing(changes: dict[str, Any], rule: str, missing: list[str]) -> None:
    ctx = make(changes)
    items = _not_evaluated(suggest(ctx), rule)
    assert [n["missing_inputs"] for n in items] == [missing]
    assert not any(given(ctx, p) for p in missing)


def test_a_zero_ntx_baseline_is_a_warning_not_missing() -> None:
    out = run(
        {
            "patient.medications": [med("alendronate", 400)],
            "patient.labs.urine_ntx_baseline": 0,
        }
    )
    assert not _not_evaluated(out, "R-BTM-1")
    assert any("baseline urine NTx is 0" in w for w in out["warnings"])


def test_missing_reason_reads_as_a_list() -> None:
    assert missing_reason(["patient.age"]) == "no age"
    assert missing_reason(["patient.age", "patient.sex", "patient.weight_kg"], "why") == "no age, sex or weight: why"
    assert label("patient.medications.2.start") == "start date of medication course 2"


def test_every_vocabulary_key_is_an_output_of_some_rule() -> None:
    declared = {k for r in RULES_BY_ID.values() for k in r.outputs}
    assert declared == set(AlertKey) | set(MonitoringKey)


def test_suggestion_refuses_a_key_its_rule_does_not_list() -> None:
    out = copy.deepcopy(run(BUSY))
    alert = next(a for a in out["alerts"] if a["rule"] == "R-CAT-1")
    alert.update(rule="R-CAL-1", source=RULES_BY_ID["R-CAL-1"].source)
    with pytest.raises(ValidationError, match="does not list fall_risk_intervention"):
        Suggestion.model_validate(out)


@pytest.mark.parametrize(
    ("changes", "key", "rule"),
    [
        ({**VERY_HIGH, "patient.history.paget": True}, "anabolic_followup_antiresorptive", "R-PTH-2"),
        ({**VERY_HIGH, "patient.labs.egfr_ml_min_1_73m2": 25}, "ckd_mbd_specialist_review", "R-REN-6"),
    ],
)
def test_a_key_two_rules_name_is_raised_once_by_its_rule(changes: dict[str, Any], key: str, rule: str) -> None:
    out = run(changes)
    assert [a["rule"] for a in out["alerts"] if a["key"] == key] == [rule]
