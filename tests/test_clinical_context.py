"""Validation of the clinical context and the JSON-file entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_clinical_support import days_ago, make, med, run

from clinical.context import ClinicalContext
from clinical.engine import suggest, suggest_from_json_file, validate_context
from inference.errors import InputError


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient.age": 150}, "patient.age"),
        ({"patient.age": -1}, "patient.age"),
        ({"patient.sex": "X"}, "patient.sex"),
        ({"patient.weight_kg": 5}, "patient.weight_kg"),
        ({"patient.dxa.t_lumbar_spine": -12}, "patient.dxa.t_lumbar_spine"),
        ({"patient.frax.mof_10y_pct": 120}, "patient.frax.mof_10y_pct"),
        ({"patient.frax.hip_10y_pct": 12.0}, "patient.frax"),
        ({"patient.labs.serum_creatinine_mg_dl": 0}, "patient.labs.serum_creatinine_mg_dl"),
        ({"model.p_vertebral_fracture_6m": 1.5}, "model.p_vertebral_fracture_6m"),
        (
            {"patient.medications": [{"drug": "alendronate", "drug_class": "wonder_drug"}]},
            "patient.medications.0.drug_class",
        ),
        (
            {"patient.medications": [{"drug": "alendronate", "drug_class": "denosumab"}]},
            "patient.medications.0",
        ),
        (
            {"patient.medications": [{"drug": "alendronate", "start": "2025-01-01", "stop": "2024-01-01"}]},
            "patient.medications.0",
        ),
        ({"patient.fractures": [{"site": "hip", "date": "2026-04-01", "fragility": True}]}, "fracture"),
        ({"patient.cardiovascular.mi_dates": ["2027-01-01"]}, "mi_dates"),
        ({"patient.fractures": [{"site": "hip", "date": "2025-13-40"}]}, "patient.fractures.0.date"),
        (
            {"patient.imaging.vertebral_deformities": [{"level": "L1", "genant_grade": 4}]},
            "patient.imaging.vertebral_deformities.0.genant_grade",
        ),
        ({"assessment_date": None}, "assessment_date"),
    ],
)
def test_invalid_values_give_one_line_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        suggest(make(changes))
    assert info.value.code == "invalid_context"
    assert field in info.value.message
    assert "\n" not in info.value.message


def test_missing_assessment_date_is_an_error() -> None:
    data = make()
    del data["assessment_date"]
    with pytest.raises(InputError, match="assessment_date"):
        suggest(data)


def test_not_an_object() -> None:
    with pytest.raises(InputError, match="JSON object"):
        validate_context([1, 2])  # type: ignore[arg-type]


def test_unknown_fields_are_tolerated_and_reported() -> None:
    data = make({"patient.shoe_size": 38})
    data["extra_top"] = 1
    data["patient"]["labs"]["ferritin"] = 50
    out = suggest(data)
    assert "unknown field patient.shoe_size ignored" in out["warnings"]
    assert "unknown field extra_top ignored" in out["warnings"]
    assert "unknown field patient.labs.ferritin ignored" in out["warnings"]


def test_unknown_fracture_site_is_a_warning_not_an_error() -> None:
    out = run({"patient.fractures": [{"site": "skull", "date": days_ago(2000), "fragility": True}]})
    assert out["risk_category"] == "high"
    assert any("skull" in w for w in out["warnings"])


def test_unknown_drug_is_a_warning() -> None:
    out = run({"patient.medications": [med("strontium_ranelate", 300)]})
    assert any("strontium_ranelate" in w for w in out["warnings"])


def test_drug_class_derived_from_drug() -> None:
    ctx = ClinicalContext.model_validate(make({"patient.medications": [med("Risedronate", 300)]}))
    assert ctx.patient.medications[0].resolved_class == "oral_bisphosphonate"


def test_minimal_context_says_what_it_could_not_evaluate() -> None:
    out = suggest({"assessment_date": "2026-03-02"})
    assert out["risk_category"] == "low"
    missing = {n["rule"] for n in out["not_evaluated"]}
    assert {
        "R-REN-1",
        "R-REN-2/3",
        "R-REN-4",
        "R-CA-1",
        "R-VD-1",
        "R-MODEL-1",
        "R-CAT-1",
        "R-CAT-2",
    } <= missing
    assert any(m["key"] == "dxa_recommended" for m in out["monitoring"])


def test_context_model_accepted_directly() -> None:
    ctx = ClinicalContext.model_validate(make())
    assert suggest(ctx) == suggest(make())


def test_json_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(make()))
    assert suggest_from_json_file(path) == suggest(make())


def test_json_file_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(InputError) as info:
        suggest_from_json_file(path)
    assert info.value.code == "invalid_json"
    assert "bad.json" in info.value.message and "line 1" in info.value.message


def test_json_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        suggest_from_json_file(tmp_path / "absent.json")
    assert info.value.code == "unreadable_context"


def test_json_file_invalid_context(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(make({"patient.age": 300})))
    with pytest.raises(InputError) as info:
        suggest_from_json_file(path)
    assert info.value.code == "invalid_context"
    assert info.value.message.startswith("invalid context: patient.age:")


def test_json_file_top_level_list(tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text("[]")
    with pytest.raises(InputError, match="JSON object"):
        suggest_from_json_file(path)


def test_computed_renal_function() -> None:
    out = run({"patient.labs.crcl_cockcroft_gault_ml_min": None, "patient.labs.egfr_ml_min_1_73m2": None})
    assert out["derived"]["crcl_source"] == "cockcroft_gault"
    assert out["derived"]["egfr_source"] == "ckd_epi_2021"
    assert out["derived"]["egfr_ml_min_1_73m2"] == pytest.approx(84.3, abs=0.2)
