"""Training on a mixture of cohorts (families A and B): one split over both, patients keyed by cohort, the run
says what it was trained on; the in-plane shift augmentation moves the image and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data.synthetic.cohort import CohortOptions, write_cohort
from data.synthetic.family_b.cohort import Options
from data.synthetic.family_b.cohort import write_cohort as write_b


@pytest.fixture(scope="module")
def two_families(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight family-A and eight family-B studies at a 96 matrix."""
    root = tmp_path_factory.mktemp("mix")
    write_cohort(root / "a", CohortOptions(n=8, seed=31, matrix=96, workers=2, extras=False))
    write_b(root / "b", Options(n=8, seed=32, matrix=96, workers=2, extras=False))
    return root / "a", root / "b"


def test_load_splits_over_two_cohorts(two_families: tuple[Path, Path], tmp_path: Path) -> None:
    from inference.spec import PreprocessSpec
    from training.config import TrainConfig
    from training.train import load_splits

    cfg = TrainConfig(split=(0.5, 0.25, 0.25), workers=2)
    splits = load_splits(list(two_families), cfg, PreprocessSpec())
    rows = [r for s in splits.values() for r in s.rows]
    assert len(rows) == 16
    assert {r.study.split("/", 1)[0] for r in rows} == {"a", "b"}
    assert len({r.patient for r in rows}) == 16  # a's S00000 and b's S00000 are different patients
    for s in splits.values():  # each split's tensors line up with its rows
        assert s.images.shape[0] == len(s.rows) == s.z_mm.shape[0]
    hu = torch.cat([s.truth_levels("hu") for s in splits.values()])
    assert torch.isfinite(hu).any()


def test_train_run_on_a_mixture_describes_it(two_families: tuple[Path, Path], tmp_path: Path) -> None:
    from training.run import train_run

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 1, "members": 2, "bootstrap": 10, "workers": 2,
                               "split": [0.5, 0.25, 0.25], "xy_shift_mm": 10.0}))
    report = train_run(list(two_families), tmp_path / "run", cfg)
    assert report["cohort"] == "a + b"
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    desc = ckpt["cohort"]
    assert [m["name"] for m in desc["mixture"]] == ["a", "b"]
    assert desc["mixture"][1]["synthetic"]["family"] == "b"
    assert desc["description"].startswith("Trained on synthetic phantoms only: 8 synthetic studies of phantom "
                                          "family A") and "family B, data/synthetic/family_b (seed 32)" in desc[
        "description"]
    assert sum(v for k, v in desc["counts"].items() if not k.endswith("_events")) == 16


def test_in_plane_shift_moves_the_image_only() -> None:
    from training.augment import augment

    x = torch.zeros((1, 1, 20, 16, 16))
    x[0, 0, :, 8, 8] = 1.0
    z = torch.tensor([[50.0]])
    seen = torch.tensor([[1.0]])
    moved = set()
    for seed in range(20):
        out, z2, seen2 = augment(x, z, seen, (0, 0, 0.0), torch.Generator().manual_seed(seed), 2.0, 0.0, 3)
        assert torch.equal(z2, z) and torch.equal(seen2, seen)
        assert out.sum() == x.sum()  # the bright line moved whole (no edge reached)
        (r,), (c,) = torch.nonzero(out[0, 0, 0], as_tuple=True)
        assert abs(int(r) - 8) <= 3 and min(abs(int(c) - 8), abs(int(c) - 7)) <= 3  # a flip mirrors column 8 to 7
        moved.add((int(r), int(c)))
    assert len(moved) > 5
