"""The transparent level check (inference.levels): it never moves levels that are right, and it puts an end level
that sits on a disc back on its body."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.synthetic.cohort import CohortOptions, write_cohort
from inference.io import load_any
from inference.levels import check_levels

LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]


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


def _cut(study, lo_mm: float, hi_mm: float):  # type: ignore[no-untyped-def]
    """The part of a study between two patient z values (axis 0 running up)."""
    import dataclasses

    import numpy as np

    z = study.affine[2, 3] + study.affine[2, 0] * np.arange(study.volume.shape[0])
    keep = np.nonzero((z >= lo_mm) & (z <= hi_mm))[0]
    affine = study.affine.copy()
    affine[:3, 3] = (study.affine @ np.array([keep[0], 0, 0, 1.0]))[:3]
    return dataclasses.replace(study, volume=study.volume[keep[0]: keep[-1] + 1], affine=affine)


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
        cut_top = _cut(study, z["L5"] - 60.0, z["T11"] + 3.0)
        (p,) = partial_levels(cut_top, found[1:], names)
        assert (p.level, p.neighbour, p.edge) == ("T11", "T12", "top")
        assert abs(p.shown_mm - (z["T11"] + 3.0 - top_disc)) < 6.0, p
        assert "T11: partly in the scan" in p.warning()
        assert partial_levels(_cut(study, z["L5"] - 60.0, top_disc + 2.0), found[1:], names) == []
        (q,) = partial_levels(_cut(study, z["L5"] - 3.0, z["T11"] + 60.0), found[:-1], names)
        assert (q.level, q.neighbour, q.edge) == ("L5", "L4", "bottom")
        assert abs(q.shown_mm - (low_disc - z["L5"] + 3.0)) < 6.0, q
