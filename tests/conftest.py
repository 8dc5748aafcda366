"""Shared fixtures: tiny synthetic cohorts made by the project's own generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic.cohort import CohortOptions, write_cohort

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "dicom-corpus"


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six studies at a 96 matrix (seconds to make), extras included."""
    out = tmp_path_factory.mktemp("cohort") / "c"
    write_cohort(out, CohortOptions(n=6, seed=11, matrix=96, workers=1))
    return out
