"""The scoring form: what is wrong with each lab box, said beside that box, before anything is scored.

Empty means not given, everywhere: a box left empty is never read as 0. The labs are then validated once more,
authoritatively, by the one lab validator (:func:`inference.labs.resolve_labs`) when the study is scored; this
module only decides which box each problem belongs to, with the same parser (:func:`inference.labs.parse_number`)
and the model card's valid ranges.
"""

from __future__ import annotations

from collections.abc import Mapping

from inference.errors import InputError
from inference.labs import parse_number
from inference.spec import LAB_CATALOGUE, SEXES, Lab

FIELDS = {"ntx": Lab.NTX, "bmd_tscore": Lab.TSCORE, "age": Lab.AGE}
"""Form box -> lab of the catalogue."""
EXAMPLES = {"ntx": "52", "bmd_tscore": "-2.6", "age": "70"}
"""A well-formed entry of each box, for the "not a number" message."""


def _required(field: str, unit: str, low: float, high: float, label: str) -> str:
    if field == "age":
        return "Required: the image header gives no age (years)."
    return f"Required: enter the {label} ({unit}, {low:g} to {high:g})."


def lab_messages(cells: Mapping[str, object], header_age: int | None, header_sex: str | None,
                 ranges: Mapping[str, list[float]]) -> dict[str, str]:
    """Per box (``ntx``, ``bmd_tscore``, ``age``, ``sex``), one sentence on what is wrong; empty when the labs
    can be scored. Age and sex may be left empty when the image header has them."""
    specs = {s.name: s for s in LAB_CATALOGUE}
    out: dict[str, str] = {}
    for field, lab in FIELDS.items():
        spec = specs[lab]
        low, high = ranges.get(spec.name, [spec.low, spec.high])
        try:
            value = parse_number(cells.get(field), spec.label)
        except InputError:
            out[field] = f"Not a number: enter the {spec.label} in digits, for example {EXAMPLES[field]}."
            continue
        if value is None:
            if not (field == "age" and header_age is not None):
                out[field] = _required(field, spec.unit, low, high, spec.label)
        elif not low <= value <= high:
            out[field] = f"Outside the valid range {low:g} to {high:g} {spec.unit}."
    sex = str(cells.get("sex") or "").strip().upper()
    if not sex and not header_sex:
        out["sex"] = "Required: the image header gives no sex (F or M)."
    elif sex and sex not in SEXES:
        out["sex"] = "Sex must be F or M."
    return out
