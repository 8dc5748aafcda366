"""The transparent level check (inference.levels): it never moves levels that are right, and it puts an end level
that sits on a disc back on its body."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.synthetic.cohort import CohortOptions, write_cohort
from inference.io import load_any
from inference.levels import check_levels
from inference.spec import LEVELS
from inference.study import z_slab


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("levels") / "c"
    write_cohort(out, CohortOptions(n=3, seed=7777, matrix=160, workers=1, extras=False))
    return out


def test_true_levels_stay_and_a_level_on_the_disc_above_goes_back(cohort: Path) -> None:
    fixed = 0
    for row in csv.DictReader((cohort / "truth.csv").open()):
        study = load_any(cohort / row["study"])
        z = {lv: float(row[f"{lv}_z_mm"]) for lv in LEVELS}
        assert check_levels(study, [(lv, i, z[lv]) for i, lv in enumerate(LEVELS)]) == []
        high = dict(z, T11=z["T11"] + (z["T11"] - z["T12"]) / 2)  # on the T10/T11 disc
        moves = check_levels(study, [(lv, i, high[lv]) for i, lv in enumerate(LEVELS)])
        assert all(m.level == "T11" and abs(m.to_z_mm - z["T11"]) < 3.0 for m in moves), moves
        fixed += bool(moves)
        # an interior level off by half a pitch is the profile's problem, never moved
        mid = dict(z, L2=z["L2"] + (z["L1"] - z["L2"]) / 2)
        assert check_levels(study, [(lv, i, mid[lv]) for i, lv in enumerate(LEVELS)]) == []
    assert fixed >= 1


def test_a_level_cut_by_the_scan_edge_is_reported_partly_in_the_scan(cohort: Path) -> None:
    """T11 cut through its body at the top (or L5 at the bottom) is reported with about how much of it is shown;
    a scan cut at the disc, a scan going on beyond the end level, or all levels found report nothing."""
    from inference.levels import partial_levels

    names = tuple(LEVELS)
    for row in csv.DictReader((cohort / "truth.csv").open()):
        study = load_any(cohort / row["study"])
        assert study.affine[2, 0] > 0
        z = {lv: float(row[f"{lv}_z_mm"]) for lv in LEVELS}
        found = [(lv, i, z[lv]) for i, lv in enumerate(LEVELS)]
        assert partial_levels(study, found, names) == []
        assert partial_levels(study, found[1:], names) == []  # T11 whole, the scan goes on above it
        top_disc, low_disc = (z["T11"] + z["T12"]) / 2, (z["L4"] + z["L5"]) / 2
        cut_top = z_slab(study, z["L5"] - 60.0, z["T11"] + 3.0)
        (p,) = partial_levels(cut_top, found[1:], names)
        assert (p.level, p.neighbour, p.edge) == ("T11", "T12", "top")
        assert abs(p.shown_mm - (z["T11"] + 3.0 - top_disc)) < 6.0, p
        assert "T11: partly in the scan" in p.warning()
        assert partial_levels(z_slab(study, z["L5"] - 60.0, top_disc + 2.0), found[1:], names) == []
        (q,) = partial_levels(z_slab(study, z["L5"] - 3.0, z["T11"] + 60.0), found[:-1], names)
        assert (q.level, q.neighbour, q.edge) == ("L5", "L4", "bottom")
        assert abs(q.shown_mm - (low_disc - z["L5"] + 3.0)) < 6.0, q


def _found(zs: dict[str, float]) -> list[tuple[str, int, float]]:
    return [(lv, LEVELS.index(lv), z) for lv, z in zs.items()]


def test_crowded_levels_withdraws_the_short_side_of_a_squeezed_pair() -> None:
    """The patterns of the default model on phantoms cut by the scan's edge, and spines it must leave alone."""
    from inference.findings import crowded_levels

    true = {"T11": 200.0, "T12": 170.0, "L1": 138.0, "L2": 104.0, "L3": 68.0, "L4": 30.0, "L5": -10.0}
    assert crowded_levels(_found(true)) == []
    # the reference CT's levels as the model finds them (pitch growing from 28 to 48 mm down the spine)
    assert crowded_levels(_found({"L1": 384.5, "L2": 356.0, "L3": 317.7, "L4": 271.9, "L5": 224.1})) == []
    # cut through T11: T11 put 15 mm above T12
    (t11,) = crowded_levels(_found(dict(true, T11=185.0)))
    assert (t11.level, t11.pair, t11.gap_mm) == ("T11", ("T11", "T12"), 15.0)
    assert "T11: withdrawn from the findings" in t11.warning()
    # cut at L4: L4 put on L3, L5 30 mm below it: both withdrawn (the short side), the rest kept
    squeezed = crowded_levels(_found(dict(true, L4=62.0, L5=32.0)))
    assert sorted(c.level for c in squeezed) == ["L4", "L5"]
    # cut at L3 with L4 not found: L5 put above L3 (the wrong order)
    no_l4 = {lv: z for lv, z in true.items() if lv != "L4"}
    assert [c.level for c in crowded_levels(_found(dict(no_l4, L5=80.0)))] == ["L5"]
    # an interior pair two levels apart (L3 not found) at a plausible distance is fine
    assert crowded_levels(_found({lv: z for lv, z in true.items() if lv != "L3"})) == []
    # three levels: no pitch to compare with
    assert crowded_levels(_found({"L3": 68.0, "L4": 62.0, "L5": 30.0})) == []


