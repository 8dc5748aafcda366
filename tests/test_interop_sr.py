"""DICOM SR (TID 1500): validators, highdicom round trip, references and copied attributes."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
from test_interop_support import Scored, dciodvfy_errors, run_tool

from interop import codes as vc
from interop.sr import read_sr_measurements

pytest_plugins = ["test_interop_support"]

COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
          "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName")


def test_dsrdump_reads_without_errors_or_warnings(reports: dict[str, Path]) -> None:
    proc = run_tool("dsrdump", str(reports["sr"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    assert "Imaging Measurement Report" in proc.stdout
    assert "Probability" in proc.stdout


def test_dciodvfy_reports_no_error(reports: dict[str, Path]) -> None:
    assert dciodvfy_errors(reports["sr"]) == []


def test_round_trip_through_highdicom(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    result = scored.result.to_json()
    assert back["probability"] == result["probability"]
    assert back["interval"] == result["interval"]
    assert back["risk_category"] == result["risk_category"]
    assert back["series_instance_uid"] == result["series_instance_uid"]
    present = {v["level"]: v for v in result["vertebrae"] if v["present"]}
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
    sr = hd.sr.srread(reports["sr"])
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    sites = {
        (site.value.value, site.value.scheme_designator)
        for group in sr.content.get_image_measurement_groups()
        for site in group.finding_sites
    }
    assert ("66794005", "SCT") in sites  # L1 vertebra
    assert ("12989004", "SCT") in sites  # T11 vertebra
    assert (vc.VERTEBRAL_COLUMN.value, "SCT") in sites


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
    n_present = sum(v["present"] for v in scored.result.to_json()["vertebrae"])
    assert len(names) == len(versions) >= 1 + 3 + n_present * 4  # groups and measurements
    assert set(names) == {scored.result.to_json()["model"]["name"]}
    assert set(versions) == {scored.result.to_json()["model"]["version"]}


def test_patient_and_study_copied_from_source(reports: dict[str, Path], scored: Scored) -> None:
    sr = pydicom.dcmread(reports["sr"])
    source = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    for keyword in COPIED:
        assert str(sr.get(keyword, "")) == str(source.get(keyword, "")), keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID


def test_evidence_references_every_instance_of_the_scored_series(reports: dict[str, Path], scored: Scored) -> None:
    sr = pydicom.dcmread(reports["sr"])
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == scored.result.to_json()["series_instance_uid"]
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in scored.source.iterdir()}
    assert {item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence} == sources


def test_sr_states_the_training_data(reports: dict[str, Path], scored: Scored) -> None:
    back = read_sr_measurements(reports["sr"])
    assert back["training_data"] == scored.result.training_data
    assert "synthetic phantoms" in back["training_data"]
