"""The optional clinical-context panel: a few typed form fields turned into a context.md mapping.

The suggestion engine validates the mapping (``clinical.engine.validate_context``); this module only shapes
it. A full context JSON pasted by the user is merged underneath the form fields.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from clinical.vocabulary import Drug
from inference.errors import InputError
from inference.labs import parse_number

FRACTURE_SITES = ("vertebral", "hip", "distal_radius", "proximal_humerus", "pelvis", "rib", "ankle", "other")
"""Prior fracture sites offered by the form; ``vertebral`` becomes ``vertebral_<level>`` when a level is given."""
RED_FLAGS = ("sudden_severe_back_pain", "cancer_history_with_new_back_pain", "unexplained_weight_loss", "fever",
             "night_pain", "saddle_anaesthesia", "bladder_bowel_dysfunction", "neuro_deficit")
"""Red-flag keys of context.md."""
DRUGS = tuple(d.value for d in Drug)
VERTEBRAL_LEVELS = tuple(f"T{i}" for i in range(4, 13)) + tuple(f"L{i}" for i in range(1, 6))
"""Levels a prior vertebral fracture may be given at."""
"""Drugs the medication field offers (the vocabulary's)."""


def parse_date(text: str | None, name: str) -> str | None:
    """An ISO date string (YYYY-MM-DD) or None; anything else is an ``invalid_context`` error."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise InputError("invalid_context", f"{name} must be a date as YYYY-MM-DD") from None


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


NUMBER_WORDS = {
    "crcl_ml_min": "creatinine clearance", "calcium_diet_mg_day": "dietary calcium",
    "calcium_supplement_mg_day": "calcium supplement", "vitamin_d_iu_day": "vitamin D intake",
    "glucocorticoids_mg_day": "glucocorticoid dose", "glucocorticoid_months": "glucocorticoid duration",
    "falls_12m": "falls in the past 12 months",
}
"""The panel's number fields and how the page names them."""


def form_number(raw: object, name: str) -> float | None:
    """A number field of the panel: empty is not given (never 0); anything but a plain non-negative number is
    ``invalid_context`` naming the field."""
    try:
        value = parse_number(raw, name)
    except InputError:
        raise InputError("invalid_context", f"{name}: {str(raw).strip()[:20]!r} is not a number") from None
    if value is not None and value < 0:
        raise InputError("invalid_context", f"{name} cannot be negative")
    return value


@dataclass
class ContextForm:
    """The values of the clinical-context panel (every field optional)."""

    fracture_sites: list[str] = field(default_factory=list)
    vertebral_level: str = ""
    last_fracture_date: str = ""
    medications: list[str] = field(default_factory=list)
    medication_start: str = ""
    crcl_ml_min: float | None = None
    calcium_diet_mg_day: float | None = None
    calcium_supplement_mg_day: float | None = None
    vitamin_d_iu_day: float | None = None
    glucocorticoids_mg_day: float | None = None
    glucocorticoid_months: float | None = None
    last_mi_date: str = ""
    last_stroke_date: str = ""
    falls_12m: float | None = None
    red_flags: list[str] = field(default_factory=list)
    context_json: str = ""

    @classmethod
    def from_form(cls, values: dict[str, Any]) -> ContextForm:
        """The panel's values as the page sends them (text in the number boxes): empty fields are left out, so an
        opened but empty panel gives no context at all."""
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name in NUMBER_WORDS:
                number = form_number(value, NUMBER_WORDS[name])
                if name == "falls_12m" and number is not None and not number.is_integer():
                    raise InputError("invalid_context", "falls in the past 12 months must be a whole number")
                if number is not None:
                    kwargs[name] = number
            elif value not in (None, "", []):
                kwargs[name] = value.strip() if isinstance(value, str) else value
        return cls(**kwargs)

    def _fractures(self) -> list[dict[str, Any]]:
        when = parse_date(self.last_fracture_date, "date of the last fracture")
        level = self.vertebral_level.strip().upper()
        if "vertebral" in self.fracture_sites and level not in VERTEBRAL_LEVELS:
            raise InputError("invalid_context", "give the level (T4 to L5) of the prior vertebral fracture")
        out = []
        for site in self.fracture_sites:
            name = f"vertebral_{level}" if site == "vertebral" and level else site
            out.append({"site": name, "date": when, "fragility": True})
        return out

    def _medications(self) -> list[dict[str, Any]]:
        start = parse_date(self.medication_start, "medication start date")
        return [{"drug": d, "start": start, "stop": None} for d in self.medications]

    def _patient(self) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if self.fracture_sites:
            p["fractures"] = self._fractures()
        if self.medications:
            p["medications"] = self._medications()
        if self.crcl_ml_min is not None:
            p["labs"] = {"crcl_cockcroft_gault_ml_min": _number(self.crcl_ml_min)}
        intake = {"calcium_diet_mg_day": _number(self.calcium_diet_mg_day),
                  "calcium_supplement_mg_day": _number(self.calcium_supplement_mg_day),
                  "vitamin_d_iu_day": _number(self.vitamin_d_iu_day)}
        if any(v is not None for v in intake.values()):
            p["intake"] = intake
        if self.glucocorticoids_mg_day is not None:
            p["glucocorticoids"] = {"current": self.glucocorticoids_mg_day > 0,
                                    "prednisone_eq_mg_day": _number(self.glucocorticoids_mg_day),
                                    "duration_months": _number(self.glucocorticoid_months)}
        mi = parse_date(self.last_mi_date, "date of the last MI")
        stroke = parse_date(self.last_stroke_date, "date of the last stroke")
        if mi or stroke:
            p["cardiovascular"] = {"mi_dates": [mi] if mi else [], "stroke_dates": [stroke] if stroke else []}
        if self.falls_12m is not None:
            p["falls"] = {"count_12m": int(self.falls_12m)}
        if self.red_flags:
            p["symptoms"] = {"red_flags": list(self.red_flags)}
        return p

    def pasted(self) -> dict[str, Any]:
        """The pasted context JSON (empty when none)."""
        text = self.context_json.strip()
        if not text:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("invalid_json", f"the context JSON is not valid JSON (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise InputError("invalid_context", "the context JSON must be one object")
        return data

    def to_context(self) -> dict[str, Any] | None:
        """The context mapping for ``Engine.predict`` (None when the panel is empty)."""
        base = self.pasted()
        patient = {**(base.get("patient") or {}), **self._patient()}
        if not base and not patient:
            return None
        ctx = dict(base)
        if patient:
            ctx["patient"] = patient
        return ctx
