"""The typed result: the JSON fields of each schema version, round trips, refusals, and Genant grading (R-GEN-1)
at its boundaries."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from factories import make_prediction, make_result, vertebra

from inference.contrast import AortaReading, corrected, decide
from inference.findings import Measured
from inference.result import SCHEMA_VERSION, Prediction
from inference.thresholds import GENANT_RATIO, genant_grade, genant_grade_from_loss, genant_grade_from_pct
from vfrisk.result import Result

SCHEMA = {
    1: {
        "result": ["schema_version", "probability", "interval", "model", "study_instance_uid", "series_instance_uid",
                   "input", "labs", "vertebrae", "warnings", "disclaimer", "suggestion", "risk_category"],
        "model": ["name", "version", "sha256"],
        "input": ["slices", "spacing_mm", "orientation", "sha256"],
        "labs": ["ntx_nmol_bce_per_mmol_cr", "bmd_tscore", "age", "sex"],
        "vertebra": ["level", "present", "genant_grade", "height_ratio", "trabecular_hu", "z_mm"],
    },
    2: {
        "result": ["schema_version", "probability", "interval", "model", "study_instance_uid", "series_instance_uid",
                   "input", "labs", "vertebrae", "warnings", "disclaimer", "anchors", "transitional", "suggestion",
                   "risk_category"],
        "model": ["name", "version", "sha256"],
        "input": ["slices", "spacing_mm", "orientation", "sha256"],
        "labs": ["ntx_nmol_bce_per_mmol_cr", "bmd_tscore", "age", "sex"],
        "vertebra": ["level", "present", "genant_grade", "height_ratio", "trabecular_hu", "z_mm", "name_confidence",
                     "name_uncertain"],
    },
    3: {
        "result": ["schema_version", "probability", "interval", "model", "study_instance_uid", "series_instance_uid",
                   "input", "labs", "vertebrae", "warnings", "disclaimer", "anchors", "transitional", "suggestion",
                   "risk_category"],
        "model": ["name", "version", "sha256", "training_data"],
        "input": ["slices", "spacing_mm", "orientation", "sha256"],
        "labs": ["ntx_nmol_bce_per_mmol_cr", "bmd_tscore", "age", "sex"],
        "vertebra": ["level", "present", "genant_grade", "height_ratio", "trabecular_hu", "z_mm", "name_confidence",
                     "name_uncertain"],
    },
    4: {
        "result": ["schema_version", "probability", "interval", "model", "study_instance_uid", "series_instance_uid",
                   "input", "labs", "vertebrae", "warnings", "disclaimer", "anchors", "transitional", "contrast",
                   "suggestion", "risk_category"],
        "model": ["name", "version", "sha256", "training_data"],
        "input": ["slices", "spacing_mm", "orientation", "sha256"],
        "labs": ["ntx_nmol_bce_per_mmol_cr", "bmd_tscore", "age", "sex"],
        "vertebra": ["level", "present", "genant_grade", "height_ratio", "trabecular_hu", "z_mm", "name_confidence",
                     "name_uncertain"],
        "measured": ["quality", "trabecular_hu", "height_anterior_mm", "height_middle_mm", "height_posterior_mm",
                     "height_ratio", "trabecular_hu_corrected", "trabecular_hu_corrected_sd"],
        "contrast": ["phase", "source", "aorta_hu", "aorta_levels", "header", "correction"],
        "correction": ["offset_hu", "sd_hu", "cite", "source"],
    },
}
"""The result-JSON fields of every schema version, in order. A change to the fields bumps SCHEMA_VERSION and adds
a version here; the old entries stay, as a record of what each version held."""


def sample() -> Result:
    """An enhanced scan's result: one measured level (with its contrast-corrected HU), one level not found."""
    contrast = decide(AortaReading(318.0, ("L1",), 1), True)
    measured = corrected(Measured("ok", 96.0, 24.1, 20.3, 24.0, 0.84), contrast)
    levels = [replace(vertebra("L1", grade=2, ratio=0.71, hu=84.0, z_mm=-10.0), measured=measured),
              vertebra("L2", present=False)]
    return make_result(replace(make_prediction(vertebrae=levels, warnings=["levels not in the scan: L2"]),
                               contrast=contrast))


def test_the_result_json_has_the_fields_of_its_schema_version() -> None:
    data = sample().to_json()
    fields = SCHEMA[SCHEMA_VERSION]
    assert data["schema_version"] == SCHEMA_VERSION
    assert list(data) == fields["result"]
    assert list(data["model"]) == fields["model"] and list(data["input"]) == fields["input"]
    assert list(data["labs"]) == fields["labs"]
    assert all(list(v) == fields["vertebra"] + (["measured"] if "measured" in v else []) for v in data["vertebrae"])
    assert list(data["vertebrae"][0]["measured"]) == fields["measured"]
    assert list(data["contrast"]) == fields["contrast"]
    assert list(data["contrast"]["correction"]) == fields["correction"]


