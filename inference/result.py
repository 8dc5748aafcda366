"""The typed prediction: what scoring one study produces, and the result JSON of DESIGN.md.

Every consumer (the CLI, the batch job, the web app, the PACS glue, the report writers and the evaluation)
receives a :class:`Prediction`; its :meth:`Prediction.to_json` is the documented result JSON (without the
suggestion, which the application pipeline adds: :mod:`vfrisk.pipeline`), and :meth:`Prediction.from_json`
validates such a JSON and refuses a malformed one with ``ValueError`` naming the field (a malformed result is a
bug upstream, never a user error).

``SCHEMA_VERSION`` is written into every result JSON; a change to the fields bumps it, and
``tests/test_result_schema.py`` pins the field set of each version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference.contrast import Contrast
from inference.disclaimer import DISCLAIMER
from inference.findings import Measured, Vertebra
from inference.labs import Labs

__all__ = ["DISCLAIMER", "SCHEMA_VERSION", "InputFacts", "ModelIdentity", "Prediction"]

SCHEMA_VERSION = 4
"""Version of the result JSON (bump when a field is added, removed or changes meaning). 2: levels T10-L5, L6
and S1; per vertebra ``name_confidence`` and ``name_uncertain``; ``anchors`` and ``transitional``. 3:
``model.training_data``, the model card's one line on what the model was trained on. 4: ``contrast`` (phase,
source, aortic HU, what the header says, the correction and its source) and, per measured level,
``measured.trabecular_hu_corrected`` and ``measured.trabecular_hu_corrected_sd``."""


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced the result."""

    name: str
    version: str
    sha256: str
    training_data: str = ""
    """One line from the model card on what the model was trained on (``inference.bundle.training_line``)."""

    def to_json(self) -> dict[str, str]:
        """Result-JSON form."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "training_data": self.training_data}

    @classmethod
    def from_json(cls, value: Any) -> ModelIdentity:
        """Validate the ``model`` object of a result JSON."""
        if not isinstance(value, Mapping) or not value.get("name") or not value.get("version"):
            raise ValueError("result.model: name and version are required")
        return cls(str(value["name"]), str(value["version"]), str(value.get("sha256", "")),
                   str(value.get("training_data") or ""))


@dataclass(frozen=True)
class InputFacts:
    """What the model was given: the scored series' shape and the hash of exactly what the model saw."""

    slices: int
    spacing_mm: tuple[float, float, float]
    orientation: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """Result-JSON form."""
        return {"slices": self.slices, "spacing_mm": list(self.spacing_mm), "orientation": self.orientation,
                "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: Any) -> InputFacts:
        """Validate the ``input`` object of a result JSON."""
        if not isinstance(value, Mapping):
            raise ValueError("result.input: an object is required")
        spacing = value.get("spacing_mm") or ()
        if len(spacing) != 3:
            raise ValueError(f"result.input.spacing_mm: expected 3 numbers, got {spacing!r}")
        return cls(int(value.get("slices", 0)),
                   tuple(_finite(s, "input.spacing_mm") for s in spacing),  # type: ignore[arg-type]
                   str(value.get("orientation", "")), str(value.get("sha256", "")))


@dataclass(frozen=True)
class Prediction:
    """A scored study: calibrated probability, interval, model, input facts, per-vertebra findings, warnings."""

    probability: float
    """Calibrated P(new vertebral fracture within 6 months)."""
    interval: tuple[float, float]
    """Uncertainty interval of the probability (90 %)."""
    model: ModelIdentity
    study_instance_uid: str
    series_instance_uid: str
    input: InputFacts
    labs: Labs
    """The lab values and demographics the model used."""
    vertebrae: tuple[Vertebra, ...]
    warnings: tuple[str, ...] = ()
    disclaimer: str = DISCLAIMER
    anchors: tuple[str, ...] = ()
    """Anchors of the numbering in view (``sacrum``, ``last rib``); none: every name is uncertain."""
    transitional: str | None = None
    """``six lumbar vertebrae`` / ``four lumbar vertebrae`` where both anchors show transitional anatomy."""
    contrast: Contrast | None = None
    """The scan's contrast enhancement (:mod:`inference.contrast`); None when it was not assessed."""

    def found_levels(self) -> tuple[Vertebra, ...]:
        """The levels found in the volume (``present`` and with a z position)."""
        return tuple(v for v in self.vertebrae if v.present and v.z_mm is not None)

    def to_json(self) -> dict[str, Any]:
        """The result JSON of DESIGN.md (without the suggestion)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "probability": self.probability,
            "interval": list(self.interval),
            "model": self.model.to_json(),
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "input": self.input.to_json(),
            "labs": self.labs.as_dict(),
            "vertebrae": [v.to_json() for v in self.vertebrae],
            "warnings": list(self.warnings),
            "disclaimer": self.disclaimer,
            "anchors": list(self.anchors),
            "transitional": self.transitional,
            "contrast": None if self.contrast is None else self.contrast.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prediction:
        """Validate a result JSON (extra keys such as the suggestion are ignored); ``ValueError`` naming the bad
        field."""
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"result.schema_version: {version!r} is not {SCHEMA_VERSION}")
        p = _probability(data.get("probability"), "probability")
        return cls(
            probability=p,
            interval=_interval(data.get("interval"), p),
            model=ModelIdentity.from_json(data.get("model")),
            study_instance_uid=_uid(data.get("study_instance_uid"), "study_instance_uid"),
            series_instance_uid=_uid(data.get("series_instance_uid"), "series_instance_uid"),
            input=InputFacts.from_json(data.get("input") or {}),
            labs=_labs(data.get("labs")),
            vertebrae=tuple(_vertebra(v, i) for i, v in enumerate(data.get("vertebrae") or [])),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            disclaimer=str(data.get("disclaimer") or DISCLAIMER),
            anchors=tuple(str(a) for a in data.get("anchors") or ()),
            transitional=None if data.get("transitional") is None else str(data["transitional"]),
            contrast=None if data.get("contrast") is None else Contrast.from_json(data["contrast"]),
        )


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"result.{name}: expected a finite number, got {value!r}")
    return float(value)


def _optional(value: Any, name: str) -> float | None:
    return None if value is None else _finite(value, name)


def _probability(value: Any, name: str) -> float:
    p = _finite(value, name)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"result.{name}: {p} is not a probability")
    return p


def _interval(value: Any, p: float) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"result.interval: expected [lo, hi], got {value!r}")
    lo, hi = (_probability(v, "interval") for v in value)
    if not lo <= p <= hi:
        raise ValueError(f"result.interval: [{lo}, {hi}] does not contain the probability {p}")
    return lo, hi


def _uid(value: Any, name: str) -> str:
    text = str(value or "")
    if not text or len(text) > 64 or any(c not in "0123456789." for c in text):
        raise ValueError(f"result.{name}: {value!r} is not a DICOM UID")
    return text


def _labs(value: Any) -> Labs:
    if not isinstance(value, Mapping):
        raise ValueError("result.labs: an object is required")
    try:
        return Labs.from_dict(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"result.labs: {exc}") from None


def _measured(value: Any, where: str) -> Measured | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"result.{where}.measured: an object is required")
    numbers = {k: _optional(value.get(k), f"{where}.measured.{k}") for k in Measured.NUMBERS}
    return Measured(quality=str(value.get("quality", "")), **numbers)


def _vertebra(value: Any, index: int) -> Vertebra:
    where = f"vertebrae[{index}]"
    if not isinstance(value, Mapping) or not isinstance(value.get("level"), str):
        raise ValueError(f"result.{where}: a level name is required")
    grade = value.get("genant_grade")
    if grade is not None and (isinstance(grade, bool) or grade not in (0, 1, 2, 3)):
        raise ValueError(f"result.{where}.genant_grade: expected 0-3 or null, got {grade!r}")
    return Vertebra(
        level=value["level"],
        present=bool(value.get("present", True)),
        genant_grade=None if grade is None else int(grade),
        height_ratio=_optional(value.get("height_ratio"), f"{where}.height_ratio"),
        trabecular_hu=_optional(value.get("trabecular_hu"), f"{where}.trabecular_hu"),
        z_mm=_optional(value.get("z_mm"), f"{where}.z_mm"),
        measured=_measured(value.get("measured"), where),
        name_confidence=_optional(value.get("name_confidence"), f"{where}.name_confidence"),
        name_uncertain=bool(value.get("name_uncertain", False)),
    )
