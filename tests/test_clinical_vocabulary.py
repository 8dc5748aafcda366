"""The vocabulary and the rule registry mirror shared/clinical/*, and the engine emits nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_clinical_support import HIGH, VERY_HIGH, run

from clinical.rules import RULES, RULES_BY_ID, RULES_MD_IDS, Mark, rules_table
from clinical.vocabulary import (
    CLASS_ALIASES,
    DRUGS_BY_CLASS,
    MODEL_P_HIGH,
    MODEL_P_VERY_HIGH,
    AlertKey,
    BannedAction,
    Drug,
    DrugClass,
    MonitoringKey,
    RiskCategory,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "clinical"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/clinical is not present (CI)")


@needs_shared
def test_vocabulary_mirrors_vocabulary_json() -> None:
    vocab = json.loads((SHARED / "vocabulary.json").read_text())
    assert [c.value for c in RiskCategory] == vocab["risk_category"]
    assert {c.value: [d.value for d in drugs] for c, drugs in DRUGS_BY_CLASS.items()} == vocab["drug_classes"]
    assert {k: [c.value for c in v] for k, v in CLASS_ALIASES.items()} == vocab["class_aliases"]
    assert sorted(a.value for a in AlertKey) == sorted(vocab["alerts"])
    assert sorted(m.value for m in MonitoringKey) == sorted(vocab["monitoring"])
    assert sorted(b.value for b in BannedAction) == sorted(vocab["actions_never_to_suggest"])
    assert vocab["model_thresholds_default"]["p_high"] == MODEL_P_HIGH
    assert vocab["model_thresholds_default"]["p_very_high"] == MODEL_P_VERY_HIGH


@needs_shared
def test_registry_has_every_rules_md_id() -> None:
    text = (SHARED / "RULES.md").read_text()
    ids = set(re.findall(r"^\| (R-[A-Z0-9/-]+) \|", text, flags=re.MULTILINE))
    assert ids == set(RULES_MD_IDS)


@needs_shared
def test_rules_md_alert_keys_are_in_vocabulary() -> None:
    text = (SHARED / "RULES.md").read_text()
    section = text.split("## 11. Alert keys", 1)[1].split("## 12.", 1)[0]
    keys = {k.strip(" .\n") for k in section.replace("\n", " ").split("·") if k.strip(" .\n")}
    assert keys <= {a.value for a in AlertKey}


def test_registry_rows_are_complete() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.text and r.source and r.marks and r.section
        assert isinstance(r.verification, Mark)
    assert len(RULES_MD_IDS) == 54
    assert rules_table()[0]["id"] == "R-PREC-1"


def test_every_rule_id_in_the_code_is_registered() -> None:
    code = "\n".join(p.read_text() for p in (REPO / "clinical").glob("*.py"))
    cited = set(re.findall(r'"((?:R|SRC)-[A-Z0-9/-]+[A-Z0-9])"', code))
    assert cited, "no rule ids found"
    assert cited <= set(RULES_BY_ID), cited - set(RULES_BY_ID)


def test_every_drug_has_one_class() -> None:
    drugs = [d for ds in DRUGS_BY_CLASS.values() for d in ds]
    assert sorted(drugs) == sorted(Drug)
    assert set(DRUGS_BY_CLASS) == set(DrugClass)


@pytest.mark.parametrize("changes", [{}, HIGH, VERY_HIGH, {**VERY_HIGH, "patient.sex": "M"}])
def test_emitted_keys_are_in_the_vocabulary(changes: dict[str, object]) -> None:
    out = run(changes)
    assert {a["key"] for a in out["alerts"]} <= {a.value for a in AlertKey}
    assert {m["key"] for m in out["monitoring"]} <= {m.value for m in MonitoringKey}
    assert set(out["first_line"]) | set(out["deferred"]) <= {c.value for c in DrugClass}
    assert {a["item"] for a in out["avoid"]} <= {c.value for c in DrugClass} | {d.value for d in Drug}
    assert out["risk_category"] in {c.value for c in RiskCategory}
    assert set(out["rules_fired"]) <= set(RULES_BY_ID)
    for item in out["alerts"] + out["monitoring"] + out["avoid"]:
        assert item["source"] == RULES_BY_ID[item["rule"]].source
