"""What the generative model allows: AUROC and Brier of ideal predictors on large draws of synthetic patients.

``python -m training.ceiling [--n 100000] [--seed 5]`` draws patients from ``data.synthetic.model`` (no images),
fits logistic models on the *true* image findings (L1 HU, worst prevalent grade, further fractures), on the labs
(log2 NTX, T-score, age, sex) and on both, on one half, and scores them on the other half next to the true
probability. It says how large a margin over the image-only and labs-only baselines a perfect fused model could
show, and so how many test studies a bootstrap interval needs to resolve it.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from data.synthetic.model import Patient, draw_patient
from training.metrics import auroc


def _image(p: Patient) -> list[float]:
    grades = sorted((v.grade for v in p.vertebrae if v.grade > 0), reverse=True)
    worst = grades[0] if grades else 0
    return [p.l1_hu / 35.0, worst == 1, worst == 2, worst == 3, max(len(grades) - 1, 0)]


def _labs(p: Patient) -> list[float]:
    return [math.log2(p.ntx / 40.0), p.tscore, p.age / 10.0, p.sex == "M"]


def _fit(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """Unpenalised logistic regression (intercept last) by L-BFGS."""
    xx = torch.tensor(np.c_[x, np.ones(len(x))], dtype=torch.float64)
    yy = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(xx.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xx @ w, yy)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def ceiling(n: int, seed: int) -> dict[str, tuple[float, float]]:
    """(AUROC, Brier) on the held-out half for each ideal predictor and for the true probability."""
    rng = np.random.default_rng(seed)
    patients = [draw_patient(rng) for _ in range(n)]
    y = np.array([p.fracture_6m for p in patients], dtype=np.float64)
    image = np.array([_image(p) for p in patients], dtype=np.float64)
    labs = np.array([_labs(p) for p in patients], dtype=np.float64)
    half = n // 2
    out = {}
    for name, x in {"image_only": image, "labs_only": labs, "fused": np.c_[image, labs]}.items():
        w = _fit(x[:half], y[:half])
        q = torch.sigmoid(torch.tensor(np.c_[x[half:], np.ones(n - half)]) @ w).numpy()
        out[name] = (auroc(y[half:], q), float(np.mean((q - y[half:]) ** 2)))
    p_true = np.array([p.p_true for p in patients[half:]])
    out["p_true"] = (auroc(y[half:], p_true), float(np.mean((p_true - y[half:]) ** 2)))
    return out


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if args.n < 2000:
        ap.error("--n must be at least 2000 (each half needs events to score)")
    for name, (a, b) in ceiling(args.n, args.seed).items():
        print(f"{name:10s} AUROC {a:.4f}  Brier {b:.5f}")


if __name__ == "__main__":
    main()
