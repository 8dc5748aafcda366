"""FHIR RiskAssessment of a scoring result, in a collection Bundle with what it is based on.

FHIR version: fhir.resources 8 defaults to R5 and ships no R4 subpackage; this module uses its ``R4B``
subpackage (FHIR 4.3.0), whose RiskAssessment, Observation, ImagingStudy, Device and Bundle have the R4
(4.0.1) structure. Every resource is validated by fhir.resources when it is built and the Bundle is parsed
back before it is written.

The Bundle holds:

* ``RiskAssessment``: the 6-month probability (``prediction.probabilityDecimal``, ``whenRange`` 0-6 months),
  the interval and risk category (``rationale``, ``qualitativeRisk``), ``method`` and ``performer`` naming
  the model and its version, ``basis`` pointing at the ImagingStudy (by DICOM Study Instance UID) and the lab
  Observations;
* ``ImagingStudy`` identified by ``urn:oid:<Study Instance UID>`` with the scored series;
* ``Observation`` for urine NTX and the DXA T-score when the result has them;
* ``Device`` for the model (name, version, hash).

The patient is referenced by the Patient ID of the DICOM header (identifier only; no Patient resource).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from clinical.vocabulary import category_label
from interop import codes as vc
from vfrisk.result import Result

DICOM_UID_SYSTEM = "urn:dicom:uid"
UCUM = "http://unitsofmeasure.org"
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
LOCAL_RISK_SYSTEM = "urn:vfrisk:risk-category"
LOCAL_METHOD_SYSTEM = "urn:vfrisk:model"
QUALITATIVE = {"low": "low", "high": "high", "very_high": "high"}
"""FHIR risk-probability code for each category (FHIR has no 'very high'; the local coding keeps it)."""


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _subject(patient_id: str | None) -> dict[str, Any]:
    if patient_id:
        return {"type": "Patient", "identifier": {"value": patient_id}}
    return {"type": "Patient", "display": "patient of the imaging study (no Patient ID in the header)"}


def _imaging_study(result: Result, subject: dict[str, Any], n_instances: int | None) -> dict[str, Any]:
    series: dict[str, Any] = {
        "uid": result.series_instance_uid,
        "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
    }
    if n_instances:
        series["numberOfInstances"] = n_instances
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{result.study_instance_uid}"}],
        "subject": subject,
        "series": [series],
    }


def _observation(
    code: dict[str, Any], value: float, unit: str, ucum: str, subject: dict[str, Any]
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": code,
        "subject": subject,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum},
    }


def _lab_observations(result: Result, subject: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    ntx = result.labs.ntx
    if ntx is not None:
        code = {
            "coding": [{"system": vc.LOCAL_LAB_SYSTEM, "code": vc.NTX_LOCAL[0], "display": vc.NTX_LOCAL[1]}],
            "text": vc.NTX_TEXT,
        }
        out.append(_observation(code, ntx, "nmol BCE/mmol creatinine", "nmol/mmol", subject))
    tscore = result.labs.bmd_tscore
    if tscore is not None:
        code = {
            "coding": [{"system": vc.LOINC_SYSTEM, "code": vc.TSCORE_LOINC[0], "display": vc.TSCORE_LOINC[1]}],
            "text": "Lowest DXA T-score",
        }
        out.append(_observation(code, tscore, "T-score", "{T-score}", subject))
    return out


def _device(result: Result) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "note": [{"text": f"Training data: {result.training_data}"}],
        "deviceName": [{"name": result.model.name, "type": "model-name"}],
        "version": [{"value": result.model.version}],
        "identifier": [{"system": "urn:vfrisk:model-sha256", "value": result.model.sha256 or "unknown"}],
    }


def _prediction(result: Result) -> dict[str, Any]:
    lo, hi = result.interval
    prediction: dict[str, Any] = {
        "outcome": {"text": "New vertebral fracture"},
        "probabilityDecimal": result.probability,
        "whenRange": {
            "low": {"value": 0, "unit": "months", "system": UCUM, "code": "mo"},
            "high": {"value": 6, "unit": "months", "system": UCUM, "code": "mo"},
        },
        "rationale": f"Calibrated probability {result.probability:.3f}, uncertainty interval "
        f"{lo:.3f}-{hi:.3f}, from CT and labs by {result.model.name} {result.model.version}.",
    }
    if result.risk_category is not None:
        prediction["qualitativeRisk"] = {
            "coding": [
                {"system": RISK_PROBABILITY_SYSTEM, "code": QUALITATIVE[result.risk_category]},
                {"system": LOCAL_RISK_SYSTEM, "code": result.risk_category},
            ],
            "text": category_label(result.risk_category),
        }
    return prediction


def _risk_assessment(
    result: Result, subject: dict[str, Any], basis: list[dict[str, Any]], device_url: str, when: str
) -> dict[str, Any]:
    model = f"{result.model.name} {result.model.version}"
    return {
        "resourceType": "RiskAssessment",
        "status": "preliminary",
        "subject": subject,
        "occurrenceDateTime": when,
        "method": {
            "coding": [
                {
                    "system": LOCAL_METHOD_SYSTEM,
                    "code": result.model.name,
                    "version": result.model.version,
                    "display": model,
                }
            ],
            "text": model,
        },
        "performer": {"reference": device_url, "type": "Device", "display": model},
        "basis": basis,
        "prediction": [_prediction(result)],
        "note": [{"text": result.disclaimer}, {"text": f"Model training data: {result.training_data}"},
                 *({"text": w} for w in result.warnings)],
    }


def build_bundle(
    result: Result,
    *,
    patient_id: str | None = None,
    n_instances: int | None = None,
    when: datetime | None = None,
) -> Bundle:
    """The collection Bundle (RiskAssessment first) for ``result``, validated by fhir.resources (R4B)."""
    subject = _subject(patient_id)
    when_text = (when or datetime.now(UTC)).isoformat(timespec="seconds")
    study_url, device_url = _urn(), _urn()
    study = _imaging_study(result, subject, n_instances)
    labs = [(_urn(), obs) for obs in _lab_observations(result, subject)]
    basis = [
        {
            "reference": study_url,
            "type": "ImagingStudy",
            "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{result.study_instance_uid}"},
        }
    ] + [{"reference": url, "type": "Observation"} for url, _ in labs]
    risk = _risk_assessment(result, subject, basis, device_url, when_text)
    entries = [(_urn(), risk), (study_url, study), *labs, (device_url, _device(result))]
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": when_text,
            "entry": [{"fullUrl": url, "resource": res} for url, res in entries],
        }
    )


def write_fhir(result: Result, path: Path, *, patient_id: str | None = None, n_instances: int | None = None) -> Path:
    """Write the Bundle as JSON to ``path`` after parsing the text back (validation round trip)."""
    text = build_bundle(result, patient_id=patient_id, n_instances=n_instances).model_dump_json(indent=2)
    Bundle.model_validate_json(text)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_risk_assessment(path: Path) -> dict[str, Any]:
    """Parse and validate a Bundle written by :func:`write_fhir`; return its RiskAssessment as a dict."""
    bundle = Bundle.model_validate_json(path.read_text(encoding="utf-8"))
    for entry in bundle.entry or []:
        resource = entry.resource
        if resource is not None and resource.get_resource_type() == "RiskAssessment":
            data: dict[str, Any] = json.loads(resource.model_dump_json())
            return data
    raise ValueError("the bundle holds no RiskAssessment")
