"""FHIR of a scoring result: a ``transaction`` Bundle that a FHIR server can take as it is.

FHIR version: fhir.resources 8 defaults to R5 and ships no R4 subpackage; this module uses its ``R4B``
subpackage (FHIR 4.3.0), whose resources used here have the R4 (4.0.1) structure. fhir.resources checks
structure only; :func:`check_transaction` checks what a server needs beyond it (every entry has a ``urn:uuid``
fullUrl and a request, every reference resolves inside the bundle).

The bundle is built as plain JSON data, each element's children written in the order of the FHIR specification
(fhir.resources' ``elements_sequence``) and instants as fhir.resources writes them (``Z`` for UTC), so that
:func:`bundle_json` is the text fhir.resources' ``Bundle.model_dump_json(indent=2)`` makes of it without building
its models (about 0.2 s of a ``predict --out``, import included); :func:`write_fhir` runs
:func:`check_transaction` on it, and the tests parse every bundle with fhir.resources and compare the two texts.
:func:`build_bundle` (the validated ``Bundle`` model) and the readers import fhir.resources when called.

Every entry is a conditional create (``POST`` with ``ifNoneExist`` on a stable identifier), so posting the same
result twice creates nothing new. The Bundle holds:

* ``Patient``: the DICOM Patient ID as identifier, its ``system`` from the Issuer of Patient ID (an ISO OID in
  its qualifiers becomes ``urn:oid:``; the free-text issuer is mapped to a system URI by :class:`FhirConfig`;
  without either the identifier has no system and the issuer text is its assigner). No patient without an ID.
* ``ImagingStudy`` identified by the Study Instance UID and the accession number (type ``ACSN``), listing the
  scored CT series and the DICOM objects written with this bundle (SR, SEG, Encapsulated PDF, key image) with
  their SOP classes and instance UIDs;
* ``Device``: the model (name, version, hash, training data);
* ``Observation`` for urine NTX (LOINC 14115-0) and the lowest DXA T-score (LOINC 38265-5), category
  laboratory / imaging; no effective date (the labs given to the model carry none: missing stays missing);
* ``Observation`` per level found (category imaging, effective at the study date, body site the SNOMED CT
  vertebra): Genant grade (coded), height ratio, trabecular HU, the name confidence and whether the name is
  uncertain, and the measured heights in mm;
* ``RiskAssessment``: the 6-month probability, interval and risk category with its reasons, the outcome coded,
  ``method`` and ``performer`` naming the model, ``basis`` the ImagingStudy and the lab Observations;
* ``DiagnosticReport``: identified by the SR's SOP Instance UID, linking the ImagingStudy (which lists the SR), the
  level Observations (``result``), the RiskAssessment (extension ``workflow-supportingInfo``) and the PDF report
  (``presentedForm``, base64), with a conclusion that states the category's reasons and the disclaimer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from clinical.vocabulary import category_label
from inference.errors import InputError
from interop import codes as vc
from interop.source import SourceSeries
from vfrisk.result import Result

if TYPE_CHECKING:
    from fhir.resources.R4B.bundle import Bundle

DICOM_UID_SYSTEM = "urn:dicom:uid"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
SUPPORTING_INFO = "http://hl7.org/fhir/StructureDefinition/workflow-supportingInfo"
LOCAL_RISK_SYSTEM = "urn:vfrisk:risk-category"
LOCAL_METHOD_SYSTEM = "urn:vfrisk:model"
LOCAL_CONCEPT_SYSTEM = "urn:vfrisk:concept"
"""The private concepts of :mod:`interop.codes` (DICOM scheme ``99VFRISK``) in FHIR."""
RESULT_ID_SYSTEM = "urn:vfrisk:result"
MODEL_ID_SYSTEM = "urn:vfrisk:model-sha256"
CONFIG_ENV = "VFRISK_FHIR_CONFIG"
QUALITATIVE = {"low": "low", "high": "high", "very_high": "high"}
"""FHIR risk-probability code for each category (FHIR has no 'very high'; the local coding keeps it)."""
SOP_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.104.1": "DOC",
    "1.2.840.10008.5.1.4.1.1.7": "OT",
}
"""Modality of the series of each DICOM object vfrisk writes (SR, SEG, Encapsulated PDF, Secondary Capture)."""


@dataclass(frozen=True)
class FhirConfig:
    """Site configuration: the identifier systems the DICOM header cannot give.

    Read from a JSON file (``VFRISK_FHIR_CONFIG`` names it): ``{"patient_identifier_systems": {"<Issuer of
    Patient ID as written in the header>": "<system URI>"}, "accession_system": "<system URI>"}``.
    """

    patient_identifier_systems: Mapping[str, str] = field(default_factory=dict)
    accession_system: str | None = None

    @classmethod
    def from_file(cls, path: Path) -> FhirConfig:
        """Read the JSON file; :class:`InputError` (``bad_config``) naming what is wrong."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError("bad_config", f"FHIR configuration {path.name} cannot be read as JSON "
                             f"({type(exc).__name__})") from None
        systems = data.get("patient_identifier_systems", {}) if isinstance(data, dict) else None
        if not isinstance(systems, dict) or not all(isinstance(v, str) and v for v in systems.values()):
            raise InputError("bad_config", f"{path.name}: patient_identifier_systems must map issuer text to a "
                             "system URI")
        accession = data.get("accession_system")
        if accession is not None and not isinstance(accession, str):
            raise InputError("bad_config", f"{path.name}: accession_system must be a URI")
        return cls({str(k): v for k, v in systems.items()}, accession)

    @classmethod
    def from_env(cls) -> FhirConfig:
        """The configuration named by ``VFRISK_FHIR_CONFIG``, or an empty one."""
        path = os.environ.get(CONFIG_ENV)
        return cls.from_file(Path(path)) if path else cls()


@dataclass(frozen=True)
class DicomObject:
    """A DICOM object written with the bundle (SR, SEG, Encapsulated PDF, key image)."""

    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    description: str = ""


@dataclass(frozen=True)
class FhirLinks:
    """What the bundle links beyond the result: the header's identifiers and dates, the DICOM objects written
    with it and the PDF report."""

    patient_id: str | None = None
    issuer: str | None = None
    issuer_oid: str | None = None
    accession: str | None = None
    accession_oid: str | None = None
    study_date: str | None = None
    """FHIR date (YYYY-MM-DD) of the study."""
    n_instances: int | None = None
    objects: Mapping[str, DicomObject] = field(default_factory=dict)
    """By format: ``sr``, ``seg``, ``encapsulated_pdf``, ``key_image``."""
    pdf: bytes | None = None

    @classmethod
    def of(cls, source: SourceSeries | None, made: Mapping[str, Dataset], pdf: bytes | None) -> FhirLinks:
        """The links of a study read from DICOM (``source``) with the objects ``made``; few for NIfTI."""
        objects = {k: DicomObject(str(ds.SeriesInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                  str(ds.get("SeriesDescription", "") or "")) for k, ds in made.items()}
        if source is None:
            return cls(objects=objects, pdf=pdf)
        first = source.first
        return cls(
            patient_id=_text(first, "PatientID"),
            issuer=_text(first, "IssuerOfPatientID"),
            issuer_oid=_iso_oid(first.get("IssuerOfPatientIDQualifiersSequence")),
            accession=_text(first, "AccessionNumber"),
            accession_oid=_iso_oid(first.get("IssuerOfAccessionNumberSequence")),
            study_date=_fhir_date(_text(first, "StudyDate")),
            n_instances=len(source.datasets) if not source.multiframe else None,
            objects=objects,
            pdf=pdf,
        )


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


def _iso_oid(items: Any) -> str | None:
    """The ISO OID of an issuer's Universal Entity ID (``urn:oid:`` form), when the header gives one."""
    for item in items or []:
        uid, kind = _text(item, "UniversalEntityID"), _text(item, "UniversalEntityIDType")
        if uid and kind == "ISO":
            return f"urn:oid:{uid}"
    return None


def _fhir_date(da: str | None) -> str | None:
    if not da or len(da) != 8 or not da.isdigit():
        return None
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def result_key(result: Result) -> str:
    """A stable identifier of this scoring: study, series, model version and hash, input hash and labs."""
    labs = json.dumps(result.labs.as_dict(), sort_keys=True)
    text = "|".join((result.study_instance_uid, result.series_instance_uid, result.model.version,
                     result.model.sha256, result.input_sha256, labs))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _coding(code: Any, system: str | None = None) -> dict[str, str]:
    """A FHIR coding of a DICOM code (pydicom ``Code``)."""
    systems = {"SCT": SNOMED, "DCM": DCM_SYSTEM, "UCUM": UCUM, vc.PRIVATE_SCHEME: LOCAL_CONCEPT_SYSTEM}
    return {"system": system or systems[code.scheme_designator], "code": code.value, "display": code.meaning}


class _Bundle:
    """The entries being built, each with its fullUrl and conditional-create request."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, resource: dict[str, Any], if_none_exist: str | None) -> str:
        url = _urn()
        request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        return url


def _identifier_query(identifier: Mapping[str, Any]) -> str:
    value = str(identifier["value"])
    return f"identifier={identifier['system']}|{value}" if identifier.get("system") else f"identifier={value}"


def patient_identifier(links: FhirLinks, config: FhirConfig) -> dict[str, Any] | None:
    """The Patient identifier: value from the Patient ID, system from the issuer's OID or the configuration."""
    if not links.patient_id:
        return None
    identifier: dict[str, Any] = {"type": {"coding": [{"system": V2_0203, "code": "MR"}]}}
    system = links.issuer_oid or (config.patient_identifier_systems.get(links.issuer) if links.issuer else None)
    if system:
        identifier["system"] = system
    identifier["value"] = links.patient_id
    if links.issuer:
        identifier["assigner"] = {"display": links.issuer}
    return identifier


def _patient(bundle: _Bundle, links: FhirLinks, config: FhirConfig) -> dict[str, Any]:
    """Add the Patient (when the header names one); return the subject reference."""
    identifier = patient_identifier(links, config)
    if identifier is None:
        return {"display": "patient of the imaging study (no Patient ID in the header)"}
    url = bundle.add({"resourceType": "Patient", "identifier": [identifier]}, _identifier_query(identifier))
    return {"reference": url, "type": "Patient"}


def _study_identifiers(result: Result, links: FhirLinks, config: FhirConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{result.study_instance_uid}"}]
    if links.accession:
        accession: dict[str, Any] = {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]}}
        system = links.accession_oid or config.accession_system
        if system:
            accession["system"] = system
        accession["value"] = links.accession
        out.append(accession)
    return out


def _imaging_study(result: Result, subject: dict[str, Any], links: FhirLinks, config: FhirConfig) -> dict[str, Any]:
    ct: dict[str, Any] = {"uid": result.series_instance_uid,
                          "modality": {"system": DCM_SYSTEM, "code": "CT"}}
    if links.n_instances:
        ct["numberOfInstances"] = links.n_instances
    series = [ct]
    for obj in links.objects.values():
        modality = SOP_MODALITY.get(obj.sop_class_uid, "OT")
        entry: dict[str, Any] = {"uid": obj.series_uid, "modality": {"system": DCM_SYSTEM, "code": modality}}
        if obj.description:
            entry["description"] = obj.description
        entry["numberOfInstances"] = 1
        entry["instance"] = [{"uid": obj.sop_instance_uid, "sopClass": {"system": "urn:ietf:rfc:3986",
                                                                         "code": f"urn:oid:{obj.sop_class_uid}"}}]
        series.append(entry)
    study: dict[str, Any] = {"resourceType": "ImagingStudy", "identifier": _study_identifiers(result, links, config),
                             "status": "available", "subject": subject}
    if links.study_date:
        study["started"] = links.study_date
    study["series"] = series
    return study


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code}]}]


