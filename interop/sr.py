"""DICOM Comprehensive 3D SR (TID 1500 Measurement Report) of a scoring result, written with highdicom.

Content:

* observation context: the model as the observing device (name, version, model hash);
* evidence: the scored series, and the SEG when the SR points into it;
* one measurement group (TID 1501) "New vertebral fracture within 6 months" (finding site: vertebral column) with
  the probability (DCM 122157), the interval bounds, the risk category as a coded qualitative evaluation (SNOMED CT
  low/high risk; very high is private), the rules of the suggestion engine's category stage that fired (coded,
  private scheme) and the category's reasons in words ("T-score -3.24 < -3.0"), the model card's training-data
  line and the disclaimer;
* one group per level the model found (finding site: SNOMED CT code of the vertebra):
  - a **TID 1411** volumetric ROI group referencing its SEG segment (and the source images holding it) where the
    measurement delineated the body, so that a viewer can jump to the vertebra;
  - a TID 1501 group otherwise, saying that the body was not delineated and why;
  each with the Genant grade **coded** (SNOMED CT normal / mild / moderate / severe), the model's height ratio and
  trabecular HU, the level-name confidence and whether the name is uncertain, and the measurement's anterior,
  middle and posterior heights in mm (DCM "Height" with a SNOMED CT site) and its median trabecular HU, each
  value carrying the algorithm that produced it (the model, or the transparent measurement).

Patient, study and equipment-independent attributes are copied from the source by highdicom, so a PACS files
the SR with the study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
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
    ReferencedSegment,
    RelationshipTypeValues,
    SourceImageForSegmentation,
    SourceSeriesForSegmentation,
    TextContentItem,
    TrackingIdentifier,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from inference.findings import Measured
from inference.findings import Vertebra as LevelFinding
from interop import codes as vc
from interop.seg import coding_scheme_item, segment_numbers
from interop.source import SourceSeries
from vfrisk.result import Result

MANUFACTURER = "vfrisk"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "vfrisk vertebral fracture risk (decision support)"
Group = MeasurementsAndQualitativeEvaluations | VolumetricROIMeasurementsAndQualitativeEvaluations


@dataclass(frozen=True)
class SegLink:
    """The SEG the per-level groups point into: the SEG dataset, per level its segment number, and per segment
    number the SOP Instance UIDs of the source images its frames were derived from."""

    seg: Dataset
    segments: Mapping[str, int]
    sources: Mapping[int, frozenset[str]]

    @classmethod
    def of(cls, seg: Dataset | None) -> SegLink | None:
        """The link to ``seg`` (None for no SEG); its frames are read once here, not once per level."""
        return None if seg is None else cls(seg, segment_numbers(seg), segment_sources(seg))

    def referenced(self, level: str, source: SourceSeries,
                   uids: Sequence[tuple[str, str]] | None = None) -> ReferencedSegment | None:
        """The segment of ``level`` with the source images that hold it (None when the level has none);
        ``uids``: (SOP Class UID, SOP Instance UID) of each of ``source.datasets`` when already listed."""
        number = self.segments.get(level)
        if number is None:
            return None
        sops = self.sources.get(number, frozenset())
        images = [SourceImageForSegmentation(sop_class, sop_uid)
                  for sop_class, sop_uid in (source_uids(source) if uids is None else uids) if sop_uid in sops]
        if images and not source.multiframe:
            return ReferencedSegment(str(self.seg.SOPClassUID), str(self.seg.SOPInstanceUID), number,
                                     source_images=images)
        return ReferencedSegment(str(self.seg.SOPClassUID), str(self.seg.SOPInstanceUID), number,
                                 source_series=SourceSeriesForSegmentation(str(source.first.SeriesInstanceUID)))


def source_uids(source: SourceSeries) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of each instance of the scored series, in order."""
    return [(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in source.datasets]


def segment_sources(seg: Dataset) -> dict[int, frozenset[str]]:
    """Segment number -> SOP Instance UIDs of the source images of the SEG frames that hold it (one pass over the
    SEG's frames)."""
    out: dict[int, set[str]] = {}
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        sops = out.setdefault(number, set())
        for derivation in frame.get("DerivationImageSequence", []):
            sops.update(str(s.ReferencedSOPInstanceUID) for s in derivation.get("SourceImageSequence", []))
    return {number: frozenset(sops) for number, sops in out.items()}


def _algorithm(result: Result) -> AlgorithmIdentification:
    return AlgorithmIdentification(name=result.model.name, version=result.model.version, family=vc.AI)


@cache
def _vfrisk_version() -> str:
    """The installed vfrisk's version (read from the package metadata once per process: a slow look-up)."""
    try:
        return metadata.version("vfrisk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _measurement_algorithm() -> AlgorithmIdentification:
    return AlgorithmIdentification(name=vc.MEASUREMENT_ALGORITHM, version=_vfrisk_version())


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


def _text(name: Any, value: str) -> TextContentItem:
    return TextContentItem(name=name, value=value[:1024], relationship_type=RelationshipTypeValues.CONTAINS)


def category_rules(result: Result) -> list[str]:
    """The rules of the suggestion engine's category stage that fired (``R-CAT-*``, ``R-MODEL-*``), in firing
    order."""
    return [r for r in result.suggestion.rules_fired if r.startswith(("R-CAT-", "R-MODEL-"))]


def _risk_group(result: Result, algorithm: AlgorithmIdentification) -> MeasurementsAndQualitativeEvaluations:
    lo, hi = result.interval
    measurements = [
        Measurement(name=vc.PROBABILITY, value=result.probability, unit=vc.UNIT_ONE, algorithm_id=algorithm),
        Measurement(name=vc.INTERVAL_LOWER, value=lo, unit=vc.UNIT_ONE, algorithm_id=algorithm),
        Measurement(name=vc.INTERVAL_UPPER, value=hi, unit=vc.UNIT_ONE, algorithm_id=algorithm),
    ]
    evaluations = [QualitativeEvaluation(vc.RISK_CATEGORY, vc.RISK_LEVEL[result.risk_category])]
    evaluations += [QualitativeEvaluation(vc.RISK_CATEGORY_RULE, vc.rule_code(r)) for r in category_rules(result)]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="6-month vertebral fracture risk"),
        finding_type=vc.FRACTURE_6M,
        finding_sites=[FindingSite(vc.VERTEBRAL_COLUMN)],
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )
    content = group[0].ContentSequence
    content.extend(_text(vc.RISK_CATEGORY_REASON, reason) for reason in result.suggestion.category_reasons)
    content.append(_text(vc.COMMENT, f"Model training data: {result.training_data}"))
    content.append(_text(vc.COMMENT, result.disclaimer))
    return group


