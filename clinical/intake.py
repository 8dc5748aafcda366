"""Calcium and vitamin D reference values (R-CAL-1, R-CAL-2, R-VITD-1, R-VITD-2) and regimen parsing."""

from __future__ import annotations

import re
from typing import Literal

VITAMIN_D_UL_IU: float = 4000.0
"""R-VITD-2: adult upper limit, IU/day."""
VITAMIN_D_MIN_IU_AGE_50: float = 800.0
"""R-VITD-1: minimum recommended intake for age >= 50, IU/day."""
IU_PER_MICROGRAM = 40.0

_NUMBER = r"(\d{1,3}(?:[,\s]\d{3})+|\d+(?:\.\d+)?)"
_DOSE = re.compile(_NUMBER + r"\s*(iu|i\.u\.|units?|mcg|µg|ug|micrograms?)\b", re.IGNORECASE)
_EVERY_N = re.compile(r"every\s+(\d+)\s*(day|week|month)s?", re.IGNORECASE)
_PERIODS: tuple[tuple[str, float], ...] = (
    (r"\b(daily|a day|per day|/\s*day|qd|once a day|every day)\b", 1.0),
    (r"\b(weekly|a week|per week|/\s*week|once a week|every week)\b", 7.0),
    (r"\b(monthly|a month|per month|/\s*month|once a month|every month)\b", 365.25 / 12),
)
_TIMES = re.compile(r"\b(twice|two times|three times|(\d+)\s*times)\b", re.IGNORECASE)
_DAYS_PER_UNIT = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}


def calcium_rda_mg(age: float, sex: Literal["F", "M"]) -> float:
    """Return the R-CAL-1 calcium RDA in mg/day (diet + supplement).

    IOM 2011: women 19-50 1000, women 51+ 1200, men 51-70 1000, men 71+ 1200 (men 19-50 1000); AACE sets
    1200 mg for women >= 50, so a woman of exactly 50 gets 1200 (the higher of the two).
    """
    if sex == "F":
        return 1200.0 if age >= 50 else 1000.0
    return 1200.0 if age >= 71 else 1000.0


def calcium_ul_mg(age: float) -> float:
    """Return the R-CAL-2 calcium upper limit in mg/day: 2500 for ages 19-50, 2000 for 51 and over."""
    return 2500.0 if age < 51 else 2000.0


def parse_vitamin_d_regimen(text: str) -> float | None:
    """Return the average daily vitamin D dose in IU of a free-text regimen, or None if it cannot be parsed.

    Understands a dose in IU or micrograms (1 ug = 40 IU) and a period: daily, weekly, monthly, "every N
    days/weeks/months", optionally "twice"/"N times" per period. The course length ("x 8 weeks") does not
    change the average daily dose while the course runs. Examples: "ergocalciferol 50,000 IU weekly x 8
    weeks" -> 7142.9; "10,000 IU daily" -> 10000.
    """
    dose_match = _DOSE.search(text)
    period = _period_days(text)
    if dose_match is None or period is None:
        return None
    dose = float(re.sub(r"[,\s]", "", dose_match.group(1)))
    if dose_match.group(2).lower() in {"mcg", "µg", "ug", "microgram", "micrograms"}:
        dose *= IU_PER_MICROGRAM
    return dose * _times_per_period(text) / period


def _period_days(text: str) -> float | None:
    """Return the dosing period of ``text`` in days, or None when no period is stated."""
    every = _EVERY_N.search(text)
    if every:
        return int(every.group(1)) * _DAYS_PER_UNIT[every.group(2).lower()]
    for pattern, days in _PERIODS:
        if re.search(pattern, text, re.IGNORECASE):
            return days
    return None


def _times_per_period(text: str) -> float:
    """Return how many doses are taken per period ("twice weekly" -> 2); 1 when not stated."""
    match = _TIMES.search(text)
    if match is None:
        return 1.0
    word = match.group(1).lower()
    if match.group(2):
        return float(match.group(2))
    return 2.0 if word in {"twice", "two times"} else 3.0
