"""Labs given with a study: validated against the bundle's units and valid ranges (an error, never a clip)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from inference.errors import InputError
from inference.spec import LAB_CATALOGUE, Lab, LabSpec
from inference.study import SeriesFacts


@dataclass(frozen=True)
class Labs:
    """The non-image model inputs (units as in :data:`inference.spec.LAB_CATALOGUE`)."""

    ntx: float
    bmd_tscore: float
    age: float
    sex: str

    def vector(self) -> list[float]:
        """Model order: NTX, T-score, age, sex (F=1, M=0)."""
        return [self.ntx, self.bmd_tscore, self.age, 1.0 if self.sex == "F" else 0.0]

    def as_dict(self) -> dict[str, float | str]:
        """Result-JSON form."""
        return {Lab.NTX.value: self.ntx, Lab.TSCORE.value: self.bmd_tscore, Lab.AGE.value: self.age,
                Lab.SEX.value: self.sex}


def _check(value: float | None, spec: LabSpec, flag: str, ranges: dict[str, list[float]]) -> float:
    """A finite value inside the bundle's valid range, or an InputError naming the unit and range."""
    if value is None:
        raise InputError("missing_lab", f"{flag} is required ({spec.description}, {spec.unit})")
    low, high = ranges.get(spec.name, [spec.low, spec.high])
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError("lab_out_of_range",
                         f"{flag} {value:g} is outside the valid range {low:g} to {high:g} {spec.unit}")
    return float(value)


def resolve_labs(ntx: float | None, bmd_tscore: float | None, age: float | None, sex: str | None,
                 study: SeriesFacts, ranges: dict[str, list[float]] | None = None) -> Labs:
    """Validate the labs; age and sex come from the DICOM header unless given."""
    cat = {s.name: s for s in LAB_CATALOGUE}
    rng = ranges or {}
    age_v = age if age is not None else study.age
    if age_v is None:
        raise InputError("missing_lab", "age is not in the image header: give --age")
    sex_v = (sex or study.sex or "").strip().upper()
    if sex_v not in ("F", "M"):
        raise InputError("missing_lab" if not sex_v else "bad_lab",
                         "sex must be F or M" + ("" if sex_v else " (not in the image header: give --sex)"))
    return Labs(
        ntx=_check(ntx, cat[Lab.NTX], "--ntx", rng),
        bmd_tscore=_check(bmd_tscore, cat[Lab.TSCORE], "--bmd-tscore", rng),
        age=_check(float(age_v), cat[Lab.AGE], "age", rng),
        sex=sex_v,
    )
