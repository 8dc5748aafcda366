"""DICOM Comprehensive 3D SR (TID 1500 Measurement Report) of a scoring result, written with highdicom.

Content:

* observation context: the model as the observing device (name, version, model hash);
* the scored series as evidence (Current Requested Procedure Evidence Sequence);
* one measurement group "New vertebral fracture within 6 months" (finding site: vertebral column) with the
  probability (DCM 122157), the interval bounds and the risk category as a qualitative evaluation;
* one measurement group per level the model found (finding site: SNOMED CT code of the vertebra) with the
  Genant grade, the height ratio and the mean trabecular attenuation in HU;
* the algorithm (name, version) on every group and measurement;
* in the risk group, a TEXT comment (DCM 121106) with the model card's one line on the training data.

Patient, study and equipment-independent attributes are copied from the source by highdicom, so a PACS files
the SR with the study.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    RelationshipTypeValues,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from inference.findings import Vertebra as LevelFinding
from interop import codes as vc
from interop.source import SourceSeries
from vfrisk.result import Result

MANUFACTURER = "vfrisk"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "vfrisk vertebral fracture risk (decision support)"


def _algorithm(result: Result) -> AlgorithmIdentification:
    return AlgorithmIdentification(name=result.model.name, version=result.model.version, family=vc.AI)


def _observation_context(result: Result) -> ObservationContext:
    device = DeviceObserverIdentifyingAttributes(
        uid=hd.UID(),
        name=result.model.name,
        manufacturer_name=MANUFACTURER,
        model_name=f"{result.model.name} {result.model.version}",
        serial_number=result.model.sha256[:16] or None,
    )
    return ObservationContext(
        observer_device_context=ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _risk_group(result: Result, algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    lo, hi = result.interval
    measurements = [
        Measurement(name=vc.PROBABILITY, value=result.probability, unit=vc.UNIT_ONE, algorithm_id=algorithm),
        Measurement(name=vc.INTERVAL_LOWER, value=lo, unit=vc.UNIT_ONE, algorithm_id=algorithm),
        Measurement(name=vc.INTERVAL_UPPER, value=hi, unit=vc.UNIT_ONE, algorithm_id=algorithm),
    ]
    evaluations = []
    if result.risk_category is not None:
        evaluations.append(QualitativeEvaluation(vc.RISK_CATEGORY, vc.RISK_LEVEL[result.risk_category]))
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="6-month vertebral fracture risk"),
        finding_type=vc.FRACTURE_6M,
        finding_sites=[FindingSite(vc.VERTEBRAL_COLUMN)],
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations or None,
    )
    group[0].ContentSequence.append(TextContentItem(
        name=codes.DCM.Comment, value=f"Model training data: {result.training_data}"[:1024],
        relationship_type=RelationshipTypeValues.CONTAINS))
    return group


def _level_measurements(level: LevelFinding, algorithm: AlgorithmIdentification) -> list[Measurement]:
    out = []
    if level.genant_grade is not None:
        out.append(
            Measurement(
                name=vc.GENANT_GRADE, value=level.genant_grade, unit=vc.UNIT_GRADE, algorithm_id=algorithm
            )
        )
    if level.height_ratio is not None:
        out.append(
            Measurement(
                name=vc.HEIGHT_RATIO, value=level.height_ratio, unit=vc.UNIT_RATIO, algorithm_id=algorithm
            )
        )
    if level.trabecular_hu is not None:
        out.append(
            Measurement(
                name=vc.ATTENUATION,
                value=level.trabecular_hu,
                unit=vc.UNIT_HU,
                derivation=vc.MEAN,
                algorithm_id=algorithm,
            )
        )
    return out


def _level_group(
    level: LevelFinding, algorithm: AlgorithmIdentification
) -> MeasurementsAndQualitativeEvaluations | None:
    measurements = _level_measurements(level, algorithm)
    if not measurements:
        return None
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"Vertebra {level.name_label()}"),
        finding_type=vc.VERTEBRAL_ASSESSMENT,
        finding_sites=[FindingSite(vc.vertebra(level.level))],
        algorithm_id=algorithm,
        measurements=measurements,
    )


def measurement_groups(result: Result) -> list[MeasurementsAndQualitativeEvaluations]:
    """The TID 1501 groups: the risk first, then one per present level that has a SNOMED CT code."""
    algorithm = _algorithm(result)
    groups = [_risk_group(result, algorithm)]
    for level in result.vertebrae:
        if level.present and level.level in vc.LEVELS:
            group = _level_group(level, algorithm)
            if group is not None:
                groups.append(group)
    return groups


def _coding_scheme_identification() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = vc.PRIVATE_SCHEME
    item.CodingSchemeName = vc.PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def build_sr(
    result: Result,
    source: SourceSeries,
    *,
    series_number: int = SR_SERIES_NUMBER,
    instance_number: int = 1,
) -> Comprehensive3DSR:
    """Build the Comprehensive 3D SR (TID 1500) of ``result`` referencing the scored series ``source``."""
    report = MeasurementReport(
        observation_context=_observation_context(result),
        procedure_reported=vc.COMPUTED_TOMOGRAPHY,
        imaging_measurements=measurement_groups(result),
    )
    sr = Comprehensive3DSR(
        evidence=list(source.datasets),
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
    )
    sr.CodingSchemeIdentificationSequence = [_coding_scheme_identification()]
    sr.SoftwareVersions = result.model.version
    return sr


def write_sr(result: Result, source: SourceSeries, path: Path) -> Path:
    """Build the SR and write it to ``path`` (DICOM Part 10 file); return ``path``."""
    sr = build_sr(result, source)
    sr.save_as(path, enforce_file_format=True)
    return path


def read_sr_measurements(path: Path) -> dict[str, Any]:
    """Read an SR written by :func:`write_sr` back through highdicom (round-trip check and PACS read-back).

    Returns ``{"probability", "interval", "risk_category", "training_data", "levels": {level: {"genant_grade",
    "height_ratio", "trabecular_hu"}}, "series_instance_uid"}`` (the last is the referenced series).
    """
    sr = hd.sr.srread(path)
    content = sr.content
    if not isinstance(content, MeasurementReport):
        raise ValueError("the SR is not a TID 1500 measurement report")
    out: dict[str, Any] = {"levels": {}}
    for group in content.get_image_measurement_groups():
        measures = {m.name.value: m.value for m in group.get_measurements()}
        finding = group.finding_type.value if group.finding_type is not None else None
        if finding == vc.FRACTURE_6M.value:
            out.update(_risk_readback(group, measures))
            continue
        sites = {site.value.value for site in group.finding_sites}
        level = next((lv for lv in vc.LEVELS if vc.vertebra(lv).value in sites), None)
        if level is not None:
            out["levels"][level] = {
                "genant_grade": measures.get(vc.GENANT_GRADE.value),
                "height_ratio": measures.get(vc.HEIGHT_RATIO.value),
                "trabecular_hu": measures.get(vc.ATTENUATION.value),
            }
    series = referenced_series(sr)
    out["series_instance_uid"] = series[0] if series else None
    return out


def _risk_readback(group: MeasurementsAndQualitativeEvaluations, measures: dict[str, float]) -> dict[str, Any]:
    items: list[Dataset] = [e[0] for e in group.get_qualitative_evaluations()]
    evaluations = {
        str(i.ConceptNameCodeSequence[0].CodeValue): str(i.ConceptCodeSequence[0].CodeValue) for i in items
    }
    value = evaluations.get(vc.RISK_CATEGORY.value)
    comments = [str(i.TextValue) for i in group[0].ContentSequence
                if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == codes.DCM.Comment.value]
    return {
        "training_data": next((c.removeprefix("Model training data: ") for c in comments), None),
        "probability": measures[vc.PROBABILITY.value],
        "interval": [measures[vc.INTERVAL_LOWER.value], measures[vc.INTERVAL_UPPER.value]],
        "risk_category": next((k for k, c in vc.RISK_LEVEL.items() if c.value == value), None),
    }


def referenced_series(sr: Dataset) -> Sequence[str]:
    """Series Instance UIDs of the evidence an SR references."""
    return [
        str(series.SeriesInstanceUID)
        for study in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.ReferencedSeriesSequence
    ]
