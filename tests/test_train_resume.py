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


@pytest.mark.parametrize(("text", "says"), [
    ('z_stretch = "lots"\n', "config key z_stretch must be float, not 'lots'"),
    ("epochs = 2.5\n", "config key epochs must be int"),
    ("bf16 = 1\n", "config key bf16 must be bool"),
    ('split = [0.7, "a", 0.15]\n', "config key split must be"),
    ("z_strech = 0.1\n", "unknown config keys: z_strech"),
])
def test_a_bad_config_value_is_a_one_line_error(tmp_path: Path, text: str, says: str) -> None:
    from inference.errors import InputError

    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        TrainConfig.load(path)
    assert err.value.code == "bad_config" and says in str(err.value)


def test_an_int_is_a_fine_float_in_a_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text("lr = 1\nnoise_sd_hu = 30\nsplit = [0.7, 0.15, 0.15]\n")
    cfg = TrainConfig.load(path)
    assert cfg.lr == 1 and cfg.noise_sd_hu == 30 and cfg.split == (0.7, 0.15, 0.15)