def _model_values(level: LevelFinding, algorithm: AlgorithmIdentification) -> list[Measurement]:
    out = []
    if level.height_ratio is not None:
        out.append(Measurement(name=vc.HEIGHT_RATIO, value=level.height_ratio, unit=vc.UNIT_RATIO,
                               algorithm_id=algorithm))
    if level.trabecular_hu is not None:
        out.append(Measurement(name=vc.ATTENUATION, value=level.trabecular_hu, unit=vc.UNIT_HU,
                               derivation=vc.MEAN, algorithm_id=algorithm))
    if level.name_confidence is not None:
        out.append(Measurement(name=vc.NAME_CONFIDENCE, value=level.name_confidence, unit=vc.UNIT_ONE,
                               algorithm_id=algorithm))
    return out


def _measured_values(level: LevelFinding, measured: Measured | None) -> list[Measurement]:
    """The transparent measurement's heights (mm, with their site) and median trabecular HU."""
    if measured is None or measured.quality != "ok":
        return []
    algorithm = _measurement_algorithm()
    out = []
    for site, value in (("anterior", measured.height_anterior_mm), ("middle", measured.height_middle_mm),
                        ("posterior", measured.height_posterior_mm)):
        if value is not None:
            where = FindingSite(vc.vertebra(level.level), topographical_modifier=vc.HEIGHT_SITES[site])
            out.append(Measurement(name=vc.HEIGHT, value=value, unit=vc.UNIT_MM, finding_sites=[where],
                                   algorithm_id=algorithm))
    if measured.trabecular_hu is not None:
        out.append(Measurement(name=vc.ATTENUATION, value=measured.trabecular_hu, unit=vc.UNIT_HU,
                               derivation=vc.MEDIAN, algorithm_id=algorithm))
    return out


def _level_evaluations(level: LevelFinding) -> list[QualitativeEvaluation]:
    out = []
    if level.genant_grade is not None:
        out.append(QualitativeEvaluation(vc.GENANT_GRADE, vc.GENANT[level.genant_grade]))
    out.append(QualitativeEvaluation(vc.NAME_UNCERTAIN, vc.YES if level.name_uncertain else vc.NO))
    return out


def _level_group(level: LevelFinding, algorithm: AlgorithmIdentification, source: SourceSeries,
                 link: SegLink | None, uids: Sequence[tuple[str, str]] | None = None) -> Group:
    """TID 1411 pointing at the level's SEG segment, or TID 1501 saying why there is none."""
    measurements = _model_values(level, algorithm) + _measured_values(level, level.measured)
    common: dict[str, Any] = {
        "tracking_identifier": TrackingIdentifier(uid=hd.UID(), identifier=f"Vertebra {level.level}"),
        "finding_type": vc.VERTEBRAL_ASSESSMENT,
        "finding_sites": [FindingSite(vc.vertebra(level.level))],
        "algorithm_id": algorithm,
        "measurements": measurements or None,
        "qualitative_evaluations": _level_evaluations(level),
    }
    segment = link.referenced(level.level, source, uids) if link is not None else None
    if segment is not None:
        return VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common)
    group = MeasurementsAndQualitativeEvaluations(**common)
    quality = level.measured.quality if level.measured is not None else "not measured"
    group[0].ContentSequence.append(_text(vc.BODY_NOT_DELINEATED, f"no body segment: {quality}"))
    return group


