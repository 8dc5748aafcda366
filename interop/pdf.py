"""The PDF report for the chart (reportlab): identity, key image, probability and category, per-level table,
the suggestion (first line, avoid, alerts, monitoring), labs, warnings, model identity and the disclaimer.

The patient's name and ID appear in the document (it is filed in the chart) and nowhere else: nothing here
logs them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from clinical.suggestion import Suggestion
from clinical.vocabulary import category_label
from inference.disclaimer import DISCLAIMER
from vfrisk.result import Result

TITLE = "Vertebral fracture risk - CT decision support report"
_STYLES = getSampleStyleSheet()
_BODY = _STYLES["BodyText"]
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=8, leading=10)
_WARN = ParagraphStyle("warn", parent=_BODY, textColor=colors.HexColor("#9a3412"))
_TABLE_STYLE = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e5e7eb")),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _p(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(text), style)


def _heading(text: str) -> Paragraph:
    return Paragraph(escape(text), _STYLES["Heading2"])


def _identity(patient: Mapping[str, str]) -> list[Flowable]:
    rows = [[k, v] for k, v in patient.items() if v]
    if not rows:
        return []
    table = Table(rows, colWidths=[40 * mm, 130 * mm])
    table.setStyle(_TABLE_STYLE)
    return [table, Spacer(1, 4 * mm)]


def _risk(result: Result) -> list[Flowable]:
    lo, hi = result.interval
    category = category_label(result.risk_category)
    return [
        _heading("6-month risk of a new vertebral fracture"),
        Paragraph(
            f"<b>{100 * result.probability:.1f}%</b> (uncertainty interval {100 * lo:.1f}-{100 * hi:.1f}%). "
            f"Risk category: <b>{escape(category)}</b>.",
            _BODY,
        ),
    ]


def _fmt(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _levels(result: Result) -> list[Flowable]:
    rows: list[list[str]] = [["Level", "Found", "Name confidence", "Genant grade", "Height ratio", "Trabecular HU"]]
    for v in result.vertebrae:
        rows.append(
            [
                v.name_label().split(" ")[0],
                "yes" if v.present else "no",
                _fmt(v.name_confidence, "{:.2f}"),
                _fmt(v.genant_grade, "{}"),
                _fmt(v.height_ratio, "{:.2f}"),
                _fmt(v.trabecular_hu, "{:.0f}"),
            ]
        )
    table = Table(rows, repeatRows=1)
    table.setStyle(_TABLE_STYLE)
    return [_heading("Per-level findings"), table]


def _items(title: str, lines: Iterable[str], style: ParagraphStyle = _BODY) -> list[Flowable]:
    body = [_p(f"- {line}", style) for line in lines]
    return [Paragraph(f"<b>{escape(title)}</b>", _BODY), *body] if body else []


def _suggestion(suggestion: Suggestion) -> list[Flowable]:
    out: list[Flowable] = [_heading("Treatment suggestion")]
    out += _items("First line (preferred first)", [x.value.replace("_", " ") for x in suggestion.first_line])
    out += _items("Deferred", [x.value.replace("_", " ") for x in suggestion.deferred])
    out += _items("Avoid", [f"{a.item.value}: {a.reason}" for a in suggestion.avoid], _WARN)
    out += _items("Alerts", [a.message for a in suggestion.alerts], _WARN)
    out += _items("Monitoring", [m.message for m in suggestion.monitoring])
    out += _items("Why this category", list(suggestion.category_reasons), _SMALL)
    return out


def _labs(result: Result) -> list[Flowable]:
    labs = result.labs
    lines = [
        f"Urine NTX: {_fmt(labs.ntx, '{:g}')} nmol BCE/mmol creatinine",
        f"Lowest DXA T-score: {_fmt(labs.bmd_tscore, '{:g}')}",
        f"Age: {_fmt(labs.age, '{:g}')}; sex: {labs.sex or '-'}",
    ]
    return _items("Inputs used by the model", lines, _SMALL)


def _model(result: Result) -> list[Flowable]:
    m = result.model
    lines = [
        f"Model: {m.name} {m.version} (sha256 {m.sha256[:16] or '-'})",
        f"Study UID {result.study_instance_uid}; series UID {result.series_instance_uid}",
        f"Input hash {result.input_sha256[:16] or '-'}",
    ]
    return [Spacer(1, 3 * mm), *[_p(line, _SMALL) for line in lines]]


def _key_image(png: bytes | None) -> list[Flowable]:
    if not png:
        return []
    image = Image(io.BytesIO(png))
    ratio = image.imageHeight / max(1, image.imageWidth)
    width = min(80 * mm, 110 * mm / ratio)
    image.drawWidth, image.drawHeight = width, width * ratio
    return [_heading("Key image: sagittal, levels marked"), image]


def story(result: Result, patient: Mapping[str, str], key_image: bytes | None) -> list[Flowable]:
    """The report's flowables, top to bottom."""
    parts: Sequence[list[Flowable]] = (
        [Paragraph(escape(TITLE), _STYLES["Title"])],
        _identity(patient),
        _risk(result),
        _key_image(key_image),
        _levels(result),
        _suggestion(result.suggestion),
        _labs(result),
        _items("Warnings", result.warnings, _WARN),
        _model(result),
        [Spacer(1, 4 * mm), Paragraph(f"<b>{escape(DISCLAIMER)}</b>", _BODY)],
    )
    return [flowable for part in parts for flowable in part]


def write_pdf(
    result: Result, path: Path, *, patient: Mapping[str, str] | None = None, key_image: bytes | None = None
) -> Path:
    """Write the PDF report to ``path``; ``patient`` is an ordered label -> value mapping for the header."""
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        title=TITLE,
        author="vfrisk",
        subject=DISCLAIMER,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
    )
    doc.build(story(result, patient or {}, key_image))
    return path
