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


@pytest.mark.parametrize("tail", [0.0, 0.75])
def test_a_killed_training_resumes_after_its_last_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tail: float) -> None:
    """With weight averaging too: the mean so far travels in the saved state."""
    cfg = TrainConfig(epochs=2, batch_size=2, width=8, members=2, bf16=False, cut_prob=0.5, average_tail=tail)
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


def test_the_tail_average_is_the_mean_of_the_weights_after_each_averaged_step() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    tail = T.TailAverage(net, start=2)
    seen = []
    for step in range(1, 5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(float(step))
        if step >= 2:
            seen.append([p.detach().clone() for p in net.parameters()])
        tail.update(net, step)
    assert tail.count == 3
    assert tail.apply(net)
    for p, *snaps in zip(net.parameters(), *seen, strict=True):
        assert torch.allclose(p, torch.stack(snaps).mean(0))
    assert not T.TailAverage(net, start=None).apply(net)  # off: the network is left as it is


def test_a_training_with_averaging_keeps_the_average_not_the_last_weights(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=2, width=8, members=2, bf16=False, cut_prob=0.5)
    last = _train(tmp_path / "a.pt", cfg)
    averaged = _train(tmp_path / "b.pt", TrainConfig(**{**cfg.to_dict(), "average_tail": 1.0}))
    diff = [not torch.equal(a, b) for a, b in zip(last.net.parameters(), averaged.net.parameters(), strict=True)]
    assert any(diff)


@pytest.mark.parametrize("tail", [-0.1, 1.5])
def test_an_average_share_outside_0_1_is_refused(tail: float) -> None:
    from inference.errors import InputError

    with pytest.raises(InputError, match="average_tail must be from 0 to 1"):
        TrainConfig(average_tail=tail)
