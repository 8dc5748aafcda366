"""The PDF report for the chart (reportlab): identity, key image, probability and category, per-level table,
the suggestion (first line with each choice's cautions, avoid, alerts in the engine's severity order, monitoring),
labs with a note wherever the user's age or sex overrode the image header, warnings, model identity, the model
card's training-data line and the disclaimer.

Colour follows severity, never position: urgent alerts are red, cautions amber, INFO lines plain (never red).

The patient's name and ID appear in the document (it is filed in the chart) and nowhere else: nothing here
logs them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from reportlab.lib import colors, rl_accel
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from clinical.suggestion import Alert
from clinical.vocabulary import Severity, category_label
from inference.disclaimer import DISCLAIMER
from vfrisk.result import Result

TITLE = "Vertebral fracture risk - CT decision support report"
_STYLES = getSampleStyleSheet()
_BODY = _STYLES["BodyText"]
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=8, leading=10)
_WARN = ParagraphStyle("warn", parent=_BODY, textColor=colors.HexColor("#9a3412"))
_SEVERITY_STYLE = {
    Severity.URGENT: ParagraphStyle("urgent", parent=_BODY, textColor=colors.HexColor("#b91c1c")),
    Severity.CAUTION: _WARN,
    Severity.INFO: _BODY,
}
"""Alert colour by severity: INFO is never red."""
_TABLE_STYLE = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e5e7eb")),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


_PY_ASCII85 = rl_accel.asciiBase85Encode
"""reportlab's own ASCII85 encoder: pure Python when its C accelerator (the ``rl-accel`` package) is not
installed, as here (0.07 s of the reports under cProfile, about 0.02-0.04 s without it; most of it the key image)."""
_ASCII85_USERS = ("reportlab.pdfbase.pdfdoc", "reportlab.pdfgen.pdfimages", "reportlab.pdfbase.pdfutils")
"""The reportlab modules that import the encoder by name (each has its own reference to replace)."""


def ascii85(data: bytes | str) -> str:
    """ASCII85 (PDF ``ASCII85Decode``) of ``data``, character for character what reportlab's pure-Python
    encoder writes: each 4-byte big-endian word as five digits ``!``..``u``, a zero word as ``z``, the last
    1-3 bytes zero-padded and written as 2-4 digits (never ``z``), then ``~>``. Computed on whole arrays of
    words; text (reportlab also encodes ``str``, one byte per character) goes to reportlab's own encoder."""
    if isinstance(data, str):
        return str(_PY_ASCII85(data))
    whole, rest = divmod(len(data), 4)
    words = np.frombuffer(data, dtype=">u4", count=whole).astype(np.uint64)
    digits = np.empty((whole, 5), dtype=np.uint8)
    left = words.copy()
    for i in range(4, -1, -1):
        digits[:, i] = left % 85 + 33
        left //= 85
    zero = words == 0
    if zero.any():
        digits[zero, 0] = ord("z")
        keep = np.ones(digits.shape, dtype=bool)
        keep[zero, 1:] = False
        body = digits[keep].tobytes()
    else:
        body = digits.tobytes()
    tail = b""
    if rest:
        num = int.from_bytes(bytes(data[4 * whole:]) + b"\0" * (4 - rest), "big")
        tail = bytes(num // 85 ** (4 - i) % 85 + 33 for i in range(5))[:rest + 1]
    return (body + tail).decode("ascii") + "~>"


def use_fast_ascii85() -> None:
    """Have reportlab encode with :func:`ascii85` (the same text, about 50 times faster) unless its C
    accelerator is installed; idempotent."""
    import sys

    if getattr(_PY_ASCII85, "__name__", "") != "_py_asciiBase85Encode":
        return  # the C accelerator: faster still
    rl_accel.asciiBase85Encode = ascii85
    for name in _ASCII85_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "asciiBase85Encode", None) is _PY_ASCII85:
            module.asciiBase85Encode = ascii85  # type: ignore[attr-defined]


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
    contrast = result.prediction.contrast
    enhanced = contrast is not None and contrast.enhanced
    rows: list[list[str]] = [["Level", "Found", "Name confidence", "Genant grade", "Height ratio", "Trabecular HU",
                              *(["Measured HU, contrast-corrected"] if enhanced else [])]]
    for v in result.vertebrae:
        m = v.measured
        fixed = "-" if m is None or m.trabecular_hu_corrected is None else (
            f"{m.trabecular_hu:.0f} -> {m.trabecular_hu_corrected:.0f} +/- {m.trabecular_hu_corrected_sd:.0f}")
        rows.append(
            [
                v.name_label().split(" ")[0],
                "yes" if v.present else "no",
                _fmt(v.name_confidence, "{:.2f}"),
                _fmt(v.genant_grade, "{}"),
                _fmt(v.height_ratio, "{:.2f}"),
                _fmt(v.trabecular_hu, "{:.0f}"),
                *([fixed] if enhanced else []),
            ]
        )
    table = Table(rows, repeatRows=1)
    table.setStyle(_TABLE_STYLE)
    line = [_p(escape(contrast.summary()), _WARN if enhanced else _BODY)] if contrast is not None else []
    return [_heading("Per-level findings"), *line, table]