def _lab_observations(result: Result, subject: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
    ntx = result.labs.ntx
    if ntx is not None:
        yield {
            "resourceType": "Observation", "identifier": [{"system": RESULT_ID_SYSTEM, "value": f"{key}:ntx"}],
            "status": "final", "category": _category("laboratory"),
            "code": {"coding": [
                {"system": vc.LOINC_SYSTEM, "code": vc.NTX_LOINC[0], "display": vc.NTX_LOINC[1]},
                {"system": vc.LOCAL_LAB_SYSTEM, "code": vc.NTX_LOCAL[0], "display": vc.NTX_LOCAL[1]}],
                "text": vc.NTX_TEXT},
            "subject": subject, "valueQuantity": _quantity(ntx, "nmol BCE/mmol creatinine", "nmol/mmol"),
        }
    tscore = result.labs.bmd_tscore
    if tscore is not None:
        yield {
            "resourceType": "Observation", "identifier": [{"system": RESULT_ID_SYSTEM, "value": f"{key}:bmd_tscore"}],
            "status": "final", "category": _category("imaging"),
            "code": {"coding": [{"system": vc.LOINC_SYSTEM, "code": vc.TSCORE_LOINC[0],
                                 "display": vc.TSCORE_LOINC[1]}], "text": "Lowest DXA T-score"},
            "subject": subject, "valueQuantity": _quantity(tscore, "T-score", "{T-score}"),
        }


def _component(code: Any, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [_coding(code)], "text": code.meaning}, **value}


