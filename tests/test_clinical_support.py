"""Tiny named clinical contexts for the suggestion-engine tests (no tests here).

``base()`` is a complete, unremarkable 60-year-old postmenopausal woman at low risk: every field present,
every rule evaluable, nothing firing. Tests change it with dotted paths:
``make({"patient.dxa.t_total_hip": -2.6})``.
"""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

from clinical.engine import suggest

ASSESSMENT = date(2026, 3, 2)


def days_ago(n: int) -> str:
    """ISO date ``n`` days before the assessment date."""
    return (ASSESSMENT - timedelta(days=n)).isoformat()


def base() -> dict[str, Any]:
    """A complete low-risk context."""
    return {
        "assessment_date": ASSESSMENT.isoformat(),
        "patient": {
            "age": 60,
            "sex": "F",
            "postmenopausal": True,
            "weight_kg": 65,
            "fractures": [],
            "medications": [],
            "dxa": {
                "date": days_ago(100),
                "t_lumbar_spine": -1.5,
                "t_femoral_neck": -1.5,
                "t_total_hip": -1.2,
            },
            "frax": {"mof_10y_pct": 10.0, "hip_10y_pct": 1.0, "with_bmd": True, "gc_adjusted": False},
            "labs": {
                "urine_ntx_nmol_bce_per_mmol_cr": 40,
                "urine_ntx_baseline": None,
                "urine_ntx_baseline_date": None,
                "serum_ctx_ng_ml": None,
                "serum_creatinine_mg_dl": 0.8,
                "egfr_ml_min_1_73m2": 80,
                "crcl_cockcroft_gault_ml_min": 70,
                "serum_calcium_corrected_mg_dl": 9.5,
                "vitamin_d_25oh_ng_ml": 35,
                "alkaline_phosphatase_u_l": 80,
                "pth_pg_ml": None,
            },
            "glucocorticoids": {
                "current": False,
                "prednisone_eq_mg_day": 0,
                "duration_months": 0,
                "cumulative_g_past_year": 0.0,
            },
            "cardiovascular": {"mi_dates": [], "stroke_dates": []},
            "intake": {
                "calcium_diet_mg_day": 800,
                "calcium_supplement_mg_day": 400,
                "vitamin_d_iu_day": 1000,
                "vitamin_d_regimen": None,
            },
            "falls": {"count_12m": 0, "injurious": False},
            "symptoms": {"red_flags": [], "back_pain": None},
            "height_loss_cm": {"historical": 0.0, "prospective": 0.0},
            "history": {
                "cancer": [],
                "skeletal_radiation": False,
                "paget": False,
                "kidney_stones": False,
                "other": [],
            },
            "imaging": {
                "study": "1.2.3",
                "study_date": days_ago(10),
                "l1_trabecular_hu": 150,
                "vertebral_deformities": [],
            },
            "patient_request": None,
        },
        "model": {"p_vertebral_fracture_6m": 0.01},
    }


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``path = "a.b.c"`` (list indices as numbers)."""
    keys = path.split(".")
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def make(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base context with ``changes`` (dotted path -> value) applied."""
    data = copy.deepcopy(base())
    for path, value in (changes or {}).items():
        set_path(data, path, copy.deepcopy(value))
    return data


def run(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``suggest`` of ``make(changes)``."""
    return suggest(make(changes))


def fracture(
    days: int, site: str = "vertebral_L2", fragility: bool | None = True, **extra: Any
) -> dict[str, Any]:
    """A fracture ``days`` before the assessment."""
    return {
        "site": site,
        "date": days_ago(days),
        "fragility": fragility,
        "genant_grade": None,
        "on_osteoporosis_therapy_at_time": False,
        **extra,
    }


def med(drug: str, start_days: int, stop_days: int | None = None, **extra: Any) -> dict[str, Any]:
    """A medication course started ``start_days`` ago, stopped ``stop_days`` ago (None: current)."""
    return {
        "drug": drug,
        "start": days_ago(start_days),
        "stop": None if stop_days is None else days_ago(stop_days),
        **extra,
    }


def alert_keys(out: dict[str, Any]) -> set[str]:
    """The alert keys of a suggestion."""
    return {a["key"] for a in out["alerts"]}


def monitoring_keys(out: dict[str, Any]) -> set[str]:
    """The monitoring keys of a suggestion."""
    return {m["key"] for m in out["monitoring"]}


def avoided(out: dict[str, Any], rule: str | None = None) -> set[str]:
    """Avoided items, optionally only those of one rule."""
    return {a["item"] for a in out["avoid"] if rule is None or a["rule"] == rule}


def given(context: dict[str, Any], path: str) -> bool:
    """True when the dotted ``path`` of the context holds a value (absent or null is not given)."""
    node: Any = context
    for key in path.split("."):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return False
            node = node[int(key)]
        elif isinstance(node, dict) and node.get(key) is not None:
            node = node[key]
        else:
            return False
    return True


def not_evaluated(out: dict[str, Any]) -> set[str]:
    """Rule ids reported as not evaluated."""
    return {n["rule"] for n in out["not_evaluated"]}


VERY_HIGH = {"patient.fractures": [fracture(30)]}
"""A fragility fracture 30 days ago: very high risk (R-CAT-1)."""
HIGH = {"patient.dxa.t_total_hip": -2.6}
"""A T-score of -2.6: high risk (R-CAT-2)."""
