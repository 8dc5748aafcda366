"""The README section "How the engine decides" is the generator's output, and the generator covers the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical.rules import RULES
from clinical.rules_doc import BEGIN, END, main, replace_section, rules_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_section_equals_the_generator_output() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section == "\n" + rules_markdown(), "stale: run python -m clinical.rules_doc --write README.md"


def test_every_rule_has_a_row_with_its_statement_source_and_mark() -> None:
    doc = rules_markdown()
    for rule in RULES:
        start = f"| {rule.id}{'*' if rule.assigned_id else ''} |"
        (row,) = [line for line in doc.splitlines() if line.startswith(start)]
        assert rule.text.replace("|", "\\|") in row and rule.source in row
        assert row.split(" | ")[-1].startswith(rule.verification.value)
        assert all(f"`{key.value}`" in row for key in rule.outputs)


def test_replace_section_keeps_the_rest_and_is_idempotent() -> None:
    text = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    once = replace_section(text)
    assert once.startswith(f"before\n{BEGIN}\n### How the engine decides") and once.endswith(f"{END}\nafter\n")
    assert replace_section(once) == once


@pytest.mark.parametrize("text", ["no markers", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
def test_replace_section_needs_one_pair_of_markers_in_order(text: str) -> None:
    with pytest.raises(ValueError, match="one BEGIN and one END marker"):
        replace_section(text)


def test_check_and_write(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"# x\n{BEGIN}\nstale\n{END}\n", encoding="utf-8")
    assert main(["--check", str(path)]) == 1
    assert main(["--write", str(path)]) == 0
    assert main(["--check", str(path)]) == 0
