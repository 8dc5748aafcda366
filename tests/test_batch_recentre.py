"""A long scan whose scan-centred crop misses part of the spine: `vfrisk score` re-centres the crop exactly as
`vfrisk predict` does and gives the same result (probability and input hash)."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inference.batch import ScoreOptions, run_score
from inference.bundle import default_bundle
from inference.engine import Engine, crop_sha256
from inference.findings import found_levels
from inference.io import load_any
from inference.labs import Labs
from inference.spec import COUNTED_LEVELS

pytestmark = pytest.mark.skipif(not (default_bundle() / "model.onnx").is_file(), reason="no default bundle")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _long_scan(tiny_cohort: Path, out: Path) -> Path:
    """A synthetic study with 350 mm of empty slices below it, so that the
    scan-centred crop shows only the lower part of the spine, as NIfTI."""
    study = load_any(tiny_cohort / "studies" / "S00001")
    pad = int(350 / study.spacing_mm[0])
    soft = np.full_like(study.volume[:1], -1000.0)
    volume = np.concatenate([np.repeat(soft, pad, axis=0), study.volume])
    affine = study.affine.copy()
    affine[:3, 3] -= affine[:3, 0] * pad
    # canonical (Z, Y, X) to NIfTI (i, j, k) = (X, Y, Z)
    nifti_affine = LPS_TO_RAS @ affine[:, [2, 1, 0, 3]]
    path = out / "long.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.int16), nifti_affine),
             str(path))
    return path


def test_long_scan_is_recentred_by_score_as_by_predict(tiny_cohort: Path, tmp_path: Path) -> None:
    path = _long_scan(tiny_cohort, tmp_path)
    engine = Engine()
    study = load_any(path)
    labs = Labs(45.0, -2.2, 72.0, "F")
    first = engine.run(engine.crop(study), labs)
    result = engine.predict(study, labs).to_json()
    found = [v for v in result["vertebrae"] if v["present"] and v["level"] in COUNTED_LEVELS]
    assert len(found_levels(engine.spec.levels, first)) < len(found), "the scan-centred crop should miss levels"
    assert result["input"]["sha256"] != crop_sha256(engine.crop(study)), "predict should have re-centred"

    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["study", "ntx", "bmd_tscore", "age", "sex"], [path.name, 45, -2.2, 72, "F"]])
    out = tmp_path / "out" / "results.csv"
    run_score(ScoreOptions(archive=tmp_path, manifest=manifest, out=out, workers=1))
    row = next(csv.DictReader(out.open()))
    assert row["status"] == "ok", row["error"]
    assert row["input_sha256"] == result["input"]["sha256"]
    assert abs(float(row["probability"]) - result["probability"]) < 1e-4
