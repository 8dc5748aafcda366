"""Property-based tests (hypothesis) of the suggestion engine's safety invariants."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_clinical_support import days_ago, make

from clinical.engine import suggest
from clinical.suggestion import Suggestion
from clinical.vocabulary import (
    ANABOLICS,
    DRUGS_BY_CLASS,
    AlertKey,
    BannedAction,
    Drug,
    DrugClass,
    MonitoringKey,
    RiskCategory,
    category_rank,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
maybe = st.none().__or__

t_scores = maybe(st.floats(-5, 2, allow_nan=False).map(lambda x: round(x, 2)))
pct = st.floats(0, 60, allow_nan=False).map(lambda x: round(x, 1))
drugs = st.sampled_from([d.value for d in Drug])


@st.composite
def frax(draw: st.DrawFn) -> dict[str, Any] | None:
    mof = draw(pct)
    hip = draw(st.floats(0, 1, allow_nan=False)) * mof
    return draw(st.sampled_from([None, {"mof_10y_pct": mof, "hip_10y_pct": round(hip, 1)}]))


@st.composite
def fractures(draw: st.DrawFn) -> list[dict[str, Any]]:
    sites = st.sampled_from(["vertebral_L1", "vertebral_T12", "hip", "distal_radius", "rib", "other"])
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "site": sites,
                    "date": st.integers(0, 4000).map(days_ago),
                    "fragility": maybe(st.booleans()),
                    "on_osteoporosis_therapy_at_time": maybe(st.booleans()),
                }
            ),
            max_size=3,
        )
    )


@st.composite
def medications(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, 4000))
        stop = draw(maybe(st.integers(0, start)))
        out.append(
            {
                "drug": draw(drugs),
                "start": days_ago(start),
                "stop": None if stop is None else days_ago(stop),
                "doses_received": draw(maybe(st.integers(0, 20))),
            }
        )
    return out


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    return make(
        {
            "patient.age": draw(st.integers(19, 100)),
            "patient.sex": draw(st.sampled_from(["F", "M"])),
            "patient.fractures": draw(fractures()),
            "patient.medications": draw(medications()),
            "patient.dxa.t_lumbar_spine": draw(t_scores),
            "patient.dxa.t_total_hip": draw(t_scores),
            "patient.frax": draw(frax()),
            "patient.labs.crcl_cockcroft_gault_ml_min": draw(maybe(st.floats(5, 150, allow_nan=False))),
            "patient.labs.egfr_ml_min_1_73m2": draw(maybe(st.floats(5, 150, allow_nan=False))),
            "patient.labs.serum_calcium_corrected_mg_dl": draw(maybe(st.floats(7, 11, allow_nan=False))),
            "patient.labs.vitamin_d_25oh_ng_ml": draw(maybe(st.floats(5, 80, allow_nan=False))),
            "patient.labs.alkaline_phosphatase_u_l": draw(maybe(st.floats(30, 300, allow_nan=False))),
            "patient.glucocorticoids": draw(
                st.sampled_from([None, {"current": True, "prednisone_eq_mg_day": 10, "duration_months": 6}])
            ),
            "patient.cardiovascular.mi_dates": draw(st.lists(st.integers(0, 3000).map(days_ago), max_size=1)),
            "patient.cardiovascular.stroke_dates": draw(
                st.lists(st.integers(0, 3000).map(days_ago), max_size=1)
            ),
            "patient.falls.count_12m": draw(st.integers(0, 3)),
            "patient.history.paget": draw(st.booleans()),
            "patient.history.dialysis": draw(maybe(st.booleans())),
            "patient.symptoms.red_flags": draw(
                st.lists(st.sampled_from(["fever", "night_pain", "x"]), max_size=2)
            ),
            "patient.intake.calcium_supplement_mg_day": draw(maybe(st.floats(0, 2500, allow_nan=False))),
            "patient.intake.vitamin_d_iu_day": draw(maybe(st.floats(0, 12000, allow_nan=False))),
            "model.p_vertebral_fracture_6m": draw(maybe(st.floats(0, 1, allow_nan=False))),
        }
    )


def _excluded(cls: str, avoided: set[str]) -> bool:
    drugs_of = [d.value for d in DRUGS_BY_CLASS[DrugClass(cls)]]
    return cls in avoided or (bool(drugs_of) and all(d in avoided for d in drugs_of))


@SETTINGS
@given(contexts())
def test_output_validates_and_nothing_avoided_is_suggested(ctx: dict[str, Any]) -> None:
    out = suggest(ctx)
    Suggestion.model_validate(out)
    avoided = {a["item"] for a in out["avoid"]}
    for cls in out["first_line"]:
        assert not _excluded(cls, avoided), (cls, out["avoid"])
        assert cls not in out["deferred"]


@SETTINGS
@given(contexts())
def test_keys_in_vocabulary_and_no_banned_action(ctx: dict[str, Any]) -> None:
    out = suggest(ctx)
    assert {a["key"] for a in out["alerts"]} <= {k.value for k in AlertKey}
    assert {m["key"] for m in out["monitoring"]} <= {k.value for k in MonitoringKey}
    emitted = (
        {a["key"] for a in out["alerts"]} | {m["key"] for m in out["monitoring"]} | set(out["first_line"])
    )
    emitted |= {a["item"] for a in out["avoid"]} | set(out["deferred"])
    assert not emitted & {b.value for b in BannedAction}


@SETTINGS
@given(contexts(), st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False))
def test_higher_probability_never_lowers_the_category(ctx: dict[str, Any], p1: float, p2: float) -> None:
    lo, hi = sorted((p1, p2))
    ctx["model"]["p_vertebral_fracture_6m"] = lo
    low = suggest(ctx)
    ctx["model"]["p_vertebral_fracture_6m"] = hi
    high = suggest(ctx)
    assert category_rank(RiskCategory(high["risk_category"])) >= category_rank(
        RiskCategory(low["risk_category"])
    )
    assert low["clinical_category"] == high["clinical_category"]


@SETTINGS
@given(contexts())
def test_model_moves_category_at_most_one_level_up(ctx: dict[str, Any]) -> None:
    out = suggest(ctx)
    clinical = category_rank(RiskCategory(out["clinical_category"]))
    final = category_rank(RiskCategory(out["risk_category"]))
    assert clinical <= final <= clinical + 1


@SETTINGS
@given(contexts())
def test_hard_exclusions_hold(ctx: dict[str, Any]) -> None:
    out = suggest(ctx)
    first = set(out["first_line"])
    patient = ctx["patient"]
    if out["clinical_category"] == "low":
        assert not first & {c.value for c in ANABOLICS}
    if patient["sex"] == "M":
        assert not first & {"romosozumab", "serm", "menopausal_hormone_therapy"}
    if patient["cardiovascular"]["mi_dates"] or patient["cardiovascular"]["stroke_dates"]:
        assert "romosozumab" not in first
    crcl = patient["labs"]["crcl_cockcroft_gault_ml_min"]
    if crcl is not None and crcl < 35:
        assert "iv_bisphosphonate" not in first
    if patient["history"]["paget"]:
        assert "pth_analog" not in first
    calcium = patient["labs"]["serum_calcium_corrected_mg_dl"]
    if calcium is not None and calcium < 8.5:
        assert not first & {"oral_bisphosphonate", "iv_bisphosphonate", "denosumab", "romosozumab"}
