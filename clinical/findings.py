"""What a rule returns: small immutable records, merged by the engine.

Every rule function returns a :class:`Findings`; the engine concatenates them (``a + b``) and renders the
suggestion. No rule mutates shared state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinical.inputs import missing_reason
from clinical.vocabulary import AlertKey, Drug, DrugClass, MonitoringKey


@dataclass(frozen=True)
class Avoid:
    """A class (bans all its drugs) or a single drug that must not be used, with the reason and rule."""

    item: DrugClass | Drug
    reason: str
    rule: str


@dataclass(frozen=True)
class Deferral:
    """A class that is acceptable once a correctable problem (low calcium, low vitamin D) is corrected."""

    item: DrugClass
    reason: str
    rule: str


@dataclass(frozen=True)
class Flag:
    """An alert or a monitoring item: a vocabulary key, a plain-words message, the rule."""

    key: AlertKey | MonitoringKey
    message: str
    rule: str


@dataclass(frozen=True)
class NotEvaluated:
    """A rule (or part of one) that could not run for lack of data: the inputs it lacks, and why in words."""

    rule: str
    reason: str
    missing: tuple[str, ...]
    """Dotted context paths of the missing inputs (:mod:`clinical.inputs`); the reason is built from them."""


@dataclass(frozen=True)
class Note:
    """A remark for the clinician that changes nothing (for example a NOGG disagreement, R-PREC-2)."""

    text: str
    rule: str


@dataclass(frozen=True)
class Findings:
    """The output of one rule or of several merged rules."""

    fired: tuple[str, ...] = ()
    avoid: tuple[Avoid, ...] = ()
    deferred: tuple[Deferral, ...] = ()
    alerts: tuple[Flag, ...] = ()
    monitoring: tuple[Flag, ...] = ()
    not_evaluated: tuple[NotEvaluated, ...] = ()
    notes: tuple[Note, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def __add__(self, other: Findings) -> Findings:
        """Concatenate two findings field by field."""
        return Findings(
            fired=self.fired + other.fired,
            avoid=self.avoid + other.avoid,
            deferred=self.deferred + other.deferred,
            alerts=self.alerts + other.alerts,
            monitoring=self.monitoring + other.monitoring,
            not_evaluated=self.not_evaluated + other.not_evaluated,
            notes=self.notes + other.notes,
            warnings=self.warnings + other.warnings,
        )


NOTHING = Findings()
"""The empty result: the rule did not fire."""


def alert(key: AlertKey, message: str, rule: str) -> Findings:
    """A rule that fired and raised one alert."""
    return Findings(fired=(rule,), alerts=(Flag(key, message, rule),))


def monitor(key: MonitoringKey, message: str, rule: str) -> Findings:
    """A rule that fired and asked for one monitoring item."""
    return Findings(fired=(rule,), monitoring=(Flag(key, message, rule),))


def avoid(items: tuple[DrugClass | Drug, ...], reason: str, rule: str) -> Findings:
    """A rule that fired and excluded classes or drugs."""
    return Findings(fired=(rule,), avoid=tuple(Avoid(i, reason, rule) for i in items))


def not_evaluated(rule: str, missing: tuple[str, ...], why: str | None = None) -> Findings:
    """A rule that could not be evaluated because the inputs at the dotted paths ``missing`` are not given."""
    if not missing:
        raise ValueError(f"{rule}: a rule is not evaluated only for lack of some input")
    return Findings(not_evaluated=(NotEvaluated(rule, missing_reason(missing, why), missing),))


def note(text: str, rule: str) -> Findings:
    """A rule that fired and only left a note."""
    return Findings(fired=(rule,), notes=(Note(text, rule),))


def warning(text: str) -> Findings:
    """A data-quality warning (no rule fired)."""
    return Findings(warnings=(text,))
