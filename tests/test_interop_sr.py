"""DICOM SR (TID 1500): validators, highdicom round trip, TID 1411 groups resolving their SEG segments, coded
values, references and copied attributes."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
from test_interop_support import Scored, dciodvfy_errors, run_tool

from interop import codes as vc
from interop.sr import category_rules, read_sr_measurements, referenced_series

pytest_plugins = ["test_interop_support"]

COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
          "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName")


def _groups(path: Path) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    sr = hd.sr.srread(path)
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    return [*sr.content.get_image_measurement_groups(), *sr.content.get_volumetric_roi_measurement_groups()]


def _present(scored: Scored) -> dict[str, dict]:
    return {v["level"]: v for v in scored.result.to_json()["vertebrae"] if v["present"]}


def test_dsrdump_reads_without_errors_or_warnings(reports: dict[str, Path]) -> None:
    proc = run_tool("dsrdump", str(reports["sr"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    assert "Imaging Measurement Report" in proc.stdout
    assert "Probability" in proc.stdout
    assert "Referenced Segment" in proc.stdout


def test_dciodvfy_reports_no_error(reports: dict[str, Path]) -> None:
    assert dciodvfy_errors(reports["sr"]) == []


def test_round_trip_through_highdicom(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    result = scored.result.to_json()
    assert back["probability"] == result["probability"]
    assert back["interval"] == result["interval"]
    assert back["risk_category"] == result["risk_category"]
    assert back["series_instance_uid"] == result["series_instance_uid"]
    present = _present(scored)
    assert set(back["levels"]) == set(present)  # L4 was reported absent: no group
    for level, values in back["levels"].items():
        assert values["genant_grade"] == present[level]["genant_grade"]
        assert abs(values["height_ratio"] - present[level]["height_ratio"]) < 1e-6
        assert abs(values["trabecular_hu"] - present[level]["trabecular_hu"]) < 1e-6


def test_sr_is_comprehensive_3d_tid_1500(reports: dict[str, Path]) -> None:
    sr = hd.sr.srread(reports["sr"])
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.Modality == "SR"


def test_finding_sites_are_snomed_vertebra_codes(reports: dict[str, Path]) -> None:
    sites = {(site.value.value, site.value.scheme_designator)
             for group in _groups(reports["sr"]) for site in group.finding_sites}
    assert ("66794005", "SCT") in sites  # L1 vertebra
    assert ("12989004", "SCT") in sites  # T11 vertebra
    assert (vc.VERTEBRAL_COLUMN.value, "SCT") in sites


def test_level_groups_are_tid_1411_and_resolve_their_seg_segment(reports: dict[str, Path], scored: Scored) -> None:
    """highdicom reads each level's TID 1411 group; its segment exists in the SEG, names the same vertebra, and
    the source images it cites are images of the scored series that hold that segment."""
    sr = hd.sr.srread(reports["sr"])
    seg = hd.seg.segread(reports["seg"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in scored.source.iterdir()}
    assert len(groups) == len(segments) >= 4
    for group in groups:
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_sop_class_uid == seg.SOPClassUID
        (number,) = ref.referenced_segment_numbers
        level_code = group.finding_sites[0].value.value
        assert segments[number].AnatomicRegionSequence[0].CodeValue == level_code
        cited = {img.referenced_sop_instance_uid for img in ref.source_images_for_segmentation}
        assert cited and cited <= sources
        for sop in cited:
            assert seg.get_pixels_by_source_instance([sop], segment_numbers=[number]).any()


def test_heights_in_mm_genant_coded_name_confidence(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    present = _present(scored)
    measured = [lv for lv, v in present.items() if (v.get("measured") or {}).get("quality") == "ok"]
    assert len(measured) >= 3
    for level in measured:
        want = present[level]["measured"]
        got = back["levels"][level]["heights_mm"]
        assert got == {"anterior": want["height_anterior_mm"], "middle": want["height_middle_mm"],
                       "posterior": want["height_posterior_mm"]}
        assert back["levels"][level]["measured_hu"] == want["trabecular_hu"]
    groups = _groups(reports["sr"])
    genant = [e[0] for g in groups for e in g.get_qualitative_evaluations()
              if e[0].ConceptNameCodeSequence[0].CodeValue == vc.GENANT_GRADE.value]
    assert genant and {i.ConceptCodeSequence[0].CodingSchemeDesignator for i in genant} == {"SCT"}
    for level, values in back["levels"].items():
        assert values["name_uncertain"] == present[level]["name_uncertain"]
        assert values["name_confidence"] == present[level]["name_confidence"]


def test_risk_category_reason_in_words_and_rules_coded(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    assert back["category_reasons"] == list(scored.result.suggestion.category_reasons)
    assert back["category_reasons"]  # the context.md example is very high for a reason
    assert back["category_rules"] == category_rules(scored.result)
    assert "R-CAT-1" in back["category_rules"]
    assert scored.result.disclaimer in back["comments"]


def test_private_scheme_is_declared(reports: dict[str, Path]) -> None:
    sr = pydicom.dcmread(reports["sr"])
    (item,) = sr.CodingSchemeIdentificationSequence
    assert item.CodingSchemeDesignator == vc.PRIVATE_SCHEME


def _text_items(ds: pydicom.Dataset, meaning: str) -> list[str]:
    out = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == meaning:
            out.append(str(item.TextValue))
        out += _text_items(item, meaning)
    return out


def test_algorithm_name_and_version_on_every_measurement(reports: dict[str, Path], scored: Scored) -> None:
    sr = pydicom.dcmread(reports["sr"])
    names, versions = _text_items(sr, "Algorithm Name"), _text_items(sr, "Algorithm Version")
    n_present = len(_present(scored))
    assert len(names) == len(versions) >= 1 + 3 + n_present * 4  # groups and measurements
    model = scored.result.to_json()["model"]
    assert set(names) == {model["name"], vc.MEASUREMENT_ALGORITHM}  # the model's values and the measurement's
    assert model["version"] in set(versions)


def test_patient_and_study_copied_from_source(reports: dict[str, Path], scored: Scored) -> None:
    sr = pydicom.dcmread(reports["sr"])
    source = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    for keyword in COPIED:
        assert str(sr.get(keyword, "")) == str(source.get(keyword, "")), keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID


def test_evidence_references_the_scored_series_and_the_seg(reports: dict[str, Path], scored: Scored) -> None:
    sr = pydicom.dcmread(reports["sr"])
    seg = pydicom.dcmread(reports["seg"], stop_before_pixels=True)
    assert set(referenced_series(sr)) == {scored.result.series_instance_uid, seg.SeriesInstanceUID}
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    series = next(s for s in study.ReferencedSeriesSequence
                  if s.SeriesInstanceUID == scored.result.series_instance_uid)
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in scored.source.iterdir()}
    assert {item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence} == sources


def test_sr_states_the_training_data(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    assert back["training_data"] == scored.result.training_data
    assert "synthetic phantoms" in back["training_data"]


def test_document_is_highdicoms_comprehensive_3d_sr(scored: Scored, tmp_path: Path) -> None:
    """The SR document is built without highdicom's re-reading of the content tree (``interop.sr._document``):
    the file equals the one :class:`highdicom.sr.Comprehensive3DSR` writes of the same content and evidence, after
    normalising dates and times (the UIDs are the same on both sides)."""
    from normalise import Placeholders, dicom

    from interop.seg import build_seg
    from interop.source import study_source_series
    from interop.sr import _document, measurement_groups

    source = study_source_series(scored.study, scored.source)
    seg = build_seg(scored.result, scored.study, source)
    assert seg is not None
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=vc.COMPUTED_TOMOGRAPHY,
        imaging_measurements=measurement_groups(scored.result, source, seg),
    )
    kwargs = {"series_instance_uid": hd.UID(), "series_number": 9901, "sop_instance_uid": hd.UID(),
              "instance_number": 1, "manufacturer": "vfrisk", "is_complete": True, "series_description": "d"}
    evidence = [*source.datasets, seg]
    _document(evidence, report[0], **kwargs).save_as(tmp_path / "fast.dcm", enforce_file_format=True)
    hd.sr.Comprehensive3DSR(evidence=evidence, content=report[0], **kwargs).save_as(
        tmp_path / "highdicom.dcm", enforce_file_format=True)
    names = Placeholders(set())
    assert dicom(tmp_path / "fast.dcm", names) == dicom(tmp_path / "highdicom.dcm", names)
    assert len(hd.sr.srread(tmp_path / "fast.dcm").content.get_volumetric_roi_measurement_groups()) >= 4
