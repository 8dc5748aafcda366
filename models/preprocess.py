"""Preprocessing that lives inside the model (and so inside the ONNX graph).

The crop arrives in native voxels from :func:`inference.crop.spine_crop`; this module resamples it to the
spec grid (trilinear to twice the grid, then 2x average pooling, which suppresses aliasing of CT noise),
windows HU to [0, 1] and normalises the labs with statistics fitted on the training split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.spec import PreprocessSpec

NTX_REFERENCE = 40.0
"""NTX enters the model as log2(NTX / 40)."""


def lab_features(labs: torch.Tensor) -> torch.Tensor:
    """Raw labs [ntx, tscore, age, sex(F=1)] -> [log2(ntx/40), tscore, (age-70)/10, sex]."""
    ntx = torch.log2(labs[:, 0:1].clamp_min(1e-3) / NTX_REFERENCE)
    return torch.cat([ntx, labs[:, 1:2], (labs[:, 2:3] - 70.0) / 10.0, labs[:, 3:4]], dim=1)


class ImagePreprocess(nn.Module):
    """Crop in native voxels (N, 1, D, H, W) HU -> windowed tensor on the spec grid (N, 1, *grid)."""

    def __init__(self, spec: PreprocessSpec) -> None:
        super().__init__()
        self.grid = tuple(int(g) for g in spec.grid)
        self.lo, self.hi = float(spec.hu_window[0]), float(spec.hu_window[1])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Resample, then window."""
        fine = tuple(2 * g for g in self.grid)
        x = F.interpolate(image, size=fine, mode="trilinear", align_corners=False)
        x = F.avg_pool3d(x, kernel_size=2)
        return ((x - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)


class LabNormalise(nn.Module):
    """Standardise lab features with the training split's mean and SD (buffers saved with the model)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def fit(self, labs: torch.Tensor) -> None:
        """Fit on raw training-split labs."""
        f = lab_features(labs)
        self.mean.copy_(f.mean(0))
        self.std.copy_(f.std(0).clamp_min(1e-3))

    def forward(self, labs: torch.Tensor) -> torch.Tensor:
        """Raw labs -> standardised features."""
        return (lab_features(labs) - self.mean) / self.std
