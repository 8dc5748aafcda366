"""Worked examples: the context.md example and the rule conflicts named in issue 6."""

from __future__ import annotations

from test_clinical_support import HIGH, VERY_HIGH, alert_keys, avoided, days_ago, med, monitoring_keys, run

from clinical.engine import suggest
from clinical.suggestion import DISCLAIMER, Suggestion

CONTEXT_MD_EXAMPLE = {
    "assessment_date": "2026-03-02",
    "patient": {
        "age": 71,
        "sex": "F",
        "postmenopausal": True,
        "weight_kg": 58,
        "fractures": [
            {
                "site": "vertebral_L1",
                "date": "2025-11-20",
                "fragility": True,
                "genant_grade": 2,
                "on_osteoporosis_therapy_at_time": False,
            }
        ],
        "medications": [
            {
                "drug": "alendronate",
                "drug_class": "oral_bisphosphonate",
                "start": "2019-05-01",
                "stop": None,
                "last_dose": None,
                "doses_received": None,
                "adherent": True,
                "administration_issue": None,
                "note": None,
            }
        ],
        "dxa": {"date": "2025-12-01", "t_lumbar_spine": -2.9, "t_femoral_neck": -2.4, "t_total_hip": -2.1},
        "frax": {"mof_10y_pct": 24.0, "hip_10y_pct": 3.9, "with_bmd": True, "gc_adjusted": False},
        "labs": {
            "urine_ntx_nmol_bce_per_mmol_cr": 61,
            "urine_ntx_baseline": None,
            "urine_ntx_baseline_date": None,
            "serum_ctx_ng_ml": None,
            "serum_creatinine_mg_dl": 0.9,
            "egfr_ml_min_1_73m2": 64,
            "crcl_cockcroft_gault_ml_min": 52,
            "serum_calcium_corrected_mg_dl": 9.4,
            "vitamin_d_25oh_ng_ml": 31,
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
            "calcium_diet_mg_day": 700,
            "calcium_supplement_mg_day": 500,
            "vitamin_d_iu_day": 1000,
            "vitamin_d_regimen": None,
        },
        "falls": {"count_12m": 1, "injurious": False},
        "symptoms": {"red_flags": [], "back_pain": "chronic"},
        "height_loss_cm": {"historical": 3.0, "prospective": None},
        "history": {
            "cancer": [],
            "skeletal_radiation": False,
            "paget": False,
            "kidney_stones": False,
            "other": [],
        },
        "imaging": {
            "study": "1.2.3...",
            "study_date": "2026-02-20",
            "l1_trabecular_hu": 88,
            "vertebral_deformities": [{"level": "L1", "genant_grade": 2, "height_loss_pct": 31}],
        },
        "patient_request": None,
    },
    "model": {"p_vertebral_fracture_6m": 0.12},
}


def test_context_md_example() -> None:
    out = suggest(CONTEXT_MD_EXAMPLE)
    assert (out["risk_category"], out["clinical_category"], out["model_category"]) == ("very_high",) * 3
    assert out["first_line"] == ["pth_analog", "romosozumab", "denosumab", "iv_bisphosphonate"]
    assert out["deferred"] == []
    assert "anabolic_followup_antiresorptive" in alert_keys(out)
    assert "oral_bp_administration_rules" in alert_keys(out)  # still taking alendronate
    assert {
        "reassess_6m",
        "dxa_every_1_to_2y",
        "specialist_referral_consider",
        "cv_risk_review",
        "renal_function_before_each_zoledronate_dose",
        "fall_risk_assessment",
        "renal_recheck_6m",
    } <= monitoring_keys(out)
    assert "dxa_recommended" not in monitoring_keys(out)  # L1 88 HU, but a DXA 3 months ago
    assert out["rules_fired"][:1] == ["R-CAT-1"]
    # the L1 deformity on imaging is the reported L1 fracture, not a second one
    assert not any("multiple" in r for r in out["category_reasons"])
    assert out["disclaimer"] == DISCLAIMER
    Suggestion.model_validate(out)


def test_conflict_very_high_crcl_19_stroke_last_year() -> None:
    out = run(
        {
            **VERY_HIGH,
            "patient.labs.crcl_cockcroft_gault_ml_min": 19,
            "patient.labs.egfr_ml_min_1_73m2": None,
            "patient.cardiovascular.stroke_dates": [days_ago(200)],
        }
    )
    assert out["risk_category"] == "very_high"
    assert out["first_line"] == ["pth_analog", "denosumab"]
    assert {"romosozumab", "zoledronic_acid", "alendronate", "risedronate", "ibandronate"} <= avoided(out)
    assert {
        "romosozumab_cv_contraindication",
        "renal_contraindication",
        "denosumab_ckd_hypocalcaemia_risk",
        "ckd_mbd_specialist_review",
    } <= alert_keys(out)
    assert "serum_calcium_monitoring" in monitoring_keys(out)
    assert "btm_recheck_3_to_6m" not in monitoring_keys(out)  # eGFR < 30


def test_conflict_every_drug_excluded_falls_back_to_lifestyle() -> None:
    out = run(
        {
            **VERY_HIGH,
            "patient.sex": "M",
            "patient.labs.crcl_cockcroft_gault_ml_min": 20,
            "patient.history.paget": True,
            "patient.labs.serum_calcium_corrected_mg_dl": 8.0,
        }
    )
    assert out["first_line"] == ["lifestyle_calcium_vitd"]
    assert "denosumab" in out["deferred"]
    assert "denosumab_ckd_hypocalcaemia_risk" in alert_keys(out)  # deferred denosumab still needs the warning
    assert any("specialist review" in w for w in out["warnings"])


def test_conflict_pth_cap_and_romosozumab_cv_leaves_antiresorptives() -> None:
    out = run(
        {
            **VERY_HIGH,
            "patient.medications": [{"drug": "teriparatide", "start": "2020-01-01", "stop": "2022-01-01"}],
            "patient.cardiovascular.mi_dates": [days_ago(30)],
        }
    )
    assert out["first_line"] == ["denosumab", "iv_bisphosphonate"]


def test_glucocorticoid_user_with_vitamin_d_deficiency() -> None:
    out = run(
        {
            **HIGH,
            "patient.glucocorticoids": {
                "current": True,
                "prednisone_eq_mg_day": 10,
                "duration_months": 12,
                "cumulative_g_past_year": 3.6,
            },
            "patient.labs.vitamin_d_25oh_ng_ml": 12,
        }
    )
    assert out["first_line"] == ["pth_analog"]
    assert out["deferred"] == ["oral_bisphosphonate", "iv_bisphosphonate", "denosumab"]
    assert "glucocorticoid_induced_osteoporosis" in alert_keys(out)


def test_switch_from_denosumab_never_suggests_a_plain_stop() -> None:
    out = run({**HIGH, "patient.medications": [med("denosumab", 5 * 365, last_dose=days_ago(150))]})
    assert "denosumab_no_stop" in alert_keys(out)
    assert "drug_holiday_eligible" not in alert_keys(out)


def test_lifestyle_and_disclaimer_always_present() -> None:
    out = run()
    topics = {item["topic"] for item in out["lifestyle"]}
    assert {"caffeine", "alcohol", "salt", "fall_proof_home", "traditional_chinese_medicine"} <= topics
    assert "not a diagnosis" in out["disclaimer"]
