"""``--engine ray`` on a local Ray instance gives the same table as the local engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch_support import read_table, reference_table, shared_archive, without_time

from inference.batch import ScoreOptions, run_score

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def batch_archive(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_archive(tiny_run, tmp_path_factory)


@pytest.mark.slow
def test_ray_engine_gives_the_local_table_and_resumes(batch_archive: Path, scoring_bundle: Path,
                                                      tmp_path: Path) -> None:
    reference, _ = reference_table(batch_archive, scoring_bundle)
    out = tmp_path / "ray.csv"
    opts = ScoreOptions(archive=batch_archive, manifest=batch_archive / "manifest.csv", out=out, engine="ray",
                        workers=2, model=scoring_bundle)
    first = run_score(opts)
    assert without_time(read_table(out)) == without_time(reference)
    assert first["this_run"]["scored"] == len(reference)
    again = run_score(opts)  # resumable the same way: ok rows skipped, error rows tried again
    assert again["this_run"]["skipped_already_ok"] == first["counts"]["ok"]
    assert without_time(read_table(out)) == without_time(reference)