def _level_components(level: Any) -> list[dict[str, Any]]:
    out = []
    if level.genant_grade is not None:
        grade = vc.GENANT[level.genant_grade]
        out.append(_component(vc.GENANT_GRADE, valueCodeableConcept={
            "coding": [_coding(grade)], "text": f"Genant grade {level.genant_grade} ({grade.meaning.lower()})"}))
    if level.height_ratio is not None:
        out.append(_component(vc.HEIGHT_RATIO, valueQuantity=_quantity(level.height_ratio, "ratio", "{ratio}")))
    if level.trabecular_hu is not None:
        out.append(_component(vc.ATTENUATION, valueQuantity=_quantity(level.trabecular_hu, "HU", "[hnsf'U]")))
    if level.name_confidence is not None:
        out.append(_component(vc.NAME_CONFIDENCE, valueQuantity=_quantity(level.name_confidence, "1", "1")))
    out.append(_component(vc.NAME_UNCERTAIN, valueBoolean=bool(level.name_uncertain)))
    measured = level.measured
    if measured is not None and measured.quality == "ok":
        for site, value in (("anterior", measured.height_anterior_mm), ("middle", measured.height_middle_mm),
                            ("posterior", measured.height_posterior_mm)):
            if value is not None:
                component = _component(vc.HEIGHT, valueQuantity=_quantity(value, "mm", "mm"))
                component["code"]["text"] = f"{site} height (measured)"
                out.append(component)
    return out


