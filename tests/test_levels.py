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
