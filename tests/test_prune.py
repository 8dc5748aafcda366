"""The resumable stages of `make default-model`: a cohort cached once trains again after its DICOM files are gone,
and pruning refuses, deleting nothing, while a study is not cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.synthetic.cohort import CohortOptions, write_cohort
from inference.spec import PreprocessSpec
from training.data import build_cache, read_index, read_manifest, read_truth
from training.prune import prune
from training.run import cache_run


def test_prune_deletes_only_cached_studies_and_the_cache_still_serves_them(tmp_path: Path) -> None:
    cohort = tmp_path / "c"
    write_cohort(cohort, CohortOptions(n=3, seed=11, matrix=64, workers=1, extras=False, fov="mixed"))
    with pytest.raises(SystemExit, match="not cached"):
        prune(cohort)
    assert all((cohort / r["study"]).exists() for r in read_manifest(cohort))

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"workers": 1}))
    report = cache_run(cohort, cfg)["headline"]
    assert report["cached"] + report["refused_by_reader"] == 3
    before = build_cache(cohort, read_manifest(cohort), read_truth(cohort), PreprocessSpec(),
                         cohort / ".vfrisk-cache", 1)

    assert prune(cohort) == 3
    assert not any((cohort / r["study"]).exists() for r in read_manifest(cohort))
    after = build_cache(cohort, read_manifest(cohort), read_truth(cohort), PreprocessSpec(),
                        cohort / ".vfrisk-cache", 1)
    assert after == before  # every study comes back from the cache, nothing is decoded again
    assert len(read_index(cohort / ".vfrisk-cache")[PreprocessSpec().sha256()]) == 3
