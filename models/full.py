"""The whole model as one module: in-graph preprocessing, image network, fusion, calibration.

This is what ``vfrisk export`` turns into ONNX. Inputs: ``image`` (N, 1, D, H, W) HU crop in native voxels,
``spacing`` (N, 3) mm, ``labs`` (N, 4) raw [NTX, T-score, age, sex F=1]. Outputs: ``probability`` (N,),
``interval`` (N, 2), and per level (T11..L5) ``level_presence``, ``level_z_mm`` (mm from the crop's first
slice), ``level_hu``, ``level_height_ratio`` (each (N, 7)).
"""

from __future__ import annotations

import torch
from torch import nn

from inference.spec import PreprocessSpec
from models.net import SpineNet, level_findings
from models.preprocess import ImagePreprocess, LabNormalise
from models.risk import RiskHead, image_features

ARCH_VERSION = 2
"""Bump when the network or head changes meaning: a checkpoint of another version is refused at export."""
OUTPUT_NAMES = ("probability", "interval", "level_presence", "level_z_mm", "level_hu", "level_height_ratio")
INPUT_NAMES = ("image", "spacing", "labs")


class VfriskModel(nn.Module):
    """CT crop + labs -> calibrated 6-month probability, interval and per-vertebra findings."""

    def __init__(self, spec: PreprocessSpec, width: int = 24, n_members: int = 16,
                 use_image: bool = True, use_labs: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.pre = ImagePreprocess(spec)
        self.net = SpineNet(n_levels=len(spec.levels), width=width)
        self.labs_norm = LabNormalise(len(spec.labs))
        self.use_image, self.use_labs = use_image, use_labs
        n_feat = (6 if use_image else 0) + (len(spec.labs) if use_labs else 0)
        self.risk = RiskHead(n_feat, n_members=n_members)
        self.z_step_mm = spec.crop_mm[0] / (spec.grid[0] / 2)

    def findings(self, grid_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-level findings from an already preprocessed (grid) image."""
        return level_findings(self.net(grid_image), self.z_step_mm)

    def fuse(self, found: dict[str, torch.Tensor], labs: torch.Tensor) -> torch.Tensor:
        """Risk features: image features and/or normalised labs."""
        parts = []
        if self.use_image:
            parts.append(image_features(found["presence"], found["hu"], found["ratio"]))
        if self.use_labs:
            parts.append(self.labs_norm(labs))
        return torch.cat(parts, dim=1)

    def forward(self, image: torch.Tensor, spacing: torch.Tensor,
                labs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Full path from the native-voxel crop (the ONNX graph)."""
        grid = self.pre(image)
        found = self.findings(grid)
        prob, interval = self.risk(self.fuse(found, labs))
        # the crop's physical z extent follows from its voxel count and spacing
        scale = (image.shape[2] * spacing[:, 0:1]) / self.spec.crop_mm[0]
        return prob, interval, found["presence"], found["z_mm"] * scale, found["hu"], found["ratio"]
