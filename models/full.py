"""The whole model as one module: in-graph preprocessing, image network, fusion, calibration.

This is what ``vfrisk export`` turns into ONNX. Inputs: ``image`` (N, 1, D, H, W) HU crop in native voxels,
``spacing`` (N, 3) mm, ``labs`` (N, 4) raw [NTX, T-score, age, sex F=1]. Outputs: ``probability`` (N,),
``interval`` (N, 2); per level of the spec (T10-L5, L6, S1) the soft pooled ``level_presence``, ``level_z_mm``
(mm from the crop's first slice), ``level_hu``, ``level_height_ratio`` (each (N, L)); and the z-profiles the
engine finds and names bodies on: ``name_probs`` (N, C, Z') over the spec's name classes, ``hu_profile`` and
``ratio_profile`` (N, Z'), position i at (i + 0.5) * ``profile_step_mm`` from the crop's first slice.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.spec import RISK_LEVELS, PreprocessSpec
from models.net import SpineNet, level_findings
from models.preprocess import ImagePreprocess, LabNormalise
from models.risk import N_IMAGE_FEATURES, RiskHead, image_features

ARCH_VERSION = 3
"""Bump when the network or head changes meaning: a checkpoint of another version is refused at export."""
OUTPUT_NAMES = ("probability", "interval", "level_presence", "level_z_mm", "level_hu", "level_height_ratio",
                "name_probs", "hu_profile", "ratio_profile", "profile_step_mm")
INPUT_NAMES = ("image", "spacing", "labs")


class VfriskModel(nn.Module):
    """CT crop + labs -> calibrated 6-month probability, interval and per-vertebra findings."""

    name_temperature: torch.Tensor

    def __init__(self, spec: PreprocessSpec, width: int = 24, n_members: int = 16,
                 use_image: bool = True, use_labs: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.pre = ImagePreprocess(spec)
        self.net = SpineNet(n_classes=len(spec.name_classes), width=width)
        self.labs_norm = LabNormalise(len(spec.labs))
        self.use_image, self.use_labs = use_image, use_labs
        n_feat = (N_IMAGE_FEATURES if use_image else 0) + (len(spec.labs) if use_labs else 0)
        self.risk = RiskHead(n_feat, n_members=n_members)
        self.z_step_mm = spec.crop_mm[0] / (spec.grid[0] / 2)
        self.register_buffer("name_temperature", torch.tensor(1.0))

    def findings(self, grid_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-level findings from an already preprocessed (grid) image."""
        return level_findings(self.net(grid_image), self.z_step_mm, len(self.spec.levels), self.name_temperature)

    def fuse(self, found: dict[str, torch.Tensor], labs: torch.Tensor) -> torch.Tensor:
        """Risk features: image features and/or normalised labs."""
        parts = []
        if self.use_image:
            parts.append(image_features(found["presence"], found["hu"], found["ratio"], self.spec.levels))
        if self.use_labs:
            parts.append(self.labs_norm(labs))
        return torch.cat(parts, dim=1)

    def forward(self, image: torch.Tensor, spacing: torch.Tensor,
                labs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Full path from the native-voxel crop (the ONNX graph)."""
        grid = self.pre(image)
        found = self.findings(grid)
        prob, interval = self.risk(self.fuse(found, labs), self.missing(found))
        # the crop's physical z extent follows from its voxel count and spacing
        scale = (image.shape[2] * spacing[:, 0:1]) / self.spec.crop_mm[0]
        return (prob, interval, found["presence"], found["z_mm"] * scale, found["hu"], found["ratio"],
                found["probs"], found["hu_profile"], found["ratio_profile"], self.z_step_mm * scale[:, 0])

    def missing(self, found: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Share of the risk levels not in view (N,), which widens the interval; None without the image."""
        if not self.use_image:
            return None
        idx = [self.spec.levels.index(lv) for lv in RISK_LEVELS]
        return 1.0 - found["presence"][:, idx].clamp(0.0, 1.0).mean(dim=1)
