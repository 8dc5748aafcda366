"""Result presentation: the probability with its meaning, the suggestion, the study summary, as HTML.

Pure functions from the typed result (:class:`vfrisk.result.Result`) and the study to strings; every value shown
is HTML-escaped. Clinical lists keep the suggestion engine's order; colour follows an alert's severity, never its
place (INFO is never red).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from clinical.suggestion import Alert
from clinical.vocabulary import ALERT_SEVERITY, MODEL_P_HIGH, MODEL_P_VERY_HIGH, AlertKey, category_label
from vfrisk.result import Result

COLOURS = {"urgent": "#c1121f", "caution": "#b45309", "info": "#1d4ed8"}
"""Alert colours by severity (INFO blue, never red)."""
NIFTI_REPORTS = ("JSON", "PDF", "FHIR")
"""The reports a study read from NIfTI gets (no DICOM source: no DICOM SR or SEG)."""
DICOM_REPORTS = ("JSON", "DICOM SR", "DICOM SEG", "FHIR", "PDF", "PDF as DICOM", "key image as DICOM")


def severity(key: str) -> str:
    """``urgent``, ``caution`` or ``info`` for an alert key (the vocabulary's :data:`ALERT_SEVERITY`)."""
    return ALERT_SEVERITY[AlertKey(key)].value


def pct(p: float) -> str:
    """A probability as a percentage with one decimal."""
    return f"{100 * p:.1f} %"


def probability_html(result: Result) -> str:
    """The probability, its interval, the risk category, the thresholds it comes from, the model and its
    training data, and the warning an enhanced scan carries (the model learned from unenhanced bone)."""
    s = result.suggestion
    low, high = result.interval
    reasons = "".join(f"<li>{escape(r)}</li>" for r in s.category_reasons)
    return (
        '<div class="vf-prob">'
        f'<div class="vf-prob-main">6-month vertebral fracture probability <b class="vf-p">{pct(result.probability)}'
        f'</b> <span class="vf-int">(interval {pct(low)} to {pct(high)})</span></div>'
        f'<div class="vf-cat">Risk category: <b>{escape(category_label(result.risk_category))}</b> '
        f"(model {escape(category_label(s.model_category))}, clinical {escape(category_label(s.clinical_category))}; "
        f"the higher applies). Model thresholds (R-MODEL-1): high from {pct(MODEL_P_HIGH)}, very high from "
        f"{pct(MODEL_P_VERY_HIGH)}.</div>"
        + (f'<details class="vf-why"><summary>Why this category</summary><ul>{reasons}</ul></details>' if reasons
           else "")
        + f'<div class="vf-model">Model {escape(result.model.name)} {escape(result.model.version)}. '
        f"{escape(result.training_data)}</div>"
        + "".join(f'<div class="vf-warn">{escape(w)}</div>'
                  for w in (result.prediction.contrast.warnings() if result.prediction.contrast else []))
        + "</div>"
    )


def _cite(item: Any) -> str:
    """``[rule; source]`` (``[rule]`` for an item that carries no source of its own)."""
    cited = "; ".join(escape(str(x)) for x in (item.rule, getattr(item, "source", "")) if x)
    return f' <span class="vf-cite">[{cited}]</span>'


def _section(title: str, rows: Sequence[str], css: str = "") -> str:
    if not rows:
        return ""
    return (f'<h3 class="{css}">{escape(title)}</h3><ul class="{css}">' + "".join(f"<li>{r}</li>" for r in rows)
            + "</ul>")


def _alert(a: Alert) -> str:
    level = a.severity.value
    return (f'<span class="vf-alert vf-{level}" style="border-left:4px solid {COLOURS[level]}">'
            f'<b style="color:{COLOURS[level]}">{level.upper()}</b> {escape(a.message)}{_cite(a)}</span>')


def _words(value: str) -> str:
    return escape(value.replace("_", " "))


def _choice(result: Result, choice: Any) -> str:
    """A first-line choice with its cautions (the engine's alerts about it) beside it."""
    cautions = result.cautions(choice)
    beside = "".join(f'<span class="vf-caution vf-{a.severity.value}" style="color:{COLOURS[a.severity.value]}">'
                     f"{a.severity.value}: {escape(a.message)}</span>" for a in cautions)
    return f"<b>{_words(choice.value)}</b>" + (f'<span class="vf-cautions">{beside}</span>' if beside else "")


def suggestion_html(result: Result) -> str:
    """The suggestion: alerts (the engine's severity order), first-line choices (the engine's order, each with
    its cautions), deferred, avoid, monitoring, notes, lifestyle, what was not evaluated, warnings."""
    s = result.suggestion
    parts = [
        '<div id="vf-suggestion-body">',
        _section("Alerts (most urgent first)", [_alert(a) for a in s.alerts], "vf-alerts"),
        _section("First-line choices (the suggestion engine's order; cautions beside each)",
                 [_choice(result, c) for c in s.first_line], "vf-first"),
        _section("Deferred (until the alerts are resolved)", [_words(d.value) for d in s.deferred]),
        _section("Avoid", [f"<b>{_words(a.item.value)}</b>: {escape(a.reason)}{_cite(a)}" for a in s.avoid]),
        _section("Monitoring", [f"{escape(m.message)}{_cite(m)}" for m in s.monitoring]),
        _section("Notes", [f"{escape(n.text)}{_cite(n)}" for n in s.notes]),
        _section("Lifestyle", [f"{escape(x.advice)} <span class='vf-cite'>[{escape(x.source)}]</span>"
                               for x in s.lifestyle]),
        _section("Not evaluated (missing data)", [f"{escape(n.rule)}: {escape(n.reason)}" for n in s.not_evaluated],
                 "vf-not-evaluated"),
        _section("Warnings", [escape(w) for w in [*result.warnings, *s.warnings]]),
        f"<p><i>{escape(result.disclaimer)}</i></p>",
        "</div>",
    ]
    return "".join(parts)


def lab_label(card: dict[str, Any], name: str) -> str:
    """Form label of a lab from the model card: description, unit and valid range."""
    for lab in card.get("inputs", {}).get("labs", []):
        if lab["name"] == name:
            low, high = lab["valid_range"]
            return f"{lab['description']} ({lab['unit']}), valid {low:g} to {high:g}"
    return name


def _series_line(s: dict[str, Any]) -> str:
    what = [f"series {s['series_number']}" if s.get("series_number") is not None else "series",
            str(s.get("modality") or "?"), f"{s.get('n_slices', 0)} slices", str(s.get("orientation") or "")]
    why = "chosen" if s.get("chosen") else f"set aside: {s.get('set_aside') or 'not chosen'}"
    return escape(", ".join(w for w in what if w)) + f" <i>({escape(why)})</i>"


def study_html(study: Any, n_files: int, series: Sequence[dict[str, Any]] = ()) -> str:
    """The compact upload summary: what was read (format, series chosen, slices, size, spacing, extent), the series
    found folded away, which reports the study will get, and the reader's warnings. No header identity."""
    z, y, x = study.volume.shape
    sz, sy, sx = study.spacing_mm
    nifti = study.source_format != "dicom"
    kind = "NIfTI volume" if nifti else f"DICOM CT series, {escape(study.orientation)}, {study.n_source_slices} slices"
    lines = [f'<div class="vf-study-main"><b>Study read</b>: {n_files} file{"s" if n_files != 1 else ""}; {kind}; '
             f"{x} x {y} x {z} voxels (X x Y x Z); spacing {sx:.2f} x {sy:.2f} x {sz:.2f} mm; "
             f"{z * sz:.0f} mm head to foot.</div>"]
    if series:
        chosen = sum(1 for s in series if s.get("chosen"))
        lines.append(f'<details class="vf-series"><summary>{len(series)} series found, {chosen} chosen</summary><ul>'
                     + "".join(f"<li>{_series_line(s)}</li>" for s in series) + "</ul></details>")
    if nifti:
        lines.append('<div class="vf-nifti">A NIfTI file carries no age, sex or patient identity: enter age and '
                     f"sex below. Reports for this study: {', '.join(NIFTI_REPORTS)} (no DICOM SR or SEG without a "
                     "DICOM source).</div>")
    else:
        lines.append(f'<div class="vf-reports">Reports: {", ".join(DICOM_REPORTS)}.</div>')
    lines += [f'<div class="vf-warn">{escape(w)}</div>' for w in study.warnings]
    return "".join(lines)