def test_predict_on_a_scan_cut_at_l3_reports_no_level_off_its_body(cohort: Path) -> None:
    """A phantom scan that ends at the centre of L3 (no L4, L5 or sacrum): the default model squeezes L5 onto
    the last bodies; after the level check every level reported is within 10 mm of its true centre."""
    from inference.bundle import default_bundle
    from inference.engine import Engine
    from inference.labs import Labs

    if not (default_bundle() / "model.onnx").is_file():
        pytest.skip("no default bundle")
    engine = Engine()
    for row in csv.DictReader((cohort / "truth.csv").open()):
        z = {lv: float(row[f"{lv}_z_mm"]) for lv in LEVELS}
        study = z_slab(load_any(cohort / row["study"]), z["L3"], z["T11"] + 60.0)
        result = engine.predict(study, Labs(40.0, -1.5, 70.0, "F")).to_json()
        found = {v["level"]: v["z_mm"] for v in result["vertebrae"] if v["present"]}
        assert {"T11", "T12", "L1", "L2"} <= set(found) and "L5" not in found, result["warnings"]
        assert all(abs(zz - z[lv]) < 10.0 for lv, zz in found.items()), (found, z)


def test_edge_check_counts_every_cut_position(cohort: Path) -> None:
    """``python -m training.edge_check`` on one phantom: every cut position scored or refused once; the cut at the
    centre of L3 reports no level off its body (the crowding rule), and a missing truth.csv is a usage error."""
    from inference.bundle import default_bundle
    from training.edge_check import check, cut, main

    if not (default_bundle() / "model.onnx").is_file():
        pytest.skip("no default bundle")
    stats = check(cohort, n=1)
    assert len(stats) == 12 and all(c["scored"] + c["refused"] == 1 for c in stats.values())
    assert stats["bottom edge at L3 centre"]["level off"] == 0
    study = load_any(cohort / "studies" / "S00000")
    z0 = float(study.affine[2, 3])
    part = cut(study, z0 + 10.0, z0 + 40.0)
    assert 10.0 <= float(part.affine[2, 3]) - z0 <= 10.0 + study.affine[2, 0]
    assert part.volume.shape[0] * study.affine[2, 0] <= 30.0 + study.affine[2, 0]
    with pytest.raises(SystemExit):
        main(["--cohort", str(cohort / "studies")])


def test_levels_pushed_in_from_the_bottom_edge_go_back(cohort: Path) -> None:
    """A scan ending 4 mm below the centre of L5, with the model's pattern there (L4 16 mm and L5 24 mm high):
    L4 goes back to its body, and L5 (no whole body in the scan) to L4's centre mirrored across the L4/L5 disc;
    true levels on the same cut scan, or on the whole scan, are left alone. A scan ending 6 mm above the centre
    of L5 leaves that point outside: L5 stays, squeezed against L4, and is withdrawn and named partly in the scan."""
    from inference.findings import Vertebra
    from inference.levels import checked_levels, edge_tails

    for row in csv.DictReader((cohort / "truth.csv").open()):
        study = load_any(cohort / row["study"])
        z = {lv: float(row[f"{lv}_z_mm"]) for lv in LEVELS}
        short = z_slab(study, z["L5"] - 4.0, z["T11"] + 60.0)
        true = [(lv, i, z[lv]) for i, lv in enumerate(LEVELS)]
        assert edge_tails(study, true) == [] and edge_tails(short, true) == []
        pushed = dict(z, L4=z["L4"] + 16.0, L5=z["L5"] + 24.0)
        moves = {m.level: m for m in edge_tails(short, [(lv, i, pushed[lv]) for i, lv in enumerate(LEVELS)])}
        assert set(moves) == {"L4", "L5"} and abs(moves["L4"].to_z_mm - z["L4"]) < 4.0, moves
        assert abs(moves["L5"].to_z_mm - z["L5"]) < 6.0, moves
        located = [Vertebra(lv, True, 0, 1.0, 150.0, pushed[lv]) for lv in LEVELS]
        checked, warnings, partial = checked_levels(short, located)
        by = {v.level: v for v in checked}
        assert abs(float(by["L4"].z_mm or 0.0) - z["L4"]) < 4.0 and by["L5"].present, warnings
        assert sum("pushed in" in w for w in warnings) == 2 and partial == []
        shorter = z_slab(study, z["L5"] + 6.0, z["T11"] + 60.0)
        checked, warnings, partial = checked_levels(shorter, located)
        by = {v.level: v for v in checked}
        assert not by["L5"].present and any(w.startswith("L5: withdrawn") for w in warnings), warnings
        assert [p.level for p in partial] == ["L5"]
