"""The fusion and risk head: features from the per-level findings plus the labs, a bootstrap ensemble of
logistic models, Platt calibration, and the uncertainty interval from the ensemble spread.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.spec import COUNTED_LEVELS, LEVELS, RISK_LEVELS
from inference.thresholds import GENANT_RATIO

__all__ = ["GENANT_RATIO", "N_IMAGE_FEATURES", "RiskHead", "image_features"]
SOFT = 0.015
N_IMAGE_FEATURES = 7
_REF = {"T12": 1.0, "L1": 2.0, "L2": 1.0}
"""Levels (and weights) of the reference density: L1 as opportunistic CT reads it, its neighbours where L1 is
not in view."""


def image_features(presence: torch.Tensor, hu: torch.Tensor, ratio: torch.Tensor,
                   levels: tuple[str, ...] = LEVELS) -> torch.Tensor:
    """Risk features from per-level findings (``levels``: the spec's).

    [reference HU (L1, else T12/L2, else the mean), mean HU, soft grade>=1, >=2, >=3 of the worst level,
    soft count of fractured levels, coverage (share of T11-L5 in view)], each level weighted by its presence.
    """
    idx = {lv: i for i, lv in enumerate(levels)}
    body = [idx[lv] for lv in COUNTED_LEVELS if lv in idx]
    graded = [idx[lv] for lv in COUNTED_LEVELS if lv in idx and lv != "T10"]
    p = presence.clamp(1e-3, 1.0)
    pb, hb = p[:, body], hu[:, body]
    mean_hu = (hb * pb).sum(1, keepdim=True) / pb.sum(1, keepdim=True)
    ref_w = torch.zeros(len(levels), dtype=hu.dtype, device=hu.device)
    for lv, w in _REF.items():
        ref_w[idx[lv]] = w
    rp = p * ref_w * (p > 0.05)
    ref_hu = ((hu * rp).sum(1, keepdim=True) + 1e-3 * mean_hu) / (rp.sum(1, keepdim=True) + 1e-3)
    pg, rg = p[:, graded], ratio[:, graded]
    worst = rg + (1.0 - pg) * 1.0  # an absent level cannot be the worst
    rmin = worst.amin(dim=1, keepdim=True)
    grades = [torch.sigmoid((t - rmin) / SOFT) for t in GENANT_RATIO]
    count = (torch.sigmoid((GENANT_RATIO[0] - rg) / SOFT) * pg).sum(1, keepdim=True)
    cover = p[:, [idx[lv] for lv in RISK_LEVELS]].mean(1, keepdim=True)
    return torch.cat([(ref_hu - 150.0) / 50.0, (mean_hu - 150.0) / 50.0, *grades, count, cover], dim=1)


class RiskHead(nn.Module):
    """B logistic models on standardised features; Platt-calibrated mean logit; interval from the spread."""

    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    platt: torch.Tensor
    width: torch.Tensor
    width_missing: torch.Tensor
    width_base: torch.Tensor

    def __init__(self, n_features: int, n_members: int = 16, z: float = 1.645) -> None:
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.weight = nn.Parameter(torch.zeros(n_members, n_features))
        self.bias = nn.Parameter(torch.zeros(n_members))
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))
        self.register_buffer("width", torch.tensor(1.0))
        self.register_buffer("width_missing", torch.tensor(0.0))
        self.register_buffer("width_base", torch.tensor(0.0))
        self.z = z

    def member_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, B) uncalibrated logits of every member."""
        f = (feats - self.feat_mean) / self.feat_std
        return f @ self.weight.T + self.bias

    def forward(self, feats: torch.Tensor, missing: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the calibrated probability (N,) and the interval (N, 2): the ensemble spread scaled by ``width``,
        plus ``width_base`` logits (the error of the image findings, which the bootstrap does not see), plus
        ``width_missing`` logits per unit of ``missing`` (N,), the share of the risk levels not in view."""
        logits = self.member_logits(feats)
        mu = logits.mean(dim=1)
        sd = logits.std(dim=1) if logits.shape[1] > 1 else torch.zeros_like(mu)
        a, b = self.platt[0], self.platt[1]
        centre = a * mu + b
        half = self.z * self.width * a.abs() * sd + self.width_base
        if missing is not None:
            half = half + self.width_missing * missing
        prob = torch.sigmoid(centre)
        interval = torch.stack([torch.sigmoid(centre - half), torch.sigmoid(centre + half)], dim=1)
        return prob, interval
