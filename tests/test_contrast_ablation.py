"""The counterfactual cohorts of ``training.contrast_ablation``: the same studies, part of the enhancement withheld."""

from __future__ import annotations

import csv
from dataclasses import fields, replace
from pathlib import Path

from data.synthetic.family_b import plan
from data.synthetic.family_b.plan import plan_study
from training.contrast_ablation import ENHANCED, PARTS, withheld_enhancement, write_variant

SEED = 2200


def _enhanced_indices(phase: str, count: int) -> list[int]:
    out = [i for i in range(80) if plan_study(SEED, i, 64).series.phase == phase]
    assert len(out) >= count, (phase, out)
    return out[:count]


def test_withheld_enhancement_changes_the_tissues_and_nothing_else() -> None:
    """Every draw but the tissues' HU (and the bone's enhancement that follows them) is the study as drawn; nothing
    enhanced without ``keep``, the kept tissue
    enhanced exactly as drawn; the original draw is back afterwards."""
    original = plan.draw_tissues
    for i in _enhanced_indices("arterial", 2) + _enhanced_indices("portal_venous", 2):
        drawn = plan_study(SEED, i, 64)
        with withheld_enhancement(()):
            plain = plan_study(SEED, i, 64)
        with withheld_enhancement(PARTS["aorta"]):
            aorta = plan_study(SEED, i, 64)
        for f in fields(drawn):
            if f.name not in ("tissues", "look"):
                assert repr(getattr(plain, f.name)) == repr(getattr(drawn, f.name)), (i, f.name)
        # the bone's look is the same but for the per-level enhancement, which follows the withheld bone offset
        assert repr(replace(plain.look, enhancement={})) == repr(replace(drawn.look, enhancement={}))
        assert all(v == 0.0 for v in plain.look.enhancement.values())
        assert plain.series.phase == drawn.series.phase != "none"
        assert drawn.tissues.aorta > 100.0 and plain.tissues.aorta < 60.0
        assert drawn.tissues.kidney_cortex > 100.0 and plain.tissues.kidney_cortex < 45.0
        assert plain.tissues.bone_offset == 0.0 != drawn.tissues.bone_offset
        assert aorta.tissues.aorta == drawn.tissues.aorta
        assert aorta.tissues.kidney_cortex == plain.tissues.kidney_cortex
        for f in fields(drawn.tissues):  # what the phase does not change stays as drawn
            if f.name not in ENHANCED:
                assert getattr(plain.tissues, f.name) == getattr(drawn.tissues, f.name), (i, f.name)
    assert plan.draw_tissues is original


def test_a_variant_cohort_differs_from_the_drawn_one_only_in_the_enhancement(tmp_path: Path) -> None:
    """Written variants: the same studies, the truth identical but for the enhancement's columns."""
    drawn = write_variant(tmp_path, "as_drawn", 3, SEED, 64)
    plain = write_variant(tmp_path, "none", 3, SEED, 64)
    a = list(csv.DictReader((drawn / "truth.csv").open()))
    b = list(csv.DictReader((plain / "truth.csv").open()))
    assert [r["study"] for r in a] == [r["study"] for r in b]
    differing = {k for k in a[0] if any(x[k] != y[k] for x, y in zip(a, b, strict=True))}
    enhanced = any(r["contrast_phase"] != "none" for r in a)
    assert differing <= {"contrast_offset_hu"} | {k for k in a[0] if k.endswith("_hu_enhanced")}
    assert bool(differing) == enhanced


def test_bad_input_is_one_line_before_any_cohort_is_written(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An unknown variant or a missing bundle: exit 2, one ``error:`` line, nothing written."""
    import pytest

    from training.contrast_ablation import main

    for argv in (["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o1")],
                 ["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), "--variants", "none,bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert not (tmp_path / argv[3].rsplit("/", 1)[-1]).exists()
