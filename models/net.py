"""The image network: a small 3D CNN that collapses the axial plane and reads the spine as a z-profile.

Per z position (4 mm) it predicts which vertebral body centre lies there (one class per level of the spec,
``other`` for any other vertebra, ``none`` for no body centre: a disc, soft tissue, air beyond the scan), plus
the trabecular HU and the height ratio of the body there. Bodies are found as the peaks of 1 - P(none) (in the
engine, whatever their name) and named by the class probabilities at the peak, so a body is found even when its
name is uncertain. The risk head pools the profiles per level, weighted by the level's probability along z.
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

    def __init__(self, n_classes: int = 12, width: int = 24) -> None:
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
        # receptive field along z about 0.5 m: a body is named from the sacrum or the last rib however far
        self.profile = nn.Sequential(*[ResBlock1d(ch, d) for d in (1, 2, 4, 8, 16, 32, 1)])
        self.name_logits = nn.Conv1d(ch, n_classes, 1)
        self.hu = nn.Conv1d(ch, 1, 1)
        self.ratio = nn.Conv1d(ch, 1, 1)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``logits`` (N, C, Z') name-class logits, ``hu`` (N, Z') in HU and ``ratio`` (N, Z')."""
        f = self.encoder(x)
        f = torch.cat([f.mean(dim=(3, 4)), f.amax(dim=(3, 4))], dim=1)
        f = self.profile(f)
        hu = self.hu(f)[:, 0] * 50.0 + 150.0
        ratio = 0.95 + 0.1 * self.ratio(f)[:, 0]  # linear: no saturating dead zone for rare fractured levels
        return {"logits": self.name_logits(f), "hu": hu, "ratio": ratio}


def level_findings(out: dict[str, torch.Tensor], z_step_mm: float, n_levels: int,
                   temperature: torch.Tensor | float = 1.0) -> dict[str, torch.Tensor]:
    """Pool the z-profiles into soft per-level findings (the risk head's input): presence (the level's highest
    probability along z), z (mm from crop start), HU and height ratio weighted by the level's probability along
    z; plus the profiles themselves (``probs`` (N, C, Z'), ``hu_profile``, ``ratio_profile``).

    P(none) is the network's; the names given a body are its softmax over the body classes at ``temperature``
    (calibrated on the calibration split, so that a name's confidence is its frequency of being right)."""
    logits = out["logits"].float()
    none = torch.softmax(logits, dim=1)[:, -1:]
    named = torch.softmax(logits[:, :-1] / temperature, dim=1) * (1.0 - none)
    probs = torch.cat([named, none], dim=1)
    a = probs[:, :n_levels]
    w = a / a.sum(dim=2, keepdim=True).clamp_min(1e-6)
    n_z = a.shape[2]
    pos = (torch.arange(n_z, dtype=a.dtype, device=a.device) + 0.5) * z_step_mm
    hu, ratio = out["hu"].float(), out["ratio"].float()
    return {
        "presence": a.amax(dim=2),
        "z_mm": (w * pos).sum(dim=2),
        "hu": (w * hu[:, None, :]).sum(dim=2),
        "ratio": (w * ratio[:, None, :]).sum(dim=2),
        "probs": probs, "hu_profile": hu, "ratio_profile": ratio,
    }
