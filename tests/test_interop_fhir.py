"""FHIR RiskAssessment bundle (fhir.resources R4B): validation, probability, whenRange, basis, method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from test_interop_support import Scored

from interop.fhir import read_risk_assessment

pytest_plugins = ["test_interop_support"]


def _resources(path: Path) -> dict[str, list[dict[str, Any]]]:
    data = json.loads(path.read_text())
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in data["entry"]:
        out.setdefault(entry["resource"]["resourceType"], []).append({"fullUrl": entry["fullUrl"], **entry["resource"]})
    return out


def test_bundle_validates_with_fhir_resources(reports: dict[str, Path]) -> None:
    bundle = Bundle.model_validate_json(reports["fhir"].read_text())
    assert bundle.type == "collection"
    assert bundle.entry[0].resource.get_resource_type() == "RiskAssessment"


def test_probability_and_six_month_window(reports: dict[str, Path], scored: Scored) -> None:
    risk = read_risk_assessment(reports["fhir"])
    (prediction,) = risk["prediction"]
    assert prediction["probabilityDecimal"] == scored.result.to_json()["probability"]
    when = prediction["whenRange"]
    assert (when["low"]["value"], when["high"]["value"]) == (0, 6)
    assert when["low"]["code"] == when["high"]["code"] == "mo"
    assert "0.090-0.190" in prediction["rationale"]
    assert {"system": "urn:vfrisk:risk-category", "code": "very_high"} in prediction["qualitativeRisk"]["coding"]


def test_basis_points_at_imaging_study_by_uid_and_lab_observations(reports: dict[str, Path], scored: Scored) -> None:
    resources = _resources(reports["fhir"])
    (risk,) = resources["RiskAssessment"]
    uid = f"urn:oid:{scored.result.to_json()['study_instance_uid']}"
    study_refs = [b for b in risk["basis"] if b["type"] == "ImagingStudy"]
    assert study_refs[0]["identifier"] == {"system": "urn:dicom:uid", "value": uid}
    (study,) = resources["ImagingStudy"]
    assert study["fullUrl"] == study_refs[0]["reference"]
    assert study["identifier"][0]["value"] == uid
    assert study["series"][0]["uid"] == scored.result.to_json()["series_instance_uid"]
    observations = {o["fullUrl"]: o for o in resources["Observation"]}
    assert {b["reference"] for b in risk["basis"] if b["type"] == "Observation"} == set(observations)
    by_text = {o["code"]["text"]: o for o in observations.values()}
    tscore = by_text["Lowest DXA T-score"]
    assert tscore["code"]["coding"][0] == {
        "system": "http://loinc.org", "code": "38265-5", "display": "DXA [T-score] Bone density"
    }
    assert tscore["valueQuantity"]["value"] == -2.6
    ntx = next(o for t, o in by_text.items() if "N-telopeptide" in t)
    assert ntx["valueQuantity"]["value"] == 52.0


def test_method_performer_and_subject(reports: dict[str, Path], scored: Scored) -> None:
    resources = _resources(reports["fhir"])
    (risk,) = resources["RiskAssessment"]
    model = scored.result.to_json()["model"]
    assert risk["method"]["coding"][0]["version"] == model["version"]
    (device,) = resources["Device"]
    assert device["fullUrl"] == risk["performer"]["reference"]
    assert device["version"][0]["value"] == model["version"]
    assert risk["subject"]["identifier"]["value"] == "0003000001"
    assert risk["note"][0]["text"].startswith("Decision support for clinicians; not a diagnosis.")




def test_fhir_states_the_training_data(reports: dict[str, Path], scored: Scored) -> None:
    risk = read_risk_assessment(reports["fhir"])
    notes = [n["text"] for n in risk["note"]]
    assert f"Model training data: {scored.result.training_data}" in notes
    assert "synthetic phantoms" in scored.result.training_data