def _items(title: str, lines: Iterable[str], style: ParagraphStyle = _BODY) -> list[Flowable]:
    body = [_p(f"- {line}", style) for line in lines]
    return [Paragraph(f"<b>{escape(title)}</b>", _BODY), *body] if body else []


def _words(value: str) -> str:
    return value.replace("_", " ")


def _alert(a: Alert) -> Paragraph:
    return Paragraph(f"- <b>{a.severity.value.upper()}</b> {escape(a.message)}", _SEVERITY_STYLE[a.severity])


def _first_line(result: Result) -> list[Flowable]:
    """The engine's first-line choices in its order, each with the alerts about it (its cautions) beneath."""
    out: list[Flowable] = []
    for choice in result.suggestion.first_line:
        out.append(_p(f"- {_words(choice.value)}"))
        for a in result.cautions(choice):
            style = ParagraphStyle(f"c-{a.severity.value}", parent=_SEVERITY_STYLE[a.severity], leftIndent=12)
            out.append(Paragraph(f"caution ({a.severity.value}): {escape(a.message)}", style))
    return [Paragraph("<b>First line (in the suggestion engine's order)</b>", _BODY), *out] if out else []


def _suggestion(result: Result) -> list[Flowable]:
    suggestion = result.suggestion
    out: list[Flowable] = [_heading("Treatment suggestion")]
    out += _first_line(result)
    out += _items("Deferred (until the alerts are resolved)", [_words(x.value) for x in suggestion.deferred])
    out += _items("Avoid", [f"{_words(a.item.value)}: {a.reason}" for a in suggestion.avoid], _WARN)
    if suggestion.alerts:
        out += [Paragraph("<b>Alerts (most urgent first)</b>", _BODY), *(_alert(a) for a in suggestion.alerts)]
    out += _items("Monitoring", [m.message for m in suggestion.monitoring])
    out += _items("Why this category", list(suggestion.category_reasons), _SMALL)
    return out


def overrides(result: Result, header_age: int | None, header_sex: str | None) -> list[str]:
    """Where the age or sex the model used differs from the image header (the user's entry overrode it), or was
    entered because the header has none; one sentence each."""
    labs, out = result.labs, []
    if header_age is None:
        out.append(f"Age {labs.age:g} was entered by the user (the image header gives no age).")
    elif abs(float(header_age) - labs.age) > 1e-9:
        out.append(f"Age {labs.age:g} was entered by the user and overrides the image header's {header_age}.")
    if not header_sex:
        out.append(f"Sex {labs.sex} was entered by the user (the image header gives no sex).")
    elif header_sex.upper() != labs.sex:
        out.append(f"Sex {labs.sex} was entered by the user and overrides the image header's {header_sex}.")
    return out


def _labs(result: Result, notes: Sequence[str]) -> list[Flowable]:
    labs = result.labs
    lines = [
        f"Urine NTX: {_fmt(labs.ntx, '{:g}')} nmol BCE/mmol creatinine",
        f"Lowest DXA T-score: {_fmt(labs.bmd_tscore, '{:g}')}",
        f"Age: {_fmt(labs.age, '{:g}')}; sex: {labs.sex or '-'}",
        *notes,
    ]
    return _items("Inputs used by the model", lines, _SMALL)


def _training(result: Result) -> list[Flowable]:
    return [Paragraph(f"<b>Model training data:</b> {escape(result.training_data)}", _SMALL), Spacer(1, 2 * mm)]


def _model(result: Result) -> list[Flowable]:
    m = result.model
    lines = [
        f"Model: {m.name} {m.version} (sha256 {m.sha256[:16] or '-'})",
        f"Study UID {result.study_instance_uid}; series UID {result.series_instance_uid}",
        f"Input hash {result.input_sha256[:16] or '-'}",
        f"Training data: {result.training_data}",
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


def story(result: Result, patient: Mapping[str, str], key_image: bytes | None,
          notes: Sequence[str] = ()) -> list[Flowable]:
    """The report's flowables, top to bottom; ``notes`` say where the user's age or sex overrode the header
    (:func:`overrides`), under the identity and again with the inputs."""
    parts: Sequence[list[Flowable]] = (
        [Paragraph(escape(TITLE), _STYLES["Title"])],
        _training(result),
        _identity(patient),
        [_p(n, _WARN) for n in notes],
        _risk(result),
        _key_image(key_image),
        _levels(result),
        _suggestion(result),
        _labs(result, notes),
        _items("Warnings", result.warnings, _WARN),
        _model(result),
        [Spacer(1, 4 * mm), Paragraph(f"<b>{escape(DISCLAIMER)}</b>", _BODY)],
    )
    return [flowable for part in parts for flowable in part]


def write_pdf(
    result: Result,
    path: Path,
    *,
    patient: Mapping[str, str] | None = None,
    key_image: bytes | None = None,
    header: tuple[int | None, str | None] | None = None,
) -> Path:
    """Write the PDF report to ``path``; ``patient`` is an ordered label -> value mapping for the header;
    ``header`` the (age, sex) of the image header, to note where the user's entries overrode it."""
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
    notes = overrides(result, *header) if header is not None else []
    use_fast_ascii85()
    doc.build(story(result, patient or {}, key_image, notes))
    return path
