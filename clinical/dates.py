"""Date arithmetic relative to the assessment date (R-DATE-1)."""

from __future__ import annotations

from datetime import date, timedelta

DAYS_PER_MONTH = 365.25 / 12
"""Average month length, used only for the fractional part of :func:`months_between`."""


def within_days(when: date | None, assessment_date: date, days: int) -> bool:
    """Return True when ``when`` lies in ``[assessment_date - days, assessment_date]``, both ends counted.

    R-DATE-1: "within the past 12 months" is ``within_days(d, assessment, 365)``. ``None`` is never within.
    """
    if when is None:
        return False
    return assessment_date - timedelta(days=days) <= when <= assessment_date


def months_between(start: date, end: date) -> float:
    """Return the calendar months from ``start`` to ``end`` (negative when ``end`` is earlier).

    Whole calendar months first (2024-03-02 to 2026-03-02 is exactly 24.0), then the remaining days divided
    by the average month length.
    """
    if end < start:
        return -months_between(end, start)
    whole = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        whole -= 1
    anchor = _add_months(start, whole)
    return whole + (end - anchor).days / DAYS_PER_MONTH


def add_months(start: date, months: int) -> date:
    """Return ``start`` moved by whole calendar months (the day clamped to the month's length)."""
    return _add_months(start, months)


def _add_months(start: date, months: int) -> date:
    """Return ``start`` moved by whole calendar months, clamping the day to the month's length."""
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    for day in range(start.day, 27, -1):
        try:
            return date(year, month0 + 1, day)
        except ValueError:
            continue
    return date(year, month0 + 1, min(start.day, 28))


def years_between(start: date, end: date) -> float:
    """Return :func:`months_between` in years."""
    return months_between(start, end) / 12
