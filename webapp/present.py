"""Result presentation: the probability with its meaning, the per-level table and the suggestion as HTML.

Pure functions from the typed result (:class:`vfrisk.result.Result`) to strings; every value shown is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from clinical.suggestion import Alert
from clinical.vocabulary import ALERT_SEVERITY, MODEL_P_HIGH, MODEL_P_VERY_HIGH, AlertKey, category_label
from vfrisk.result import Result

COLOURS = {"urgent": "#c1121f", "caution": "#e76f51", "info": "#1d70b8"}


def severity(key: str) -> str:
    """``urgent``, ``caution`` or ``info`` for an alert key (the vocabulary's :data:`ALERT_SEVERITY`)."""
    return ALERT_SEVERITY[AlertKey(key)].value


def pct(p: float) -> str:
    """A probability as a percentage with one decimal."""
    return f"{100 * p:.1f} %"


def probability_markdown(result: Result) -> str:
    """The probability, its interval, the risk categories and the thresholds they come from."""
    s = result.suggestion
    low, high = result.interval
    return "\n".join([
        f"## 6-month vertebral fracture probability: **{pct(result.probability)}**",
        f"Uncertainty interval {pct(low)} to {pct(high)}.",
        "",
        f"**Risk category: {category_label(result.risk_category)}** (model: {category_label(s.model_category)}, "
        f"clinical: {category_label(s.clinical_category)}; the higher one applies).",
        f"Model thresholds (rule R-MODEL-1): high from {pct(MODEL_P_HIGH)}, very high from {pct(MODEL_P_VERY_HIGH)}.",
        *(f"- {escape(r)}" for r in s.category_reasons),
        "",
        f"Model {escape(result.model.name)} version {escape(result.model.version)}.",
    ])


def levels_table(result: Result) -> list[list[Any]]:
    """Rows: level (``L2?`` when its name is uncertain), found, name confidence, Genant grade, height ratio,
    trabecular HU."""
    return [[v.name_label().split(" ")[0], "yes" if v.present else "no", v.name_confidence, v.genant_grade,
             v.height_ratio, v.trabecular_hu] for v in result.vertebrae]


def _cite(item: Any) -> str:
    """``[rule; source]`` (``[rule]`` for an item that carries no source of its own)."""
    cited = "; ".join(escape(str(x)) for x in (item.rule, getattr(item, "source", "")) if x)
    return f' <span class="vf-cite">[{cited}]</span>'


def _section(title: str, rows: list[str]) -> str:
    if not rows:
        return ""
    return f"<h3>{escape(title)}</h3><ul>" + "".join(f"<li>{r}</li>" for r in rows) + "</ul>"


def _alert(a: Alert) -> str:
    level = a.severity.value
    colour = COLOURS[level]
    return (f'<span class="vf-alert vf-{level}" style="border-left:4px solid {colour};padding-left:6px;'
            f'display:inline-block"><b style="color:{colour}">{level.upper()}</b> '
            f"{escape(a.message)}{_cite(a)}</span>")


def _words(value: str) -> str:
    return escape(value.replace("_", " "))


def suggestion_html(result: Result) -> str:
    """The suggestion: first-line classes, deferred, what to avoid and why, alerts, monitoring, lifestyle."""
    s = result.suggestion
    first = [f"<b>{_words(c.value)}</b>" + (" (preferred)" if i == 0 else "") for i, c in enumerate(s.first_line)]
    parts = [
        '<div id="vf-suggestion-body">',
        _section("First-line drug classes", first),
        _section("Deferred (until the alerts are resolved)", [_words(d.value) for d in s.deferred]),
        _section("Avoid", [f"<b>{_words(a.item.value)}</b>: {escape(a.reason)}{_cite(a)}" for a in s.avoid]),
        _section("Alerts", [_alert(a) for a in s.alerts]),
        _section("Monitoring", [f"{escape(m.message)}{_cite(m)}" for m in s.monitoring]),
        _section("Notes", [f"{escape(n.text)}{_cite(n)}" for n in s.notes]),
        _section("Lifestyle", [f"{escape(x.advice)} <span class='vf-cite'>[{escape(x.source)}]</span>"
                               for x in s.lifestyle]),
        _section("Not evaluated (missing data)", [f"{escape(n.rule)}: {escape(n.reason)}" for n in s.not_evaluated]),
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


def study_markdown(study: Any) -> str:
    """What was read: slices, spacing, plane and ingestion warnings (no header identity)."""
    z, y, x = study.volume.shape
    sz, sy, sx = study.spacing_mm
    lines = [f"**Study read**: {z} x {y} x {x} voxels (Z x Y x X), spacing {sz:.2f} x {sy:.2f} x {sx:.2f} mm, "
             f"{escape(study.orientation)} acquisition."]
    lines += [f"- {escape(w)}" for w in study.warnings]
    return "\n".join(lines)
