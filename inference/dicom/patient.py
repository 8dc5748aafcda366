"""Patient age and sex from the header."""

from __future__ import annotations

import re
from datetime import date

from pydicom.dataset import Dataset

from inference.dicom.parse import _get

_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375, "Y": 365.25}


def _date(value: object) -> date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def patient_age(ds: Dataset) -> tuple[int | None, str]:
    """Age in whole years from PatientAge, else from PatientBirthDate and StudyDate; with a warning if odd.

    An age of 0 in an adult study is the usual mark of anonymisation, so it is reported as unknown.
    """
    match = _AGE.match(str(_get(ds, "PatientAge", "")).strip().upper())
    if match:
        years = int(int(match.group(1)) * _DAYS[match.group(2)] // 365.25)
    else:
        born, seen = _date(_get(ds, "PatientBirthDate")), _date(_get(ds, "StudyDate"))
        if born is None or seen is None or seen < born:
            return None, ""
        years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    if years <= 0 or years > 125:
        return None, f"patient age in the header ({years} years) ignored as implausible (anonymised?)"
    return years, ""


def patient_sex(ds: Dataset) -> str | None:
    """'F' or 'M' from PatientSex, else None."""
    sex = str(_get(ds, "PatientSex", "")).strip().upper()
    return sex if sex in ("F", "M") else None
