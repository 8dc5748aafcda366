"""The suggestion: the engine's output as a validated model (``context.md``, section "Suggestion").

:class:`Suggestion` checks, on construction, that every key is in the vocabulary, every cited rule is in the
registry, that nothing avoided or deferred is in ``first_line`` (the safety invariant of issue 6), that every
alert carries the severity of its key (:data:`~clinical.vocabulary.ALERT_SEVERITY`) and that the alerts are in
severity order (issue 23). The engine builds one and returns ``model_dump(mode="json")``; tests re-validate any
output with ``Suggestion.model_validate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from clinical.rules import RULES_BY_ID
from clinical.vocabulary import (
    ALERT_SEVERITY,
    DRUGS_BY_CLASS,
    AlertKey,
    Drug,
    DrugClass,
    LifestyleTopic,
    MonitoringKey,
    RiskCategory,
    Severity,
    severity_rank,
)
from inference.disclaimer import DISCLAIMER

__all__ = ["DISCLAIMER", "Suggestion"]


class _Out(BaseModel):
    """Output base: closed (no extra keys), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Cited(_Out):
    """Something that cites a rule of the registry, with its source and verification mark."""

    rule: str
    source: str
    verification: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        """The rule must be in the registry."""
        if value not in RULES_BY_ID:
            raise ValueError(f"unknown rule id {value!r}")
        return value


class AvoidItem(_Cited):
    """A class or drug that must not be used."""

    item: DrugClass | Drug
    reason: str


def _raised_by_rule(key: AlertKey | MonitoringKey, rule_id: str) -> None:
    """The registry row of ``rule_id`` must list ``key`` among its outputs (the registry is the one source)."""
    if key not in RULES_BY_ID[rule_id].outputs:
        raise ValueError(f"rule {rule_id} does not list {key.value} among its outputs")


class Alert(_Cited):
    """An alert: vocabulary key, its severity, plain-words message, rule."""

    key: AlertKey
    severity: Severity
    message: str

    @model_validator(mode="after")
    def _severity_of_key(self) -> Alert:
        """The severity is the one of the key (one source: ``ALERT_SEVERITY``), never chosen per alert."""
        if self.severity != ALERT_SEVERITY[self.key]:
            raise ValueError(f"alert {self.key.value} has severity {self.severity.value}, not its own")
        _raised_by_rule(self.key, self.rule)
        return self


class Monitoring(_Cited):
    """A monitoring item: vocabulary key, plain-words message, rule."""

    key: MonitoringKey
    message: str

    @model_validator(mode="after")
    def _key_of_rule(self) -> Monitoring:
        """The cited rule lists the key among its outputs."""
        _raised_by_rule(self.key, self.rule)
        return self


class NotEvaluatedItem(_Out):
    """A rule that could not run for lack of data: the reason in words and the missing inputs' context paths."""

    rule: str
    reason: str
    missing_inputs: list[str]

    @field_validator("missing_inputs")
    @classmethod
    def _names_an_input(cls, value: list[str]) -> list[str]:
        """A rule is not evaluated only for lack of some input, so at least one is named."""
        if not value:
            raise ValueError("a not-evaluated rule must name the missing inputs")
        return value


class NoteItem(_Cited):
    """A remark that changes nothing, with the rule it comes from and that rule's source."""

    text: str


class LifestyleItem(_Out):
    """Lifestyle advice from the source document."""

    topic: LifestyleTopic
    advice: str
    source: str


class Derived(_Out):
    """Values the engine computed or used, for the clinician to check."""

    crcl_ml_min: float | None
    crcl_source: str | None
    egfr_ml_min_1_73m2: float | None
    egfr_source: str | None
    lowest_t_score: float | None
    model_probability: float | None


class Suggestion(_Out):
    """The engine's output."""

    assessment_date: str
    risk_category: RiskCategory
    clinical_category: RiskCategory
    model_category: RiskCategory | None
    category_reasons: list[str]
    first_line: list[DrugClass]
    deferred: list[DrugClass]
    avoid: list[AvoidItem]
    alerts: list[Alert]
    monitoring: list[Monitoring]
    not_evaluated: list[NotEvaluatedItem]
    rules_fired: list[str]
    notes: list[NoteItem]
    lifestyle: list[LifestyleItem]
    derived: Derived
    warnings: list[str]
    disclaimer: str

    def to_json(self) -> dict[str, Any]:
        """The suggestion JSON (``context.md``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Suggestion:
        """Validate a suggestion JSON (``ValueError`` naming the bad field)."""
        return cls.model_validate(dict(data))

    @model_validator(mode="after")
    def _safe(self) -> Suggestion:
        """Nothing avoided (as a class, or all of its drugs) or deferred may be in ``first_line``."""
        avoided = {a.item for a in self.avoid}
        for cls in self.first_line:
            drugs = DRUGS_BY_CLASS[cls]
            if cls in avoided or (drugs and all(d in avoided for d in drugs)):
                raise ValueError(f"{cls.value} is both avoided and first line")
            if cls in self.deferred:
                raise ValueError(f"{cls.value} is both deferred and first line")
        unknown = [r for r in self.rules_fired if r not in RULES_BY_ID]
        if unknown:
            raise ValueError(f"unknown rule ids fired: {unknown}")
        ranks = [severity_rank(a.severity) for a in self.alerts]
        if ranks != sorted(ranks):
            raise ValueError("alerts are not in severity order (urgent, caution, info)")
        return self
