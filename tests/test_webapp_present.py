"""webapp.context_form and webapp.present: the clinical-context panel and the result as the page shows it."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from factories import make_prediction, make_result, vertebra

from clinical.engine import suggest, validate_context
from inference.errors import InputError
from inference.result import ModelIdentity
from vfrisk.result import Result
from webapp.context_form import DRUGS, RED_FLAGS, ContextForm
from webapp.errors import PublicError, say
from webapp.form import lab_messages
from webapp.present import (
    COLOURS,
    lab_label,
    pct,
    probability_html,
    severity,
    study_html,
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
        model=ModelIdentity("vfrisk-spine-6m", "1.0", "x", "Trained on synthetic phantoms only."),
        warnings=["<script>alert(1)</script>"])
    return make_result(prediction, ctx)


def test_probability_text_names_interval_category_thresholds_and_training_data() -> None:
    html = probability_html(result_fixture())
    assert "13.7 %" in html and "9.0 %" in html and "19.0 %" in html
    assert "very high" in html and "3.0 %" in html and "10.0 %" in html and "R-MODEL-1" in html
    assert "Trained on synthetic phantoms only" in html
    assert pct(0.5) == "50.0 %"


def test_suggestion_html_is_escaped_and_cited() -> None:
    res = result_fixture()
    html = suggestion_html(res)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "First-line choices" in html and "Avoid" in html and "Alerts" in html and "Monitoring" in html
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


def issue_result() -> Result:
    """Issue 21's case: a red flag, CrCl 25 and a recent MI (an URGENT alert and INFO lines)."""
    ctx = {"assessment_date": "2026-01-10",
           "patient": {"age": 74, "sex": "F", "dxa": {"t_lumbar_spine": -2.8},
                       "labs": {"crcl_cockcroft_gault_ml_min": 25.0},
                       "cardiovascular": {"mi_dates": ["2025-11-01"]},
                       "symptoms": {"red_flags": ["night_pain"]},
                       "intake": {"calcium_diet_mg_day": 400.0, "calcium_supplement_mg_day": 0.0,
                                  "vitamin_d_iu_day": 0.0}}}
    return make_result(make_prediction(), ctx)


def test_alerts_first_in_the_engines_order_and_info_is_never_red() -> None:
    result = issue_result()
    html = suggestion_html(result)
    keys = [a.severity.value for a in result.suggestion.alerts]
    assert keys[0] == "urgent" and "info" in keys
    shown = [chunk.split('"')[0] for chunk in html.split('class="vf-alert vf-')[1:]]
    assert shown == keys  # the engine's order, untouched
    assert html.index("Alerts") < html.index("First-line choices")
    info = [chunk for chunk in html.split('class="vf-alert vf-')[1:] if chunk.startswith("info")]
    assert info and all(COLOURS["urgent"] not in chunk.split("</span>")[0] for chunk in info)
    assert COLOURS["info"] != COLOURS["urgent"]


def test_first_line_choices_keep_the_engines_order_with_their_cautions_beside() -> None:
    result = issue_result()
    html = suggestion_html(result)
    first = html.split("First-line choices")[1].split("</ul>")[0]
    names = [chunk.split("</b>")[0] for chunk in first.split("<li><b>")[1:]]
    assert names == [c.value.replace("_", " ") for c in result.suggestion.first_line]
    for choice in result.suggestion.first_line:
        for a in result.cautions(choice):
            assert a.message.split()[0] in first
    assert "(preferred)" not in html


def test_study_summary_is_compact_and_says_what_a_nifti_study_gets() -> None:
    import numpy as np

    study = SimpleNamespace(volume=np.zeros((100, 64, 64), np.float32), spacing_mm=(2.0, 0.8, 0.8),
                            source_format="nifti", orientation="axial", n_source_slices=100, warnings=("w <b>",))
    html = study_html(study, 1, [])
    assert "NIfTI volume" in html and "JSON, PDF, FHIR" in html and "no DICOM SR or SEG" in html
    assert "enter age and sex" in html and "&lt;b&gt;" in html and "200 mm head to foot" in html
    dicom = SimpleNamespace(**{**vars(study), "source_format": "dicom"})
    series = [{"series_number": 3, "modality": "CT", "n_slices": 100, "orientation": "axial", "chosen": True},
              {"series_number": 1, "modality": "CT", "n_slices": 3, "orientation": "axial", "chosen": False,
               "set_aside": "localizer"}]
    html = study_html(dicom, 166, series)
    assert "166 files" in html and "<details" in html and "2 series found, 1 chosen" in html
    assert "set aside: localizer" in html and "DICOM SR" in html


