"""Shared fixtures: tiny synthetic cohorts made by the project's own generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic.cohort import CohortOptions, write_cohort

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "dicom-corpus"
from ci_skips import pytest_runtest_makereport  # noqa: E402, F401  (under CI=true, an environment skip fails)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six studies at a 96 matrix (seconds to make), extras included."""
    out = tmp_path_factory.mktemp("cohort") / "c"
    write_cohort(out, CohortOptions(n=6, seed=11, matrix=96, workers=1))
    return out


@pytest.fixture(scope="session")
def tiny_chest_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three studies of family A's ``--lungs`` variant (what the default model is trained on: a chest has lungs)."""
    out = tmp_path_factory.mktemp("cohort") / "lungs"
    write_cohort(out, CohortOptions(n=3, seed=11, matrix=96, workers=1, lungs=True))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny but real training run (1 epoch on 24 studies): exercises the whole pipeline, not quality."""
    import json

    from training.run import train_run

    root = tmp_path_factory.mktemp("run")
    cohort = root / "cohort"
    write_cohort(cohort, CohortOptions(n=24, seed=21, matrix=96, workers=2, extras=False))
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 1, "members": 3, "bootstrap": 20, "workers": 2,
                               "split": [0.5, 0.25, 0.25]}))
    train_run(cohort, root / "run", cfg)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path) -> Path:
    """The tiny run exported to a bundle (ONNX checked against PyTorch on real studies)."""
    from training.export import export_bundle

    out = tiny_run.parent / "bundle"
    export_bundle(tiny_run, out)
    return out


@pytest.fixture(scope="session")
def scoring_bundle() -> Path:
    """The bundled default model, for tests that need the levels of a trained model (the one-epoch tiny bundle
    places levels at random, and the level check withdraws such crowded levels, refusing the scan)."""
    from inference.bundle import default_bundle

    if not (default_bundle() / "model.onnx").is_file():
        pytest.skip("no default bundle")
    return default_bundle()