def _level_observations(result: Result, subject: dict[str, Any], key: str, links: FhirLinks, study_url: str,
                        device_url: str) -> Iterator[dict[str, Any]]:
    for level in result.found_levels():
        if level.level not in vc.LEVELS:
            continue
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": RESULT_ID_SYSTEM, "value": f"{key}:{level.level}"}],
            "status": "preliminary", "category": _category("imaging"),
            "code": {"coding": [_coding(vc.VERTEBRAL_ASSESSMENT)], "text": f"Vertebra {level.name_label()}"},
            "subject": subject,
        }
        if links.study_date:
            obs["effectiveDateTime"] = links.study_date
        obs["bodySite"] = {"coding": [_coding(vc.vertebra(level.level))], "text": level.level}
        obs["device"] = {"reference": device_url, "type": "Device"}
        obs["derivedFrom"] = [{"reference": study_url, "type": "ImagingStudy"}]
        obs["component"] = _level_components(level)
        yield obs


def _device(result: Result) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "identifier": [{"system": MODEL_ID_SYSTEM, "value": result.model.sha256 or "unknown"}],
        "deviceName": [{"name": result.model.name, "type": "model-name"}],
        "version": [{"value": result.model.version}],
        "note": [{"text": f"Training data: {result.training_data}"}],
    }


def _reasons(result: Result) -> str:
    reasons = list(result.suggestion.category_reasons)
    return "; ".join(reasons) if reasons else "no criterion beyond the model's probability"


def _prediction(result: Result) -> dict[str, Any]:
    lo, hi = result.interval
    category = category_label(result.risk_category)
    return {
        "outcome": {"coding": [_coding(vc.FRACTURE_6M)], "text": "New vertebral fracture within 6 months"},
        "probabilityDecimal": result.probability,
        "qualitativeRisk": {
            "coding": [{"system": RISK_PROBABILITY_SYSTEM, "code": QUALITATIVE[result.risk_category]},
                       {"system": LOCAL_RISK_SYSTEM, "code": result.risk_category}],
            "text": category,
        },
        "whenRange": {
            "low": {"value": 0, "unit": "months", "system": UCUM, "code": "mo"},
            "high": {"value": 6, "unit": "months", "system": UCUM, "code": "mo"},
        },
        "rationale": f"Calibrated probability {result.probability:.3f}, uncertainty interval {lo:.3f}-{hi:.3f}, "
                     f"from CT and labs by {result.model.name} {result.model.version}. Risk category {category}: "
                     f"{_reasons(result)}.",
    }