RANGES = {"ntx_nmol_bce_per_mmol_cr": [2.0, 400.0], "bmd_tscore": [-6.0, 4.0], "age": [18.0, 110.0]}


def test_lab_messages_sit_beside_each_box_and_never_read_empty_as_zero() -> None:
    empty = {"ntx": "", "bmd_tscore": "", "age": "", "sex": None}
    msgs = lab_messages(empty, 65, "F", RANGES)
    assert set(msgs) == {"ntx", "bmd_tscore"} and msgs["ntx"].startswith("Required")
    assert set(lab_messages(empty, None, None, RANGES)) == {"ntx", "bmd_tscore", "age", "sex"}
    forgot = lab_messages({"ntx": "54.4", "bmd_tscore": " ", "age": "70", "sex": "F"}, None, None, RANGES)
    assert list(forgot) == ["bmd_tscore"] and "T-score" in forgot["bmd_tscore"]
    bad = lab_messages({"ntx": "4_0", "bmd_tscore": "-9", "age": "70", "sex": "X"}, None, None, RANGES)
    assert bad["ntx"].startswith("Not a number") and bad["bmd_tscore"].startswith("Outside the valid range -6 to 4")
    assert bad["sex"] == "Sex must be F or M."
    assert lab_messages({"ntx": "0", "bmd_tscore": "0", "age": "70", "sex": "M"}, None, None, RANGES) == {
        "ntx": "Outside the valid range 2 to 400 nmol BCE/mmol creatinine."}


def test_an_opened_but_empty_context_panel_gives_no_context() -> None:
    blank = {"fracture_sites": [], "vertebral_level": "", "crcl_ml_min": "", "calcium_diet_mg_day": "  ",
             "falls_12m": "", "red_flags": [], "context_json": "", "last_mi_date": ""}
    assert ContextForm.from_form(blank).to_context() is None
    given = ContextForm.from_form({**blank, "crcl_ml_min": "25", "falls_12m": "0"})
    ctx = given.to_context()
    assert ctx is not None and ctx["patient"]["labs"] == {"crcl_cockcroft_gault_ml_min": 25.0}
    assert ctx["patient"]["falls"] == {"count_12m": 0} and "intake" not in ctx["patient"]
    for bad in ({"crcl_ml_min": "abc"}, {"vitamin_d_iu_day": "-5"}, {"falls_12m": "1.5"}):
        with pytest.raises(InputError) as err:
            ContextForm.from_form(bad)
        assert err.value.code == "invalid_context"


@pytest.mark.parametrize(("code", "message", "expected"), [
    ("no_upload", "no file was uploaded",
     "No study loaded: upload the CT first (DICOM files, a zip, a folder, or one NIfTI file). (reason: no_upload)"),
    ("not_dicom", "no DICOM file found (1 file(s) looked at)",
     "No DICOM image and no NIfTI volume was found in the upload: no DICOM file found (1 file(s) looked at). "
     "(reason: not_dicom)"),
    ("bad_usage", "--age is required:", "The upload cannot be used as it is: is required. (reason: bad_usage)"),
    ("spine_not_covered", "fewer than two whole bodies of T10-L5 were found\n",
     "Too little of the thoracolumbar spine was found to score the scan: fewer than two whole bodies of T10-L5 were "
     "found. (reason: spine_not_covered)"),
])
def test_errors_are_one_line_in_radiologists_words(code: str, message: str, expected: str) -> None:
    line = say(PublicError(code, message))
    assert line == expected
    assert "\n" not in line and "--" not in line and not line.rstrip(". ").endswith(":")


def test_an_enhanced_scan_puts_its_warning_under_the_probability() -> None:
    from dataclasses import replace

    from inference.contrast import AortaReading, decide

    res = result_fixture()
    assert "unenhanced-bone" not in probability_html(res)
    enhanced = replace(res, prediction=replace(res.prediction, contrast=decide(AortaReading(170.0, ("L1",), 2), True)))
    html = probability_html(enhanced)
    assert "portal venous phase" in html and "the model&#x27;s risk is learned from unenhanced-bone HU" in html