def measurement_groups(result: Result, source: SourceSeries, seg: Dataset | None = None) -> list[Group]:
    """The groups: the risk first, then one per present level that has a SNOMED CT code (TID 1411 where ``seg``
    holds its body, TID 1501 otherwise)."""
    algorithm = _algorithm(result)
    link = SegLink.of(seg)
    groups: list[Group] = [_risk_group(result, algorithm)]
    uids = source_uids(source) if link is not None else None  # listed once for all levels
    groups += [_level_group(v, algorithm, source, link, uids) for v in result.vertebrae
               if v.present and v.level in vc.LEVELS]
    return groups


def build_sr(
    result: Result,
    source: SourceSeries,
    seg: Dataset | None = None,
    *,
    series_number: int = SR_SERIES_NUMBER,
    instance_number: int = 1,
) -> Dataset:
    """Build the Comprehensive 3D SR (TID 1500) of ``result`` referencing the scored series ``source`` and, where
    given, the SEG ``seg`` of the same result (written first: the SR points at its segments)."""
    report = MeasurementReport(
        observation_context=_observation_context(result),
        procedure_reported=vc.COMPUTED_TOMOGRAPHY,
        imaging_measurements=measurement_groups(result, source, seg),
    )
    evidence = list(source.datasets) + ([seg] if seg is not None else [])
    sr = _document(
        evidence,
        report[0],
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
    sr.CodingSchemeIdentificationSequence = [coding_scheme_item()]
    sr.SoftwareVersions = result.model.version
    return sr


def _document(evidence: Sequence[Dataset], content: Dataset, **kwargs: Any) -> Dataset:
    """The SR document highdicom's :class:`Comprehensive3DSR` makes of ``content`` (the root container) and
    ``evidence`` (``kwargs``: its other arguments), without the work it does on the content tree that the written
    file does not need: a deep copy of the whole tree parsed back into highdicom's content item objects (for its
    ``content`` property) and a search of the tree for the instances it references (checked against
    ``evidence``; ours reference only the scored series and the SEG, both in ``evidence``). About 0.25 s of the
    reports of a 512 x 512 x 300 study.

    highdicom builds the document around an empty root container here, then the root container's own
    attributes are put in the document as highdicom puts them (the same elements, not copies); the evidence
    sequences do not depend on the content (every evidence instance is recorded). The result is a plain
    :class:`~pydicom.dataset.Dataset` with its file meta and preamble (a :class:`Comprehensive3DSR` would hold
    the empty tree as its ``content``); read the written file with :func:`highdicom.sr.srread` for that.
    ``tests/test_interop_sr.py`` compares the files with those of :class:`Comprehensive3DSR` itself."""
    stub = Dataset()
    for tag, value in content.items():
        if tag != _CONTENT_SEQUENCE:
            stub[tag] = value
    stub.ContentSequence = []
    made = Comprehensive3DSR(evidence=evidence, content=stub, **kwargs)
    for tag, value in content.items():
        made[tag] = value
    out = Dataset(made)
    out.file_meta, out.preamble = made.file_meta, made.preamble
    return out


_CONTENT_SEQUENCE = 0x0040A730


def write_sr(result: Result, source: SourceSeries, path: Path, seg: Dataset | None = None) -> Path:
    """Build the SR and write it to ``path`` (DICOM Part 10 file); return ``path``."""
    sr = build_sr(result, source, seg)
    sr.save_as(path, enforce_file_format=True)
    return path


def read_sr_measurements(path: Path) -> dict[str, Any]:
    """Read an SR written by :func:`write_sr` back through highdicom (round-trip check and PACS read-back).

    Returns ``{"probability", "interval", "risk_category", "category_rules", "category_reasons",
    "training_data", "levels": {level: {...}}, "series_instance_uid"}``; each level holds ``genant_grade``,
    ``height_ratio``, ``trabecular_hu``, ``name_confidence``, ``name_uncertain``, ``heights_mm`` (site -> mm),
    ``measured_hu`` and ``segment`` (the referenced SEG segment number, or None). ``series_instance_uid`` is the
    referenced image series (not the SEG's).
    """
    sr = hd.sr.srread(path)
    content = sr.content
    if not isinstance(content, MeasurementReport):
        raise ValueError("the SR is not a TID 1500 measurement report")
    out: dict[str, Any] = {"levels": {}}
    groups: list[Group] = [*content.get_image_measurement_groups(), *content.get_volumetric_roi_measurement_groups()]
    for group in groups:
        finding = group.finding_type.value if group.finding_type is not None else None
        if finding == vc.FRACTURE_6M.value:
            out.update(_risk_readback(group))
            continue
        sites = {site.value.value for site in group.finding_sites}
        level = next((lv for lv in vc.LEVELS if vc.vertebra(lv).value in sites), None)
        if level is not None:
            out["levels"][level] = _level_readback(group)
    image_series = [uid for uid, sop_class in _evidence(sr) if sop_class != hd.seg.Segmentation.__name__]
    out["series_instance_uid"] = image_series[0] if image_series else None
    return out


def _evaluations(group: Group) -> dict[str, list[str]]:
    items: list[Dataset] = [e[0] for e in group.get_qualitative_evaluations()]
    out: dict[str, list[str]] = {}
    for i in items:
        out.setdefault(str(i.ConceptNameCodeSequence[0].CodeValue), []).append(str(i.ConceptCodeSequence[0].CodeValue))
    return out


def _texts(group: Group, concept: Any) -> list[str]:
    return [str(i.TextValue) for i in group[0].ContentSequence
            if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == concept.value]


def _risk_readback(group: Group) -> dict[str, Any]:
    measures = {m.name.value: m.value for m in group.get_measurements()}
    evaluations = _evaluations(group)
    value = next(iter(evaluations.get(vc.RISK_CATEGORY.value, [])), None)
    comments = _texts(group, vc.COMMENT)
    return {
        "training_data": next((c.removeprefix("Model training data: ") for c in comments
                               if c.startswith("Model training data: ")), None),
        "comments": comments,
        "probability": measures[vc.PROBABILITY.value],
        "interval": [measures[vc.INTERVAL_LOWER.value], measures[vc.INTERVAL_UPPER.value]],
        "risk_category": next((k for k, c in vc.RISK_LEVEL.items() if c.value == value), None),
        "category_rules": evaluations.get(vc.RISK_CATEGORY_RULE.value, []),
        "category_reasons": _texts(group, vc.RISK_CATEGORY_REASON),
    }


def _level_readback(group: Group) -> dict[str, Any]:
    values: dict[str, Any] = {}
    heights: dict[str, float] = {}
    for m in group.get_measurements():
        name = m.name.value
        if name == vc.HEIGHT.value:
            site = m.finding_sites[0].topographical_modifier if m.finding_sites else None
            key = next((k for k, c in vc.HEIGHT_SITES.items() if site is not None and c.value == site.value), "?")
            heights[key] = m.value
        elif name == vc.ATTENUATION.value:
            derivation = m.derivation.value if m.derivation is not None else None
            values["measured_hu" if derivation == vc.MEDIAN.value else "trabecular_hu"] = m.value
        else:
            values[name] = m.value
    evaluations = _evaluations(group)
    grade = next(iter(evaluations.get(vc.GENANT_GRADE.value, [])), None)
    uncertain = next(iter(evaluations.get(vc.NAME_UNCERTAIN.value, [])), None)
    segment = group.referenced_segment if isinstance(group, VolumetricROIMeasurementsAndQualitativeEvaluations) \
        else None
    return {
        "genant_grade": next((g for g, c in vc.GENANT.items() if c.value == grade), None),
        "height_ratio": values.get(vc.HEIGHT_RATIO.value),
        "trabecular_hu": values.get("trabecular_hu"),
        "measured_hu": values.get("measured_hu"),
        "name_confidence": values.get(vc.NAME_CONFIDENCE.value),
        "name_uncertain": None if uncertain is None else uncertain == vc.YES.value,
        "heights_mm": heights,
        "segment": int((segment.referenced_segment_numbers or [0])[0]) if segment is not None else None,
        "segment_sop_instance_uid": str(segment.referenced_sop_instance_uid) if segment is not None else None,
    }


def _evidence(sr: Dataset) -> list[tuple[str, str]]:
    """(series UID, 'Segmentation' or the SOP class UID) of each series in the SR's evidence."""
    out = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.ReferencedSeriesSequence:
            classes = {str(i.ReferencedSOPClassUID) for i in series.ReferencedSOPSequence}
            kind = hd.seg.Segmentation.__name__ if classes & _SEG_CLASSES else ",".join(sorted(classes))
            out.append((str(series.SeriesInstanceUID), kind))
    return out


_SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4"}


def referenced_series(sr: Dataset) -> Sequence[str]:
    """Series Instance UIDs of the evidence an SR references (the image series and, if any, the SEG)."""
    return [uid for uid, _ in _evidence(sr)]
