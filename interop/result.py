"""The scoring result (DESIGN.md, "Result JSON") as typed, validated objects for the report writers.

The engine hands over a plain dict; :meth:`Result.from_dict` checks the fields the reports need and refuses a
malformed one with ``ValueError`` (a malformed result is a bug upstream, never a user error).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference.findings import Vertebra as LevelFinding

DISCLAIMER = "Decision support for clinicians; not a diagnosis."
RISK_CATEGORIES = ("low", "high", "very_high")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced the result."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Labs:
    """The lab values and demographics the model used (any may be unknown)."""

    ntx_nmol_bce_per_mmol_cr: float | None
    bmd_tscore: float | None
    age: int | None
    sex: str | None


@dataclass(frozen=True)
class Result:
    """A validated scoring result."""

    probability: float
    interval: tuple[float, float]
    model: ModelIdentity
    study_instance_uid: str
    series_instance_uid: str
    input_sha256: str
    labs: Labs
    vertebrae: tuple[LevelFinding, ...]
    """The engine's own per-level type (:class:`inference.findings.Vertebra`)."""
    risk_category: str | None
    suggestion: Mapping[str, Any] | None
    warnings: tuple[str, ...]
    disclaimer: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """Validate and convert the engine's result dict; raise ``ValueError`` naming the bad field."""
        p = _probability(data.get("probability"), "probability")
        lo, hi = _interval(data.get("interval"), p)
        suggestion = data.get("suggestion")
        category = data.get("risk_category") or (suggestion or {}).get("risk_category")
        if category is not None and category not in RISK_CATEGORIES:
            raise ValueError(f"result.risk_category: unknown category {category!r}")
        return cls(
            probability=p,
            interval=(lo, hi),
            model=_model(data.get("model")),
            study_instance_uid=_uid(data.get("study_instance_uid"), "study_instance_uid"),
            series_instance_uid=_uid(data.get("series_instance_uid"), "series_instance_uid"),
            input_sha256=str((data.get("input") or {}).get("sha256", "")),
            labs=_labs(data.get("labs") or {}),
            vertebrae=tuple(_level(v, i) for i, v in enumerate(data.get("vertebrae") or [])),
            risk_category=category,
            suggestion=suggestion,
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            disclaimer=str(data.get("disclaimer") or DISCLAIMER),
        )

    def found_levels(self) -> tuple[LevelFinding, ...]:
        """The levels the model found in the volume (``present`` and with a z position)."""
        return tuple(v for v in self.vertebrae if v.present and v.z_mm is not None)


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"result.{name}: expected a number, got {value!r}")
    p = float(value)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
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


def _model(value: Any) -> ModelIdentity:
    if not isinstance(value, Mapping) or not value.get("name") or not value.get("version"):
        raise ValueError("result.model: name and version are required")
    return ModelIdentity(str(value["name"]), str(value["version"]), str(value.get("sha256", "")))


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"result.{name}: expected a finite number or null, got {value!r}")
    return float(value)


def _labs(value: Mapping[str, Any]) -> Labs:
    age = value.get("age")
    sex = value.get("sex")
    if sex is not None and sex not in ("F", "M"):
        raise ValueError(f"result.labs.sex: expected F, M or null, got {sex!r}")
    return Labs(
        ntx_nmol_bce_per_mmol_cr=_optional_float(value.get("ntx_nmol_bce_per_mmol_cr"), "labs.ntx"),
        bmd_tscore=_optional_float(value.get("bmd_tscore"), "labs.bmd_tscore"),
        age=None if age is None else int(age),
        sex=sex,
    )


def _level(value: Any, index: int) -> LevelFinding:
    where = f"vertebrae[{index}]"
    if not isinstance(value, Mapping) or not isinstance(value.get("level"), str):
        raise ValueError(f"result.{where}: a level name is required")
    grade = value.get("genant_grade")
    if grade is not None and (isinstance(grade, bool) or grade not in (0, 1, 2, 3)):
        raise ValueError(f"result.{where}.genant_grade: expected 0-3 or null, got {grade!r}")
    return LevelFinding(
        level=value["level"],
        present=bool(value.get("present", True)),
        genant_grade=None if grade is None else int(grade),
        height_ratio=_optional_float(value.get("height_ratio"), f"{where}.height_ratio"),
        trabecular_hu=_optional_float(value.get("trabecular_hu"), f"{where}.trabecular_hu"),
        z_mm=_optional_float(value.get("z_mm"), f"{where}.z_mm"),
    )
