"""The fusion and risk head: features from the per-level findings plus the labs, a bootstrap ensemble of
logistic models, Platt calibration, and the uncertainty interval from the ensemble spread.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.thresholds import GENANT_RATIO

__all__ = ["GENANT_RATIO", "RiskHead", "image_features"]
SOFT = 0.015


def image_features(presence: torch.Tensor, hu: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Risk features from per-level findings (levels T11..L5, L1 at index 2).

    [L1 HU, mean HU, soft grade>=1, >=2, >=3 of the worst level, soft count of fractured levels],
    each level weighted by its presence.
    """
    p = presence.clamp(1e-3, 1.0)
    mean_hu = (hu * p).sum(1, keepdim=True) / p.sum(1, keepdim=True)
    worst = ratio + (1.0 - p) * 1.0  # an absent level cannot be the worst
    rmin = worst.amin(dim=1, keepdim=True)
    grades = [torch.sigmoid((t - rmin) / SOFT) for t in GENANT_RATIO]
    count = (torch.sigmoid((GENANT_RATIO[0] - ratio) / SOFT) * p).sum(1, keepdim=True)
    return torch.cat([(hu[:, 2:3] - 150.0) / 50.0, (mean_hu - 150.0) / 50.0, *grades, count], dim=1)


class RiskHead(nn.Module):
    """B logistic models on standardised features; Platt-calibrated mean logit; interval from the spread."""

    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    platt: torch.Tensor
    width: torch.Tensor

    def __init__(self, n_features: int, n_members: int = 16, z: float = 1.645) -> None:
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.weight = nn.Parameter(torch.zeros(n_members, n_features))
        self.bias = nn.Parameter(torch.zeros(n_members))
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))
        self.register_buffer("width", torch.tensor(1.0))
        self.z = z

    def member_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, B) uncalibrated logits of every member."""
        f = (feats - self.feat_mean) / self.feat_std
        return f @ self.weight.T + self.bias

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the calibrated probability (N,) and the interval (N, 2)."""
        logits = self.member_logits(feats)
        mu = logits.mean(dim=1)
        sd = logits.std(dim=1) if logits.shape[1] > 1 else torch.zeros_like(mu)
        a, b = self.platt[0], self.platt[1]
        centre = a * mu + b
        half = self.z * self.width * a.abs() * sd
        prob = torch.sigmoid(centre)
        interval = torch.stack([torch.sigmoid(centre - half), torch.sigmoid(centre + half)], dim=1)
        return prob, interval