def test_the_contrast_facts_and_the_corrected_hu_in_the_json() -> None:
    """Issue 19: an arterial scan (aorta and header) carries Pompe 2015's offset; the measured level's corrected
    HU is the measured one minus it, with the offset's SD; an unenhanced one has no correction."""
    data = sample().to_json()
    assert data["contrast"]["phase"] == "arterial" and data["contrast"]["source"] == "both"
    assert data["contrast"]["correction"]["offset_hu"] == 13.5 and "Pompe" in data["contrast"]["correction"]["source"]
    m = data["vertebrae"][0]["measured"]
    assert m["trabecular_hu_corrected"] == 82.5 and m["trabecular_hu_corrected_sd"] == 19.2
    plain = decide(AortaReading(None, (), 3), None)
    assert plain.phase == "none" and plain.correction is None
    assert corrected(Measured("ok", 96.0), plain).trabecular_hu_corrected is None


def test_json_round_trip_is_exact() -> None:
    result = sample()
    text = json.dumps(result.to_json())
    assert Result.from_json(json.loads(text)) == result
    assert Prediction.from_json(json.loads(text)) == result.prediction


@pytest.mark.parametrize(("change", "message"), [
    ({"schema_version": 99}, "schema_version"),
    ({"probability": float("nan")}, "probability"),
    ({"interval": [0.5, 0.6]}, "does not contain"),
    ({"study_instance_uid": "1.2.abc"}, "not a DICOM UID"),
    ({"labs": {"ntx_nmol_bce_per_mmol_cr": 40.0, "bmd_tscore": -2.0, "age": 70.0, "sex": ""}}, "labs"),
    ({"vertebrae": [{"level": "L1", "genant_grade": 4}]}, "genant_grade"),
    ({"contrast": {"phase": "venous"}}, "contrast.phase"),
    ({"contrast": {"phase": "arterial", "source": "guess"}}, "contrast.source"),
    ({"contrast": {"phase": "arterial", "aorta_hu": "high"}}, "contrast.aorta_hu"),
    ({"risk_category": "moderate"}, "risk_category"),
])
def test_malformed_json_is_refused_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Result.from_json(sample().to_json() | change)


def test_genant_grade_at_exactly_20_25_and_40_percent() -> None:
    """R-GEN-1: < 20 %: 0; 20 to < 25 %: 1; 25 to 40 %: 2; > 40 %: 3, however the ratio was computed."""
    assert [genant_grade(r) for r in (0.81, 0.80, 0.76, 0.75, 0.61, 0.60, 0.59)] == [0, 1, 1, 2, 2, 2, 3]
    assert genant_grade(1 - 0.2) == 1 and genant_grade(0.1 + 0.7) == 1  # 0.7999999999999999
    assert genant_grade(1 - 0.4) == 2 and genant_grade(0.6 - 1e-12) == 2
    assert [genant_grade_from_pct(p) for p in (19.99, 20.0, 24.99, 25.0, 40.0, 40.01)] == [0, 1, 1, 2, 2, 3]
    assert genant_grade_from_pct(None) is None
    assert [genant_grade_from_loss(x) for x in (0.0, 0.2, 0.25, 0.4, 0.41)] == [0, 1, 2, 2, 3]
    assert GENANT_RATIO == (0.8, 0.75, 0.6)


def test_the_suggestion_engine_and_the_inference_grade_alike() -> None:
    from clinical.facts import genant_grade as clinical_grade

    for pct in (0.0, 19.9, 20.0, 22.0, 25.0, 33.0, 40.0, 40.5, 60.0):
        assert clinical_grade(pct) == genant_grade(1 - pct / 100)


def test_the_training_data_line_comes_from_the_model_card() -> None:
    """Issue 21: every output states the model's training data in one line taken from its card, never made up."""
    from inference.bundle import UNDESCRIBED, default_bundle, training_line

    card = json.loads((default_bundle() / "model.json").read_text())
    assert training_line(card) == card["training_data"]["description"]  # the run wrote it (training.run)
    assert training_line(card).startswith("Trained on synthetic phantoms only: 1200 synthetic studies of phantom "
                                          "family A")
    assert training_line({"intended_use": card["intended_use"]}) == (
        "Trained on synthetic phantoms only: validate locally before any use.")
    described = {"training_data": {"description": "Trained on 2000 synthetic\n phantoms."}, "intended_use": "x"}
    assert training_line(described) == "Trained on 2000 synthetic phantoms."
    assert training_line({"intended_use": "Research use."}) == UNDESCRIBED
    assert training_line({}) == UNDESCRIBED
    assert sample().to_json()["model"]["training_data"] == sample().training_data
