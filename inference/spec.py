"""The preprocessing spec and the lab catalogue: the single source of truth shared by training and inference.

The spec travels inside the model bundle (ONNX metadata and ``model.json``); the loader refuses a bundle
whose spec version or hash does not match what this code implements.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum

SPEC_VERSION = 3
"""Bump when :func:`inference.crop.spine_crop`, the in-graph preprocessing or the levels change meaning
(2: levels T10-L5, L6 and S1; named by a per-position class head; 3: the crop follows the column slice by slice,
so a curved spine comes out straight)."""


class Lab(StrEnum):
    """Model inputs besides the image, in the order of the ``labs`` tensor."""

    NTX = "ntx_nmol_bce_per_mmol_cr"
    TSCORE = "bmd_tscore"
    AGE = "age"
    SEX = "sex"


@dataclass(frozen=True)
class LabSpec:
    """One model input: unit, valid range (outside it is an error, never a clip) and description."""

    name: str
    unit: str
    low: float
    high: float
    description: str
    label: str = ""
    """The short name shown to users and in messages."""


LAB_CATALOGUE: tuple[LabSpec, ...] = (
    LabSpec(Lab.NTX, "nmol BCE/mmol creatinine", 2.0, 400.0, "urine N-telopeptide of type I collagen", "urine NTX"),
    LabSpec(Lab.TSCORE, "SD", -6.0, 4.0, "lowest DXA T-score (lumbar spine, femoral neck or total hip)",
            "DXA T-score"),
    LabSpec(Lab.AGE, "years", 18.0, 110.0, "age at the CT", "age"),
    LabSpec(Lab.SEX, "F=1, M=0", 0.0, 1.0, "sex (F or M)", "sex"),
)
"""The one lab catalogue: the encoder below, the validation (:mod:`inference.labs`), the model card and the UI
read it."""
SEXES = ("F", "M")
"""The values of the ``sex`` input; F is encoded 1, M 0."""


def encode_labs(values: Mapping[str, object], order: tuple[str, ...] | None = None) -> list[float]:
    """The model's raw ``labs`` vector from lab values keyed by catalogue name, in ``order`` (a bundle spec's
    ``labs``; default the catalogue's): numbers as they are, sex F -> 1.0, M -> 0.0. The graph normalises them."""
    out = []
    for name in order or tuple(spec.name for spec in LAB_CATALOGUE):
        value = values[name]
        if name == Lab.SEX:
            if value not in SEXES:
                raise ValueError(f"sex must be F or M, got {value!r}")
            out.append(1.0 if value == "F" else 0.0)
        else:
            out.append(float(value))  # type: ignore[arg-type]
    return out
LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")
"""Vertebral levels the model finds and names, inferior-most last: T10-L5, an L6 where the spine has six lumbar
vertebrae, and S1 (the first sacral segment: an anchor of the numbering, reported without findings)."""
COUNTED_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6")
"""The vertebral bodies the coverage rule counts and the findings describe (S1 only anchors the names)."""
RISK_LEVELS: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
"""The levels whose fractures and density the risk model was built on; coverage is the share of them seen."""
OTHER = "other"
"""Name class of a vertebral body that is none of :data:`LEVELS` (T9 and above, S2 and below)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How a HU volume becomes the model's input (crop here in numpy, the rest inside the ONNX graph)."""

    version: int = SPEC_VERSION
    crop_mm: tuple[float, float, float] = (400.0, 120.0, 120.0)
    """Physical extent (Z, Y, X) of the spine-centred crop cut by :func:`inference.crop.spine_crop`."""
    grid: tuple[int, int, int] = (200, 48, 48)
    """Voxel grid the graph resamples the crop to (2.0 x 2.5 x 2.5 mm)."""
    hu_window: tuple[float, float] = (-200.0, 1300.0)
    """HU window applied in the graph before scaling to [0, 1]."""
    pad_hu: float = -1000.0
    """Value of crop voxels that fall outside the scanned volume."""
    bone_hu: float = 150.0
    """Threshold of the bone projection that centres the crop on the spine."""
    smooth_mm: float = 30.0
    """Half-size of the box that smooths the bone projection (large enough that the vertebral column, not a
    contrast-filled aorta, gives the peak)."""
    search_mm: float = 60.0
    """Half-width (mm, left-right) of the region around the body centre where the spine is sought."""
    track_step_mm: float = 20.0
    """Spacing (mm along z) of the column estimates the crop follows (0: one column for the whole scan)."""
    track_reach_mm: float = 70.0
    """How far (mm, in-plane) the column may stray from the whole-scan column (a lordosis of real spines moves
    the bodies up to about 100 mm front to back between T10 and S1)."""
    track_slope: float = 1.0
    """Steepest in-plane change of the column (mm per mm along z)."""
    labs: tuple[str, ...] = field(default_factory=lambda: tuple(lab.name for lab in LAB_CATALOGUE))
    levels: tuple[str, ...] = LEVELS

    @property
    def name_classes(self) -> tuple[str, ...]:
        """Classes of the per-position name head: the levels, another vertebra, no body centre."""
        return (*self.levels, OTHER, "none")

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return asdict(self)

    def sha256(self) -> str:
        """Stable hash of the spec (what the bundle loader compares)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> PreprocessSpec:
        """Rebuild from :meth:`to_dict` output (lists become tuples)."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)  # type: ignore[arg-type]


def lab_spec(name: str) -> LabSpec:
    """Catalogue entry by name."""
    for spec in LAB_CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(name)
