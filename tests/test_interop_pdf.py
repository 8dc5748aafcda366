"""PDF report: content (probability, category, levels, suggestion, model, disclaimer) and no patient in logs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from PIL import Image
from test_interop_support import Scored, pdf_text

from interop.keyimage import sagittal_png
from interop.reports import write_reports

pytest_plugins = ["test_interop_support"]


def test_pdf_holds_the_report(reports: dict[str, Path], scored: Scored) -> None:
    assert reports["pdf"].read_bytes().startswith(b"%PDF-")
    text = pdf_text(reports["pdf"])
    result = scored.result.to_json()
    assert "13.7%" in text and "9.0-19.0%" in text
    assert "very high" in text
    for v in result["vertebrae"]:
        assert v["level"] in text
    assert "Decision support for clinicians; not a diagnosis." in text
    assert f"{result['model']['name']} {result['model']['version']}" in text
    assert "Key image: sagittal, levels marked" in text


def test_pdf_lists_suggestion_alerts_and_monitoring(reports: dict[str, Path], scored: Scored) -> None:
    text = " ".join(pdf_text(reports["pdf"]).split())
    suggestion = scored.result.to_json()["suggestion"]
    assert "pth analog" in text  # first line
    for item in suggestion["alerts"] + suggestion["monitoring"]:
        words = item["message"].split()[:6]  # long messages wrap over lines
        assert " ".join(words) in text, item["key"]


def test_patient_identity_in_the_pdf_header(reports: dict[str, Path]) -> None:
    text = pdf_text(reports["pdf"])
    assert "SYNTH 0003000001" in text and "Patient ID" in text


def test_no_patient_name_or_id_in_logs(
    scored: Scored, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        write_reports(scored.result, scored.study, scored.source, tmp_path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrote pdf report" in logged
    assert "0003000001" not in logged and "SYNTH" not in logged


def test_key_image_is_a_sagittal_png_with_square_pixels(scored: Scored) -> None:
    png = sagittal_png(scored.study, [])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    (n_z, n_y, _), (sz, sy, _) = scored.study.volume.shape, scored.study.spacing_mm
    assert abs(image.height / image.width - (n_z * sz) / (n_y * sy)) < 0.02  # head-foot by front-back, in mm
