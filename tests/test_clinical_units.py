"""Unit tests of the small pure helpers: dates, renal estimates, regimen parsing, Genant grades, imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from clinical.dates import months_between, within_days
from clinical.facts import genant_grade
from clinical.intake import calcium_rda_mg, calcium_ul_mg, parse_vitamin_d_regimen
from clinical.renal import ckd_epi_2021, cockcroft_gault


@pytest.mark.parametrize(
    ("text", "daily"),
    [
        ("ergocalciferol 50,000 IU weekly x 8 weeks", 50000 / 7),
        ("10,000 IU daily", 10000),
        ("50000 IU every 2 weeks", 50000 / 14),
        ("25 mcg per day", 1000),
        ("1000 IU twice daily", 2000),
        ("100,000 IU monthly", 100000 * 12 / 365.25),
        ("as directed", None),
        ("vitamin D daily", None),
    ],
)
def test_parse_vitamin_d_regimen(text: str, daily: float | None) -> None:
    got = parse_vitamin_d_regimen(text)
    assert got == (None if daily is None else pytest.approx(daily, rel=1e-6))


def test_within_days_counts_both_ends() -> None:
    today = date(2026, 3, 2)
    assert within_days(date(2025, 3, 2), today, 365)
    assert not within_days(date(2025, 3, 1), today, 365)
    assert within_days(today, today, 365)
    assert not within_days(None, today, 365)


def test_months_between_is_calendar_based() -> None:
    assert months_between(date(2024, 3, 2), date(2026, 3, 2)) == 24.0
    assert months_between(date(2024, 1, 31), date(2024, 2, 29)) == pytest.approx(0.95, abs=0.01)
    assert months_between(date(2026, 3, 2), date(2024, 3, 2)) == -24.0


def test_cockcroft_gault() -> None:
    assert cockcroft_gault(1.0, 80, "M", 72) == pytest.approx(60.0)
    assert cockcroft_gault(1.0, 80, "F", 72) == pytest.approx(51.0)


def test_ckd_epi_2021_reference_value() -> None:
    # 50-year-old man, creatinine 1.0 mg/dL: 92 mL/min/1.73 m2 (NKF calculator)
    assert ckd_epi_2021(1.0, 50, "M") == pytest.approx(92, abs=1)


@pytest.mark.parametrize(
    ("pct", "grade"), [(19.9, 0), (20, 1), (24.9, 1), (25, 2), (40, 2), (40.1, 3), (None, None)]
)
def test_genant_grade(pct: float | None, grade: int | None) -> None:
    assert genant_grade(pct) == grade


def test_calcium_reference_values() -> None:
    assert (
        calcium_rda_mg(49, "F"),
        calcium_rda_mg(50, "F"),
        calcium_rda_mg(70, "M"),
        calcium_rda_mg(71, "M"),
    ) == (1000, 1200, 1000, 1200)
    assert (calcium_ul_mg(50), calcium_ul_mg(51)) == (2500, 2000)


def test_engine_imports_no_heavy_library() -> None:
    code = (
        "import sys, clinical.engine, clinical.rules; "
        "print(','.join(m for m in ('torch', 'monai', 'gradio', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
