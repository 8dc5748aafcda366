"""A compressed study scored by `vfrisk score`, which decodes only the slices the spine finder and the crop use,
gives the result `vfrisk predict` gives from the whole decoded volume (probability and input hash)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.synthetic.cohort import write_fixed_study
from inference.batch import ScoreOptions, run_score
from inference.bundle import default_bundle
from inference.dicom import _choose, _scan, region
from inference.dicom.archive import gather
from inference.dicom.limits import Limits
from inference.dicom.series import sorted_frames
from inference.engine import Engine
from inference.io import load_any
from inference.labs import Labs

pytestmark = pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle")


def _region_of(folder: Path) -> region.RegionVolume | None:
    with gather(folder, Limits()) as gathered:
        chosen = _choose(_scan(gathered, Limits()))
        assert chosen.stack is not None
        return region.region_volume(sorted_frames(chosen), chosen.stack)


@pytest.mark.parametrize("syntax", ["j2k", "jpegls"])
def test_compressed_study_scores_as_predict(tmp_path: Path, syntax: str) -> None:
    """500 slices of 1 mm: the 400 mm crop leaves slices the batch never decodes."""
    study_dir = write_fixed_study(tmp_path / "archive" / "s", 5, 1, matrix=96, n_slices=500, syntax=syntax)
    assert _region_of(study_dir) is not None  # the partial-decode path, not the whole volume
    labs = Labs(45.0, -2.2, 72.0, "F")
    result = Engine().predict(load_any(study_dir), labs).to_json()
    manifest = tmp_path / "archive" / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["study", "ntx", "bmd_tscore", "age", "sex"], ["s", 45, -2.2, 72, "F"]])
    out = tmp_path / "out" / "results.csv"
    run_score(ScoreOptions(archive=tmp_path / "archive", manifest=manifest, out=out, workers=1))
    row = next(csv.DictReader(out.open()))
    assert row["status"] == "ok", row["error"]
    assert row["series_instance_uid"] == result["series_instance_uid"]
    assert row["input_sha256"] == result["input"]["sha256"]
    assert abs(float(row["probability"]) - result["probability"]) < 1e-4
