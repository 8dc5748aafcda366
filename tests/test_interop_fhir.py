"""FHIR transaction bundle (fhir.resources R4B for structure; the transaction rules checked here): entries and
requests, references resolving inside the bundle, identifier systems, accession, LOINC labs, per-level
observations, RiskAssessment and the DiagnosticReport linking it with the SR and the PDF.

No FHIR server could be installed here (HAPI needs a download outside PyPI/Debian): the bundle is checked against
what a server requires of a transaction, entry by entry."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from test_interop_support import Scored

from inference.errors import InputError
from interop import codes as vc
from interop.fhir import (
    CONFIG_ENV,
    FhirConfig,
    FhirLinks,
    build_bundle,
    check_transaction,
    patient_identifier,
    read_resources,
    read_risk_assessment,
)
from interop.source import read_source_series

pytest_plugins = ["test_interop_support"]


def _data(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "reference"] + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def test_bundle_is_a_transaction_that_validates(reports: dict[str, Path]) -> None:
    bundle = Bundle.model_validate_json(reports["fhir"].read_text())
    assert bundle.type == "transaction"
    check_transaction(_data(reports["fhir"]))


def test_every_entry_has_a_urn_uuid_and_a_conditional_post(reports: dict[str, Path]) -> None:
    entries = _data(reports["fhir"])["entry"]
    urls = [e["fullUrl"] for e in entries]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    for entry in entries:
        request = entry["request"]
        assert request["method"] == "POST" and request["url"] == entry["resource"]["resourceType"]
        assert request["ifNoneExist"].startswith("identifier=")  # posting the same result twice creates nothing


def test_every_reference_resolves_inside_the_bundle(reports: dict[str, Path]) -> None:
    data = _data(reports["fhir"])
    urls = {e["fullUrl"] for e in data["entry"]}
    refs = _references([e["resource"] for e in data["entry"]])
    assert len(refs) >= 10 and set(refs) <= urls


def test_check_transaction_refuses_what_a_server_would(reports: dict[str, Path]) -> None:
    data = _data(reports["fhir"])
    dangling = copy.deepcopy(data)
    dangling["entry"][-1]["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}
    with pytest.raises(ValueError, match="does not resolve"):
        check_transaction(dangling)
    no_request = copy.deepcopy(data)
    del no_request["entry"][0]["request"]
    with pytest.raises(ValueError, match="request"):
        check_transaction(no_request)
    collection = {**data, "type": "collection"}
    with pytest.raises(ValueError, match="transaction"):
        check_transaction(collection)


def test_patient_study_and_accession_identifiers(reports: dict[str, Path], scored: Scored) -> None:
    resources = read_resources(reports["fhir"])
    (patient,) = resources["Patient"]
    header = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    assert patient["identifier"][0]["value"] == header.PatientID
    (study,) = resources["ImagingStudy"]
    identifiers = {i.get("type", {}).get("coding", [{}])[0].get("code", "uid"): i for i in study["identifier"]}
    assert identifiers["uid"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{header.StudyInstanceUID}"}
    if header.get("AccessionNumber"):
        assert identifiers["ACSN"]["value"] == header.AccessionNumber
    for resource in (r for rs in resources.values() for r in rs if "subject" in r):
        assert resource["subject"]["reference"] == patient["fullUrl"]


def test_issuer_of_patient_id_becomes_a_system(scored: Scored, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Free-text issuer: mapped through the configuration file; an ISO OID in its qualifiers: urn:oid:;
    neither: no system, the issuer as assigner (nothing made up)."""
    config = tmp_path / "fhir.json"
    config.write_text(json.dumps({"patient_identifier_systems": {"HOSP A": "https://hospital-a.example/mrn"},
                                  "accession_system": "https://hospital-a.example/accession"}))
    monkeypatch.setenv(CONFIG_ENV, str(config))
    loaded = FhirConfig.from_env()
    assert patient_identifier(FhirLinks(patient_id="123", issuer="HOSP A"), loaded)["system"] == \
        "https://hospital-a.example/mrn"
    assert patient_identifier(FhirLinks(patient_id="123", issuer="HOSP A", issuer_oid="urn:oid:1.2.3"),
                              loaded)["system"] == "urn:oid:1.2.3"
    unknown = patient_identifier(FhirLinks(patient_id="123", issuer="OTHER"), loaded)
    assert "system" not in unknown and unknown["assigner"] == {"display": "OTHER"}
    assert patient_identifier(FhirLinks(), loaded) is None
    config.write_text('{"patient_identifier_systems": ["not", "a", "map"]}')
    with pytest.raises(InputError, match="patient_identifier_systems"):
        FhirConfig.from_env()
    config.write_text(json.dumps({"patient_identifier_systems": {"HOSP A": "https://hospital-a.example/mrn"},
                                  "accession_system": "https://hospital-a.example/accession"}))
    source = read_source_series(scored.source, scored.result.series_instance_uid)
    header = copy.deepcopy(source.first)
    header.IssuerOfPatientID = "HOSP A"
    header.AccessionNumber = "ACC123"
    links = FhirLinks.of(type(source)((header, *source.datasets[1:]), source.frames), {}, None)
    data = json.loads(build_bundle(scored.result, links).model_dump_json())
    check_transaction(data)
    patient = next(e for e in data["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["resource"]["identifier"][0]["system"] == "https://hospital-a.example/mrn"
    assert patient["request"]["ifNoneExist"] == f"identifier=https://hospital-a.example/mrn|{header.PatientID}"
    study = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
    accession = next(i for i in study["identifier"] if i.get("value") == "ACC123")
    assert accession["system"] == "https://hospital-a.example/accession"


def test_no_patient_id_no_patient(scored: Scored) -> None:
    data = json.loads(build_bundle(scored.result, FhirLinks(), FhirConfig()).model_dump_json())
    check_transaction(data)
    assert "Patient" not in {e["resource"]["resourceType"] for e in data["entry"]}


def test_probability_window_outcome_and_reason(reports: dict[str, Path], scored: Scored) -> None:
    risk = read_risk_assessment(reports["fhir"])
    (prediction,) = risk["prediction"]
    assert prediction["probabilityDecimal"] == scored.result.to_json()["probability"]
    when = prediction["whenRange"]
    assert (when["low"]["value"], when["high"]["value"]) == (0, 6)
    assert when["low"]["code"] == when["high"]["code"] == "mo"
    assert "0.090-0.190" in prediction["rationale"]
    for reason in scored.result.suggestion.category_reasons:
        assert reason in prediction["rationale"]
    assert {"system": "urn:vfrisk:risk-category", "code": "very_high"} in prediction["qualitativeRisk"]["coding"]
    assert prediction["outcome"]["coding"][0]["code"] == vc.FRACTURE_6M.value


def test_labs_are_loinc_coded_with_categories(reports: dict[str, Path], scored: Scored) -> None:
    resources = read_resources(reports["fhir"])
    (risk,) = resources["RiskAssessment"]
    labs = [o for o in resources["Observation"] if o["code"]["coding"][0]["system"] == "http://loinc.org"]
    assert {b["reference"] for b in risk["basis"] if b["type"] == "Observation"} == {o["fullUrl"] for o in labs}
    by_code = {o["code"]["coding"][0]["code"]: o for o in labs}
    assert by_code["38265-5"]["valueQuantity"]["value"] == -2.6
    assert by_code[vc.NTX_LOINC[0]]["valueQuantity"]["value"] == 52.0
    assert by_code[vc.NTX_LOINC[0]]["category"][0]["coding"][0]["code"] == "laboratory"
    assert "effectiveDateTime" not in by_code["38265-5"]  # the labs carry no date: none is made up


def test_level_observations_carry_grade_confidence_and_heights(reports: dict[str, Path], scored: Scored) -> None:
    resources = read_resources(reports["fhir"])
    levels = {o["bodySite"]["text"]: o for o in resources["Observation"] if "bodySite" in o}
    present = {v.level: v for v in scored.result.found_levels()}
    assert set(levels) == set(present)
    header = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    for level, obs in levels.items():
        assert obs["bodySite"]["coding"][0]["code"] == vc.vertebra(level).value
        assert obs["category"][0]["coding"][0]["code"] == "imaging"
        assert obs["effectiveDateTime"] == f"{header.StudyDate[:4]}-{header.StudyDate[4:6]}-{header.StudyDate[6:]}"
        parts = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
        assert parts[vc.NAME_CONFIDENCE.value]["valueQuantity"]["value"] == present[level].name_confidence
        assert parts[vc.NAME_UNCERTAIN.value]["valueBoolean"] is present[level].name_uncertain
        grade = parts[vc.GENANT_GRADE.value]["valueCodeableConcept"]["coding"][0]
        assert grade["system"] == "http://snomed.info/sct"
        assert grade["code"] == vc.GENANT[present[level].genant_grade].value
        measured = present[level].measured
        if measured is not None and measured.quality == "ok":
            heights = [c["valueQuantity"]["value"] for c in obs["component"]
                       if c["code"]["coding"][0]["code"] == vc.HEIGHT.value]
            assert heights == [measured.height_anterior_mm, measured.height_middle_mm, measured.height_posterior_mm]


def test_diagnostic_report_links_risk_sr_and_pdf(reports: dict[str, Path], scored: Scored) -> None:
    resources = read_resources(reports["fhir"])
    (report,) = resources["DiagnosticReport"]
    (risk,) = resources["RiskAssessment"]
    (study,) = resources["ImagingStudy"]
    assert report["extension"][0]["valueReference"]["reference"] == risk["fullUrl"]
    assert report["imagingStudy"][0]["reference"] == study["fullUrl"]
    sr = pydicom.dcmread(reports["sr"], stop_before_pixels=True)
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{sr.SOPInstanceUID}"} in report["identifier"]
    listed = {i["uid"] for s in study["series"] for i in s.get("instance", [])}
    for fmt in ("sr", "seg", "encapsulated_pdf", "key_image"):
        assert pydicom.dcmread(reports[fmt], stop_before_pixels=True).SOPInstanceUID in listed, fmt
    (form,) = report["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]) == reports["pdf"].read_bytes()
    assert scored.result.disclaimer in report["conclusion"]
    level_urls = {o["fullUrl"] for o in resources["Observation"] if "bodySite" in o}
    assert {r["reference"] for r in report["result"]} == level_urls


def test_method_performer_and_notes(reports: dict[str, Path], scored: Scored) -> None:
    resources = read_resources(reports["fhir"])
    (risk,) = resources["RiskAssessment"]
    model = scored.result.to_json()["model"]
    assert risk["method"]["coding"][0]["version"] == model["version"]
    (device,) = resources["Device"]
    assert device["fullUrl"] == risk["performer"]["reference"]
    assert device["version"][0]["value"] == model["version"]
    assert risk["note"][0]["text"].startswith("Decision support for clinicians; not a diagnosis.")
    notes = [n["text"] for n in risk["note"]]
    assert f"Model training data: {scored.result.training_data}" in notes


def _fhir_resources_text(text: str) -> str:
    """What fhir.resources writes of a bundle's JSON: the models parsed and dumped as the FHIR writer did before
    issue 20 (``Bundle.model_validate(data).model_dump_json(indent=2)``)."""
    return Bundle.model_validate_json(text).model_dump_json(indent=2)


def test_written_bundle_is_what_fhir_resources_writes_of_it(reports: dict[str, Path]) -> None:
    """The bundle is built as plain JSON (no fhir.resources models on the reports' path); fhir.resources parses
    it, its RiskAssessment included, and writes back the same text, key for key and byte for byte."""
    from fhir.resources.R4B.riskassessment import RiskAssessment

    text = reports["fhir"].read_text(encoding="utf-8")
    assert text == _fhir_resources_text(text) + "\n"
    data = _data(reports["fhir"])
    (risk,) = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "RiskAssessment"]
    parsed = RiskAssessment.model_validate(risk)
    assert json.loads(parsed.model_dump_json()) == risk
    assert parsed.prediction is not None and parsed.prediction[0].probabilityDecimal is not None


def test_bundle_json_equals_fhir_resources_for_every_branch(scored: Scored) -> None:
    """Every optional element (patient with an issuer's OID, a configured system or none, accession with and
    without a system, objects with and without a description, PDF, study date or none) and instants in UTC,
    another offset or none: the plain-JSON bundle is the text fhir.resources makes of it."""
    from datetime import UTC, datetime, timedelta, timezone

    from interop.fhir import DicomObject, bundle_json

    objects = {"sr": DicomObject("1.2.3.1", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.3.1.1", "vfrisk SR"),
               "seg": DicomObject("1.2.3.2", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.3.2.1")}
    config = FhirConfig({"HOSP A": "https://hospital-a.example/mrn"}, "https://hospital-a.example/accession")
    cases = [
        (FhirLinks(), FhirConfig(), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (FhirLinks(patient_id="P1", issuer="HOSP A", accession="ACC1", study_date="2020-01-01", n_instances=300,
                   objects=objects, pdf=b"%PDF-1.4\x00\xff"), config,
         datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=1)))),
        (FhirLinks(patient_id="P2", issuer="OTHER", issuer_oid="urn:oid:1.2.3", accession="ACC2",
                   accession_oid="urn:oid:1.2.4", objects={"sr": objects["sr"]}), FhirConfig(),
         datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))),
        (FhirLinks(patient_id="P3", accession="ACC3", study_date="2021-12-31"), FhirConfig(), None),
    ]
    for links, conf, when in cases:
        text = bundle_json(scored.result, links, conf, when=when)
        assert text == _fhir_resources_text(text)
        check_transaction(json.loads(text))
    with pytest.raises(ValueError, match="time zone"):  # FHIR instants have one; fhir.resources refused it too
        bundle_json(scored.result, when=datetime(2026, 1, 2, 3, 4, 5))
