"""The suggestion engine: clinical context in, suggestion JSON out (issue 6).

The pipeline reads like a recipe; each stage takes arguments and returns a value:

1. validate the context (:class:`~clinical.context.ClinicalContext`),
2. derive facts once (:func:`~clinical.facts.derive_facts`),
3. categorise: clinical, model, final (:func:`~clinical.category.categorize`),
4. choose first-line candidates for the final category (:func:`~clinical.treatment.candidates`), then what
   comes before and after a drug (:func:`~clinical.sequence.sequence`: denosumab continuity, anabolic follow-on),
5. run the safety rules; whatever they avoid or defer leaves ``first_line``,
6. run the follow-up and screening rules on the settled plan,
7. render and validate the :class:`~clinical.suggestion.Suggestion`.

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from clinical.category import CategoryResult, categorize, lowest_t
from clinical.context import ClinicalContext
from clinical.facts import Facts, derive_facts
from clinical.findings import NOTHING, Findings, Flag
from clinical.followup import FOLLOW_UP_RULES
from clinical.lifestyle import LIFESTYLE
from clinical.lifestyle import SOURCE as LIFESTYLE_SOURCE
from clinical.rules import rule
from clinical.safety import SAFETY_RULES
from clinical.screening import SCREENING_RULES
from clinical.sequence import sequence
from clinical.suggestion import DISCLAIMER, Suggestion
from clinical.treatment import Plan, apply_exclusions, candidates
from clinical.vocabulary import ALERT_SEVERITY, AlertKey, severity_rank
from inference.errors import InputError

T = TypeVar("T")
ALWAYS_FIRED = ("SRC-LIFESTYLE", "SRC-CAVD")
"""The source-document advice rules, applied to every suggestion (the lifestyle section)."""


def suggest(context: ClinicalContext | Mapping[str, Any]) -> dict[str, Any]:
    """Return the suggestion JSON (a plain dict) for a clinical context: :func:`suggestion` as JSON."""
    return suggestion(context).to_json()


def suggestion(context: ClinicalContext | Mapping[str, Any]) -> Suggestion:
    """Return the typed :class:`Suggestion` for a clinical context.

    ``context`` is a validated :class:`ClinicalContext` or a mapping in the shape of ``context.md``.
    An invalid mapping raises :class:`~inference.errors.InputError` with code ``invalid_context``
    and a one-line message naming the field.
    """
    ctx = context if isinstance(context, ClinicalContext) else validate_context(context)
    facts, warnings = derive_facts(ctx)
    cat = categorize(facts)
    cands, chosen = candidates(facts, cat)
    cands, ordered = sequence(facts, cat, cands)
    safety = _run(SAFETY_RULES, facts, Plan(cat, cands))
    found = cat.findings + chosen + ordered + safety
    first, deferred = apply_exclusions(cands, found)
    plan = Plan(cat, first, deferred)
    found += _run(FOLLOW_UP_RULES + SCREENING_RULES, facts, plan)
    extra = [f"unknown field {p} ignored" for p in ctx.unknown_fields()]
    if not any(c in cands for c in first):
        extra.append("no drug class remains after the safety exclusions: specialist review")
    return _render(facts, plan, found + Findings(fired=ALWAYS_FIRED), extra + warnings)


def validate_context(data: Mapping[str, Any]) -> ClinicalContext:
    """Validate a mapping as a :class:`ClinicalContext`; raise ``InputError('invalid_context', ...)``."""
    if not isinstance(data, Mapping):
        raise InputError("invalid_context", "the clinical context must be a JSON object")
    try:
        return ClinicalContext.model_validate(dict(data))
    except ValidationError as exc:
        raise InputError("invalid_context", validation_message(exc)) from None


def suggest_from_json_file(path: str | Path) -> dict[str, Any]:
    """Read a clinical context JSON file and return :func:`suggest` of it.

    Raises :class:`~inference.errors.InputError`: ``unreadable_context`` when the file cannot be read,
    ``invalid_json`` when it is not JSON, ``invalid_context`` when it does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError("unreadable_context", f"cannot read {path.name}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            "invalid_json",
            f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    return suggest(data)


def validation_message(exc: ValidationError) -> str:
    """One line naming the first failing field, what is wrong, and how many other errors there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "context"
    message = str(first["msg"]).removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or first["type"] == "missing" else f" (got {got!r})"
    more = f"; and {len(errors) - 1} more error(s)" if len(errors) > 1 else ""
    return " ".join(f"invalid context: {where}: {message}{shown}{more}".split())


def _run(rules: Iterable[Any], facts: Facts, plan: Plan) -> Findings:
    """Run rule functions and merge their findings."""
    found = NOTHING
    for fn in rules:
        found += fn(facts, plan)
    return found


def _unique(items: Iterable[T], key: Any) -> list[T]:
    """Keep the first item of each key, in order."""
    seen: set[Any] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _cite(rule_id: str) -> dict[str, str]:
    """The rule id with its source and verification mark."""
    r = rule(rule_id)
    return {"rule": r.id, "source": r.source, "verification": r.verification.value}


def _monitoring(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    """Monitoring items, one per key (the first rule that asked for it is cited)."""
    return [{"key": f.key, "message": f.message, **_cite(f.rule)} for f in _unique(flags, lambda f: f.key)]


def _alerts(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    """Alerts, one per key and rule, with the severity of the key: urgent first, then caution, then info.

    The sort is stable, so alerts of one severity keep the order in which the rules raised them.
    """
    items = [
        {"key": f.key, "severity": ALERT_SEVERITY[AlertKey(f.key)], "message": f.message, **_cite(f.rule)}
        for f in _unique(flags, lambda f: (f.key, f.rule))
    ]
    return sorted(items, key=lambda a: severity_rank(a["severity"]))


def _render(facts: Facts, plan: Plan, found: Findings, warnings: list[str]) -> Suggestion:
    """Build the validated :class:`Suggestion`."""
    cat: CategoryResult = plan.category
    return Suggestion.model_validate(
        {
            "assessment_date": facts.today.isoformat(),
            "risk_category": cat.final,
            "clinical_category": cat.clinical,
            "model_category": cat.model,
            "category_reasons": list(cat.reasons),
            "first_line": list(plan.first_line),
            "deferred": list(plan.deferred),
            "avoid": [
                {"item": a.item, "reason": a.reason, **_cite(a.rule)}
                for a in _unique(found.avoid, lambda a: (a.item, a.rule))
            ],
            "alerts": _alerts(found.alerts),
            "monitoring": _monitoring(found.monitoring),
            "not_evaluated": [
                {"rule": n.rule, "reason": n.reason, "missing_inputs": list(n.missing)}
                for n in _unique(found.not_evaluated, lambda n: n)
            ],
            "rules_fired": _unique(found.fired, lambda r: r),
            "notes": [{"text": n.text, **_cite(n.rule)} for n in _unique(found.notes, lambda n: n.text)],
            "lifestyle": [
                {"topic": a.topic, "advice": a.advice, "source": LIFESTYLE_SOURCE} for a in LIFESTYLE
            ],
            "derived": {
                "crcl_ml_min": facts.crcl,
                "crcl_source": facts.crcl_source,
                "egfr_ml_min_1_73m2": facts.egfr,
                "egfr_source": facts.egfr_source,
                "lowest_t_score": lowest_t(facts),
                "model_probability": facts.ctx.model.p_vertebral_fracture_6m,
            },
            "warnings": _unique(warnings + list(found.warnings), lambda w: w),
            "disclaimer": DISCLAIMER,
        }
    )