def _risk_assessment(result: Result, subject: dict[str, Any], basis: list[dict[str, Any]], device_url: str,
                     when: str, key: str) -> dict[str, Any]:
    model = f"{result.model.name} {result.model.version}"
    return {
        "resourceType": "RiskAssessment",
        "identifier": [{"system": RESULT_ID_SYSTEM, "value": key}],
        "status": "preliminary",
        "method": {"coding": [{"system": LOCAL_METHOD_SYSTEM, "version": result.model.version,
                               "code": result.model.name, "display": model}], "text": model},
        "subject": subject,
        "occurrenceDateTime": when,
        "performer": {"reference": device_url, "type": "Device", "display": model},
        "basis": basis,
        "prediction": [_prediction(result)],
        "note": [{"text": result.disclaimer}, {"text": f"Model training data: {result.training_data}"},
                 *({"text": w} for w in result.warnings)],
    }


def _conclusion(result: Result) -> str:
    lo, hi = result.interval
    return (f"6-month probability of a new vertebral fracture {100 * result.probability:.1f}% "
            f"(interval {100 * lo:.1f}-{100 * hi:.1f}%); risk category {category_label(result.risk_category)}: "
            f"{_reasons(result)}. {result.disclaimer}")


def _diagnostic_report(result: Result, subject: dict[str, Any], refs: Mapping[str, Any], links: FhirLinks,
                       when: str, key: str) -> dict[str, Any]:
    identifiers = [{"system": RESULT_ID_SYSTEM, "value": f"{key}:report"}]
    sr = links.objects.get("sr")
    if sr is not None:
        identifiers.append({"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{sr.sop_instance_uid}"})
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "extension": [{"url": SUPPORTING_INFO,
                       "valueReference": {"reference": refs["risk"], "type": "RiskAssessment"}}],
        "identifier": identifiers,
        "status": "preliminary",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD"}]}],
        "code": {"coding": [{"system": LOCAL_METHOD_SYSTEM, "code": "vertebral-fracture-risk",
                             "display": "Vertebral fracture risk from CT (decision support)"}],
                 "text": "Vertebral fracture risk from CT (decision support)"},
        "subject": subject,
    }
    if links.study_date:
        report["effectiveDateTime"] = links.study_date
    report["issued"] = when
    report["result"] = [{"reference": url, "type": "Observation"} for url in refs["levels"]]
    report["imagingStudy"] = [{"reference": refs["study"], "type": "ImagingStudy"}]
    report["conclusion"] = _conclusion(result)
    if links.pdf:
        report["presentedForm"] = [{
            "contentType": "application/pdf", "language": "en",
            "data": base64.b64encode(links.pdf).decode("ascii"), "size": len(links.pdf),
            "hash": base64.b64encode(hashlib.sha1(links.pdf).digest()).decode("ascii"),  # FHIR: SHA-1
            "title": "vfrisk report (PDF)", "creation": when,
        }]
    return report


def fhir_instant(when: datetime) -> str:
    """An instant as fhir.resources writes it: ISO 8601 to the second, ``Z`` for UTC. ``ValueError`` for a
    time without a zone (FHIR requires one: fhir.resources refuses it)."""
    if when.utcoffset() is None:
        raise ValueError("a FHIR instant needs a time zone")
    text = when.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def bundle_data(result: Result, links: FhirLinks | None = None, config: FhirConfig | None = None, *,
                when: datetime | None = None) -> dict[str, Any]:
    """The transaction Bundle for ``result`` as JSON data (every element in FHIR order), checked by
    :func:`check_transaction`."""
    links, config = links or FhirLinks(), config or FhirConfig.from_env()
    when_text = fhir_instant(when or datetime.now(UTC))
    key = result_key(result)
    bundle = _Bundle()
    subject = _patient(bundle, links, config)
    study = _imaging_study(result, subject, links, config)
    study_url = bundle.add(study, _identifier_query(study["identifier"][0]))
    device = _device(result)
    device_url = bundle.add(device, _identifier_query(device["identifier"][0]))
    labs = [bundle.add(o, _identifier_query(o["identifier"][0])) for o in _lab_observations(result, subject, key)]
    levels = [bundle.add(o, _identifier_query(o["identifier"][0]))
              for o in _level_observations(result, subject, key, links, study_url, device_url)]
    basis = [{"reference": study_url, "type": "ImagingStudy",
              "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{result.study_instance_uid}"}}]
    basis += [{"reference": url, "type": "Observation"} for url in labs]
    risk = _risk_assessment(result, subject, basis, device_url, when_text, key)
    risk_url = bundle.add(risk, _identifier_query(risk["identifier"][0]))
    refs = {"study": study_url, "levels": levels, "risk": risk_url}
    report = _diagnostic_report(result, subject, refs, links, when_text, key)
    bundle.add(report, _identifier_query(report["identifier"][0]))
    data = {"resourceType": "Bundle", "type": "transaction", "timestamp": when_text, "entry": bundle.entries}
    check_transaction(data)
    return data


