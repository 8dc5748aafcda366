"""Labs given with a study: parsed, then validated against the bundle's units and valid ranges (an error, never
a clip). The one lab validator of the CLI, the batch job, the web app, the PACS glue and the evaluation.

What is not given stays ``None`` until :func:`resolve_labs`, which takes age and sex from the DICOM header when
they are not given and refuses a lab that is missing from both: never a 0, an "F" or any other default.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from inference.errors import InputError
from inference.spec import LAB_CATALOGUE, SEXES, Lab, LabSpec, encode_labs


@dataclass(frozen=True)
class Labs:
    """The non-image model inputs, validated (units as in :data:`inference.spec.LAB_CATALOGUE`)."""

    ntx: float
    bmd_tscore: float
    age: float
    sex: str

    def vector(self, order: tuple[str, ...] | None = None) -> list[float]:
        """The model's ``labs`` input in the bundle's order (:func:`inference.spec.encode_labs`)."""
        return encode_labs(self.as_dict(), order)

    def as_dict(self) -> dict[str, float | str]:
        """Result-JSON form."""
        return {Lab.NTX.value: self.ntx, Lab.TSCORE.value: self.bmd_tscore, Lab.AGE.value: self.age,
                Lab.SEX.value: self.sex}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Labs:
        """Rebuild from :meth:`as_dict` output (``KeyError``/``ValueError`` on a malformed one)."""
        sex = str(data[Lab.SEX.value])
        if sex not in SEXES:
            raise ValueError(f"sex must be F or M, got {sex!r}")
        return cls(float(data[Lab.NTX.value]), float(data[Lab.TSCORE.value]),  # type: ignore[arg-type]
                   float(data[Lab.AGE.value]), sex)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LabInput:
    """Labs as given by the user, a manifest row or a labs CSV: any of them may be missing (``None``)."""

    ntx: float | None = None
    bmd_tscore: float | None = None
    age: float | None = None
    sex: str | None = None

    @classmethod
    def from_cells(cls, cells: Mapping[str, object]) -> LabInput:
        """From text cells (a CSV row, a form) keyed ``ntx``, ``bmd_tscore``, ``age``, ``sex``: a blank or absent
        cell is not given; a cell that is not a finite number is a ``bad_lab`` error."""
        sex = str(cells.get("sex") or "").strip()
        return cls(ntx=parse_number(cells.get("ntx"), "NTX"),
                   bmd_tscore=parse_number(cells.get("bmd_tscore"), "T-score"),
                   age=parse_number(cells.get("age"), "age"), sex=sex or None)


NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A plain decimal number (ASCII digits, optional sign, point and exponent): what a lab cell may hold. Python's
``float`` also takes ``4_0``, ``nan``, ``inf`` and other scripts' digits; a lab never does."""


def parse_number(raw: object, name: str) -> float | None:
    """A lab cell as a number: blank or None is not given; anything else that is not a plain finite decimal
    number (:data:`NUMBER`) or a real number is ``bad_lab``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        if not NUMBER.fullmatch(raw.strip()):
            raise InputError("bad_lab", f"{name} {raw.strip()[:40]!r} is not a number")
        value = float(raw)
    elif isinstance(raw, numbers.Real) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise InputError("bad_lab", f"{name} {str(raw)[:40]!r} is not a number")
    if not math.isfinite(value):
        raise InputError("bad_lab", f"{name} {str(raw)[:40]!r} is not a finite number")
    return value


class HeaderFacts(Protocol):
    """What the image header says about the patient (a :class:`~inference.study.SeriesFacts` has both)."""

    @property
    def age(self) -> int | None:
        """Age in years from the header, if present."""

    @property
    def sex(self) -> str | None:
        """'F' or 'M' from the header, if present."""


@dataclass(frozen=True)
class Header:
    """Header facts known without a study object (a decoded-crop cache's metadata)."""

    age: int | None = None
    sex: str | None = None


def _check(value: float | None, spec: LabSpec, ranges: Mapping[str, list[float]]) -> float:
    """A finite value inside the bundle's valid range, or an InputError naming the unit and range."""
    if value is None:
        raise InputError("missing_lab", f"{spec.label} is required ({spec.description}, {spec.unit})")
    low, high = ranges.get(spec.name, [spec.low, spec.high])
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError("lab_out_of_range",
                         f"{spec.label} {value:g} is outside the valid range {low:g} to {high:g} {spec.unit}")
    return float(value)


def resolve_labs(given: LabInput, study: HeaderFacts, ranges: Mapping[str, list[float]] | None = None) -> Labs:
    """Validate the labs against the catalogue and the bundle's ranges; age and sex come from the DICOM header
    unless given. Raises ``missing_lab``, ``bad_lab`` or ``lab_out_of_range``."""
    cat = {s.name: s for s in LAB_CATALOGUE}
    rng = ranges or {}
    age = given.age if given.age is not None else study.age
    if age is None:
        raise InputError("missing_lab", "age is required: it is not in the image header")
    sex = (given.sex or study.sex or "").strip().upper()
    if sex not in SEXES:
        raise InputError("missing_lab" if not sex else "bad_lab",
                         "sex is required: it is not in the image header" if not sex
                         else f"sex must be F or M, not {sex[:10]!r}")
    return Labs(ntx=_check(given.ntx, cat[Lab.NTX], rng), bmd_tscore=_check(given.bmd_tscore, cat[Lab.TSCORE], rng),
                age=_check(float(age), cat[Lab.AGE], rng), sex=sex)
