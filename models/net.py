"""The image network: a small 3D CNN that collapses the axial plane and reads the spine as a z-profile.

Per z position (4 mm) it predicts, for every level, a localisation logit, plus the trabecular HU and the
height ratio of the vertebra there. A level's findings are the softmax-over-z weighted averages, so the
per-vertebra outputs are both the explanation a radiologist sees and the features the risk head uses.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn


def _conv(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Module:
    return Convolution(spatial_dims=3, in_channels=cin, out_channels=cout, strides=stride, kernel_size=3,
                       act="relu", norm="batch")


class ResBlock1d(nn.Module):
    """Dilated residual block along z."""

    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.norm = nn.GroupNorm(8, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X + relu(norm(conv(x)))."""
        return x + torch.relu(self.norm(self.conv(x)))


class SpineNet(nn.Module):
    """Windowed crop (N, 1, D, H, W) -> per-level logits over z, HU and height-ratio profiles."""

    def __init__(self, n_levels: int = 7, width: int = 24) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            _conv(1, w // 2, (1, 2, 2)),
            _conv(w // 2, w, (2, 2, 2)),
            _conv(w, w, (1, 1, 1)),
            _conv(w, w * 3 // 2, (1, 2, 2)),
            _conv(w * 3 // 2, w * 2, (1, 2, 2)),
        )
        ch = w * 4
        self.profile = nn.Sequential(*[ResBlock1d(ch, d) for d in (1, 2, 4, 8, 16, 1)])
        self.level_logits = nn.Conv1d(ch, n_levels, 1)
        self.hu = nn.Conv1d(ch, 1, 1)
        self.ratio = nn.Conv1d(ch, 1, 1)
        self.n_levels = n_levels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``logits`` (N, L, Z'), ``hu`` (N, Z') in HU and ``ratio`` (N, Z')."""
        f = self.encoder(x)
        f = torch.cat([f.mean(dim=(3, 4)), f.amax(dim=(3, 4))], dim=1)
        f = self.profile(f)
        hu = self.hu(f)[:, 0] * 50.0 + 150.0
        ratio = 0.95 + 0.1 * self.ratio(f)[:, 0]  # linear: no saturating dead zone for rare fractured levels
        return {"logits": self.level_logits(f), "hu": hu, "ratio": ratio}


def level_findings(out: dict[str, torch.Tensor], z_step_mm: float) -> dict[str, torch.Tensor]:
    """Pool the z-profiles into per-level findings: presence, z (mm from crop start), HU, height ratio."""
    logits = out["logits"]
    w = torch.softmax(logits, dim=2)
    n_z = logits.shape[2]
    pos = (torch.arange(n_z, dtype=logits.dtype, device=logits.device) + 0.5) * z_step_mm
    return {
        "presence": torch.sigmoid(logits.amax(dim=2)),
        "z_mm": (w * pos).sum(dim=2),
        "hu": (w * out["hu"][:, None, :]).sum(dim=2),
        "ratio": (w * out["ratio"][:, None, :]).sum(dim=2),
    }