def bundle_json(result: Result, links: FhirLinks | None = None, config: FhirConfig | None = None, *,
                when: datetime | None = None) -> str:
    """The transaction Bundle for ``result`` as JSON text: what fhir.resources' ``model_dump_json(indent=2)``
    writes of it (see the module's docstring), without fhir.resources."""
    return json.dumps(bundle_data(result, links, config, when=when), indent=2, ensure_ascii=False)


def build_bundle(result: Result, links: FhirLinks | None = None, config: FhirConfig | None = None, *,
                 when: datetime | None = None) -> Bundle:
    """The transaction Bundle for ``result``, validated by fhir.resources (R4B) and :func:`check_transaction`."""
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate(bundle_data(result, links, config, when=when))


def _references(node: Any) -> Iterator[str]:
    """Every ``reference`` string anywhere in a resource."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def check_transaction(data: Mapping[str, Any]) -> None:
    """What a FHIR server needs of a transaction beyond structure; ``ValueError`` naming the first problem.

    The bundle is a ``transaction``; every entry has a unique ``urn:uuid`` fullUrl, a resource, and a request
    with a method and a URL (``POST`` to the resource's type); every reference in any resource names the fullUrl
    of an entry of the bundle.
    """
    if data.get("type") != "transaction":
        raise ValueError("the bundle is not a transaction")
    entries = data.get("entry") or []
    urls = [e.get("fullUrl", "") for e in entries]
    if len(set(urls)) != len(urls) or not all(u.startswith("urn:uuid:") for u in urls):
        raise ValueError("every entry needs its own urn:uuid fullUrl")
    for entry in entries:
        request, resource = entry.get("request") or {}, entry.get("resource") or {}
        if not request.get("method") or not request.get("url"):
            raise ValueError(f"entry {entry.get('fullUrl')} has no request method and URL")
        if request["method"] == "POST" and request["url"] != resource.get("resourceType"):
            raise ValueError(f"entry {entry.get('fullUrl')} posts to {request['url']}")
        for ref in _references(resource):
            if ref not in urls:
                raise ValueError(f"reference {ref} does not resolve inside the bundle")


def write_fhir(result: Result, path: Path, *, links: FhirLinks | None = None, config: FhirConfig | None = None) -> Path:
    """Write the transaction Bundle as JSON to ``path`` (:func:`bundle_json`, checked by
    :func:`check_transaction`)."""
    path.write_text(bundle_json(result, links, config) + "\n", encoding="utf-8")
    return path


def read_risk_assessment(path: Path) -> dict[str, Any]:
    """Parse and validate a Bundle written by :func:`write_fhir`; return its RiskAssessment as a dict."""
    return read_resources(path)["RiskAssessment"][0]


def read_resources(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Parse and validate a Bundle written by :func:`write_fhir`: resource type -> resources (each with its
    ``fullUrl`` added), in bundle order."""
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate_json(path.read_text(encoding="utf-8"))
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.entry or []:
        if entry.resource is None:
            continue
        data: dict[str, Any] = json.loads(entry.resource.model_dump_json())
        out.setdefault(entry.resource.get_resource_type(), []).append({"fullUrl": entry.fullUrl, **data})
    if "RiskAssessment" not in out:
        raise ValueError("the bundle holds no RiskAssessment")
    return out
