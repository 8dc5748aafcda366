"""A training run killed after an epoch goes on from there: the resumed run ends with the same network as an
uninterrupted one (one process, CPU, deterministic algorithms)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.spec import LEVELS, PreprocessSpec
from models.full import VfriskModel
from training import train as T
from training.config import TrainConfig
from training.data import Row


def _splits() -> dict[str, T.Split]:
    gen = torch.Generator().manual_seed(0)
    rows = [Row(f"s{i}", (40.0, -1.0, 70.0, 1.0), i % 2, f"p{i}", {}) for i in range(4)]
    images = torch.rand((4, 1, 200, 48, 48), generator=gen).half()
    z = torch.full((4, len(LEVELS)), float("nan"))
    z[:, LEVELS.index("L1")] = 200.0
    seen = torch.ones((4, len(LEVELS)))
    split = T.Split(rows, images, z, seen)
    return {"train": split, "cal": split, "test": split}


def _train(resume: Path, cfg: TrainConfig) -> VfriskModel:
    T.seed_everything(cfg.seed)
    model = VfriskModel(PreprocessSpec(), width=8, n_members=2)
    T.train_image_net(model, _splits(), cfg, torch.device("cpu"), resume=resume)
    return model


def test_a_killed_training_resumes_after_its_last_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(epochs=2, batch_size=2, width=8, members=2, bf16=False, cut_prob=0.5)
    whole = _train(tmp_path / "a.pt", cfg)

    real = T.finding_errors
    calls = {"n": 0}

    def killed_in_epoch_2(*args: object) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed before epoch 2 is saved
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(T, "finding_errors", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b.pt", cfg)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(T, "finding_errors", real)
    resumed = _train(tmp_path / "b.pt", cfg)
    for (name, a), (_, b) in zip(whole.net.state_dict().items(), resumed.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
