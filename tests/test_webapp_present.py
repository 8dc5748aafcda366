"""webapp.context_form and webapp.present: the clinical-context panel and the result as the page shows it."""

from __future__ import annotations

import datetime as dt

import pytest
from factories import make_prediction, make_result, vertebra

from clinical.engine import suggest, validate_context
from inference.errors import InputError
from inference.result import ModelIdentity
from vfrisk.result import Result
from webapp.context_form import DRUGS, RED_FLAGS, ContextForm
from webapp.present import (
    lab_label,
    levels_table,
    pct,
    probability_markdown,
    severity,
    suggestion_html,
)


def test_empty_panel_gives_no_context() -> None:
    assert ContextForm().to_context() is None


def test_panel_fields_map_to_a_valid_context() -> None:
    form = ContextForm(
        fracture_sites=["vertebral", "hip"], vertebral_level="l1", last_fracture_date="2025-11-20",
        medications=["alendronate"], medication_start="2022-01-01", crcl_ml_min=28.0, calcium_diet_mg_day=600,
        vitamin_d_iu_day=800, glucocorticoids_mg_day=7.5, glucocorticoid_months=6, last_mi_date="2025-06-01",
        falls_12m=2, red_flags=["night_pain"],
    )
    ctx = form.to_context()
    assert ctx is not None
    p = ctx["patient"]
    assert [f["site"] for f in p["fractures"]] == ["vertebral_L1", "hip"]
    assert p["medications"][0] == {"drug": "alendronate", "start": "2022-01-01", "stop": None}
    assert p["labs"] == {"crcl_cockcroft_gault_ml_min": 28.0}
    assert p["glucocorticoids"]["current"] is True
    assert p["cardiovascular"] == {"mi_dates": ["2025-06-01"], "stroke_dates": []}
    full = {"assessment_date": dt.date.today().isoformat(), **ctx}
    validate_context(full)
    out = suggest(full)
    assert "R-RF-1" in out["rules_fired"]


def test_pasted_json_lies_under_the_form() -> None:
    form = ContextForm(falls_12m=1, context_json='{"patient": {"weight_kg": 60, "falls": {"count_12m": 5}}}')
    ctx = form.to_context()
    assert ctx == {"patient": {"weight_kg": 60, "falls": {"count_12m": 1}}}


@pytest.mark.parametrize(("form", "code"), [
    (ContextForm(last_mi_date="01/02/2020"), "invalid_context"),
    (ContextForm(fracture_sites=["vertebral"]), "invalid_context"),
    (ContextForm(context_json="{not json"), "invalid_json"),
    (ContextForm(context_json="[1]"), "invalid_context"),
])
def test_bad_panel_values_are_refused(form: ContextForm, code: str) -> None:
    with pytest.raises(InputError) as err:
        form.to_context()
    assert err.value.code == code


def test_vocabularies_offered() -> None:
    assert "denosumab" in DRUGS and "night_pain" in RED_FLAGS


def result_fixture() -> Result:
    ctx = {"assessment_date": "2026-01-10",
           "patient": {"age": 74, "sex": "F", "dxa": {"t_lumbar_spine": -2.8},
                       "cardiovascular": {"mi_dates": ["2025-06-01"]},
                       "symptoms": {"red_flags": ["night_pain"]}}}
    prediction = make_prediction(
        vertebrae=[vertebra("L1", grade=2, ratio=0.71, hu=84.0), vertebra("L5", present=False)],
        model=ModelIdentity("vfrisk-spine-6m", "1.0", "x"), warnings=["<script>alert(1)</script>"])
    return make_result(prediction, ctx)


def test_probability_text_names_interval_category_and_thresholds() -> None:
    md = probability_markdown(result_fixture())
    assert "13.7 %" in md and "9.0 %" in md and "19.0 %" in md
    assert "very high" in md and "3.0 %" in md and "10.0 %" in md and "R-MODEL-1" in md
    assert pct(0.5) == "50.0 %"


def test_levels_table_rows() -> None:
    assert levels_table(result_fixture()) == [["L1", "yes", None, 2, 0.71, 84.0],
                                              ["L5", "no", None, None, None, None]]


def test_suggestion_html_is_escaped_and_cited() -> None:
    res = result_fixture()
    html = suggestion_html(res)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "First-line drug classes" in html and "Avoid" in html and "Alerts" in html and "Monitoring" in html
    assert "romosozumab" in html  # avoided after an MI within the year (R-ROMO-1)
    assert "R-ROMO" in html and "vf-urgent" in html
    assert "Decision support" in html


def test_alert_severity() -> None:
    assert severity("red_flag_urgent") == "urgent"
    assert severity("model_clinical_discordance") == "caution"
    assert severity("anabolic_followup_antiresorptive") == "info"  # the vocabulary decides (issue 23)


def test_lab_label_from_card() -> None:
    card = {"inputs": {"labs": [{"name": "bmd_tscore", "description": "lowest DXA T-score", "unit": "SD",
                                 "valid_range": [-6.0, 4.0]}]}}
    assert lab_label(card, "bmd_tscore") == "lowest DXA T-score (SD), valid -6 to 4"
    assert lab_label(card, "other") == "other"
