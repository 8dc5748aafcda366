"""PDF report: content (probability, category, levels, suggestion, model, disclaimer) and no patient in logs."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest
from PIL import Image
from test_interop_support import Scored, pdf_text

from interop.keyimage import sagittal_png
from interop.pdf import overrides
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


def test_pdf_states_the_training_data_and_where_the_user_overrode_the_header(
    reports: dict[str, Path], scored: Scored
) -> None:
    text = " ".join(pdf_text(reports["pdf"]).split())
    assert "Trained on synthetic phantoms only" in text
    labs, study = scored.result.labs, scored.study
    assert (study.age, study.sex) != (labs.age, labs.sex)  # the factory's labs differ from the synthetic header
    if study.age != labs.age:
        assert f"Age {labs.age:g} was entered by the user and overrides the image header's {study.age}" in text
    if study.sex != labs.sex:
        assert f"Sex {labs.sex} was entered by the user and overrides the image header's {study.sex}" in text
    assert overrides(scored.result, int(labs.age), labs.sex) == []
    assert overrides(scored.result, None, None) == [
        f"Age {labs.age:g} was entered by the user (the image header gives no age).",
        f"Sex {labs.sex} was entered by the user (the image header gives no sex).",
    ]


def test_alerts_keep_the_engine_order_and_info_is_never_red() -> None:
    """Issue 21: a red flag, CrCl 25 and a recent MI; the URGENT red-flag alert first, INFO lines not red."""
    from factories import make_prediction, make_result
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph

    from interop.pdf import story

    ctx = {"assessment_date": "2026-01-10",
           "patient": {"age": 74, "sex": "F", "dxa": {"t_lumbar_spine": -2.8},
                       "labs": {"crcl_cockcroft_gault_ml_min": 25.0},
                       "cardiovascular": {"mi_dates": ["2025-11-01"]},
                       "symptoms": {"red_flags": ["night_pain"]},
                       "intake": {"calcium_diet_mg_day": 400.0, "calcium_supplement_mg_day": 0.0,
                                  "vitamin_d_iu_day": 0.0}}}
    result = make_result(make_prediction(), ctx)
    alerts = result.suggestion.alerts
    assert alerts[0].severity.value == "urgent" and any(a.severity.value == "info" for a in alerts)
    plain = [(re.sub("<[^>]+>", "", f.text), f) for f in story(result, {}, None) if isinstance(f, Paragraph)]
    drawn = [(t, f) for t, f in plain if t.split(" ")[:2] in (["-", "URGENT"], ["-", "CAUTION"], ["-", "INFO"])]
    assert [t.split()[1].lower() for t, _ in drawn] == [a.severity.value for a in alerts]
    red = colors.HexColor("#b91c1c")
    for text, f in drawn:
        assert (f.style.textColor == red) == text.startswith("- URGENT"), text


def test_an_enhanced_scan_has_its_contrast_line_and_corrected_hu_column(tmp_path: Path) -> None:
    """Issue 19: the phase, what told it and the correction's source in one line above the per-level table, and
    each measured level's HU beside its contrast-corrected value and SD; an unenhanced scan has neither column nor
    correction."""
    from dataclasses import replace

    from factories import make_prediction, make_result, vertebra

    from inference.contrast import AortaReading, corrected, decide
    from inference.findings import Measured
    from interop.pdf import write_pdf

    contrast = decide(AortaReading(172.0, ("L1", "L2"), 3), True)
    level = replace(vertebra("L1", hu=130.0), measured=corrected(Measured("ok", 128.0), contrast))
    result = make_result(replace(make_prediction(vertebrae=[level]), contrast=contrast))
    path = write_pdf(result, tmp_path / "r.pdf")
    text = " ".join(pdf_text(path).split())
    assert "Contrast: portal venous phase (from the aorta and the header; aorta 172 HU)" in text
    assert "Pickhardt 2016" in text and "contrast-corrected" in text and "128 -> 117 +/- 19" in text
    plain = make_result(replace(make_prediction(vertebrae=[level]), contrast=decide(AortaReading(None, (), 3), None)))
    text = " ".join(pdf_text(write_pdf(plain, tmp_path / "p.pdf")).split())
    assert "Contrast: unenhanced (from the aorta)." in text and "contrast-corrected" not in text


def test_fast_ascii85_is_reportlabs_encoding() -> None:
    """The PDF's ASCII85 (issue 20: reportlab's pure-Python encoder took about 0.08 s of each report) is
    character for character reportlab's own, for every remainder, zero words (``z``) and a zero tail."""
    import numpy as np

    from interop.pdf import _PY_ASCII85, ascii85

    rng = np.random.default_rng(20)
    for n in [*range(41), 4097, 100_003]:
        data = rng.integers(0, 256, n, dtype=np.uint8)
        for variant in (data, np.where(np.arange(n) < n // 2, 0, data), np.where(np.arange(n) % 3 == 0, 0, data)):
            raw = variant.astype(np.uint8).tobytes()
            assert ascii85(raw) == _PY_ASCII85(raw), n
    assert ascii85(b"\0\0\0\0\0\0\0") == _PY_ASCII85(b"\0\0\0\0\0\0\0") == "z!!!!~>"
    assert ascii85("text ü") == _PY_ASCII85("text ü")


def test_pdf_is_the_same_file_with_reportlabs_encoder(scored: Scored, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With reportlab's invariant mode (no date, no random ID) the report is byte for byte the one reportlab
    writes with its own encoder."""
    from reportlab import rl_config
    from reportlab.lib import rl_accel

    from interop import pdf

    monkeypatch.setattr(rl_config, "invariant", 1)
    png = sagittal_png(scored.study, scored.result.vertebrae)
    pdf.write_pdf(scored.result, tmp_path / "fast.pdf", patient={"Patient": "X"}, key_image=png)
    assert rl_accel.asciiBase85Encode is pdf.ascii85 or pdf._PY_ASCII85.__name__ != "_py_asciiBase85Encode"
    monkeypatch.setattr(pdf, "use_fast_ascii85", lambda: None)
    for name in ("reportlab.lib.rl_accel", *pdf._ASCII85_USERS):
        module = __import__(name, fromlist=["_"])
        if hasattr(module, "asciiBase85Encode"):
            monkeypatch.setattr(module, "asciiBase85Encode", pdf._PY_ASCII85)
    pdf.write_pdf(scored.result, tmp_path / "reportlab.pdf", patient={"Patient": "X"}, key_image=png)
    fast, slow = (tmp_path / "fast.pdf").read_bytes(), (tmp_path / "reportlab.pdf").read_bytes()
    assert b"ASCII85Decode" in fast and fast == slow
