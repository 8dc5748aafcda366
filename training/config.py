"""Training configuration: one dataclass, a docstring per field, saved into every run."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from inference.errors import InputError


@dataclass
class TrainConfig:
    """Everything that defines a training run (the run folder keeps a copy as ``config.json``)."""

    seed: int = 0
    """Seed for splits, initialisation, augmentation and the bootstrap."""
    split_seed: int | None = None
    """Seed of the patient split alone (absent: ``seed``'s): runs that differ only in ``seed`` then train on the
    same patients, to tell the split's share of the spread between runs from the weights' and the draws'."""
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Patient-level train / calibration / test fractions."""
    width: int = 24
    """Base channel width of the 3D CNN."""
    epochs: int = 24
    """Epochs of the image network (auxiliary per-vertebra supervision)."""
    batch_size: int = 8
    """Mini-batch size."""
    lr: float = 2e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    z_shift_mm: float = 40.0
    """Largest random shift of the crop along z for most samples."""
    z_far_shift_mm: float = 160.0
    """Largest shift for the far-shifted samples, which push levels out of the crop (teaches presence, so that
    a chest-only or pelvis-only scan is refused instead of scored)."""
    far_shift_prob: float = 0.25
    """Fraction of samples shifted far."""
    cut_prob: float = 0.35
    """Fraction of samples whose field of view is cut at random heights (top, bottom or both)."""
    xy_shift_mm: float = 0.0
    """Largest random in-plane shift (front-back and left-right, mm) of the column within the crop (edges
    replicated): where the crop centres relative to the bodies depends on the anatomy (posterior elements, a
    contrast-filled aorta), and a model must not learn one generator's offset."""
    z_stretch: float = 0.0
    """Largest relative stretch or squeeze of a crop along the spine (0.15: 0.85-1.15x), its level truth moving
    with it: level spacing and body heights differ between generators and between patients."""
    tilt_deg: float = 0.0
    """Largest tilt (degrees, front to back) of the vertebral bodies in a crop (:func:`training.augment.tilt`;
    0: off): real lordosis and kyphosis tilt the bodies against the axial plane, a flat-stacked phantom does not."""
    disc_warp: float = 0.0
    """Largest relative thinning or thickening of the discs between the body centres
    (:func:`training.augment.warp_discs`; 0: off): real discs narrow with degeneration, a phantom's keep one
    height per level."""
    zoom: float = 0.0
    """Largest relative enlargement of a crop's content, and of its reduction as 1 / (1 + zoom), about its centre
    (:func:`training.augment.zoom`; 0: off): spines differ in size between people by more than a level's step."""
    bone_gain: float = 0.0
    """Largest relative gain of bone's HU above 150 HU, and of its reduction as 1 / (1 + bone_gain)
    (:func:`training.augment.bone_contrast`; 0: off): cortical density and thickness, kernel and tube voltage make
    bone brighter or dimmer between scanners and patients; the trabecular HU truth is remapped with the image."""
    hu_scale: float = 0.0
    """Largest relative gain of the whole HU scale about 0 HU, and of its reduction as 1 / (1 + hu_scale)
    (:func:`training.augment.bone_contrast`; 0: off): every contrast between tissues stronger or weaker, so that a
    finder does not depend on one generator's contrasts; the trabecular HU truth is remapped with the image."""
    tissue_offset_hu: float = 0.0
    """Largest shift (HU, either way) of every tissue voxel of a crop (:func:`training.augment.bone_contrast`;
    0: off): scanners' calibration of soft tissue and fat differs by some 10-20 HU."""
    enhance_prob: float = 0.0
    """Fraction of crops given enhanced kidneys and a bright aorta beside the column
    (:func:`training.augment.enhance_organs`; 0: off): family A draws no kidneys and a dim, distant aorta."""
    elastic_mm: float = 0.0
    """Largest SD (mm, in plane; a fifth of it along the spine) of the smooth random deformation of a crop
    (:func:`training.augment.elastic`; 0: off): one phantom's fixed body and process outlines teach a finder
    those outlines."""
    sacrum_bend_deg: float = 0.0
    """Largest turn (degrees; steeper up to this, flatter up to a quarter of it) of everything below the
    lumbosacral disc about the disc (:func:`training.augment.bend_sacrum`; 0: off): family A's sacrum sits at one
    slope, real and family B's sacral slopes span some 20-55 degrees."""
    average_tail: float = 0.0
    """Share of the training steps, at the end, whose network weights are averaged into the weights kept (0: off,
    the last step's weights): an average of the weights along the end of training lies in a flatter part of the
    loss, which generalises better to data from another source and varies less between seeds (stochastic weight
    averaging, Izmailov et al. 2018; SWAD, Cha et al. 2021). The batch-norm statistics are re-estimated after."""
    noise_sd_hu: float = 0.0
    """Largest SD (HU) of Gaussian noise added to a crop (each crop draws its own SD up to this)."""
    blur_prob: float = 0.0
    """Fraction of crops smoothed in plane by a random amount (a softer reconstruction kernel)."""
    members: int = 16
    """Bootstrap members of the risk head (the interval comes from their spread)."""
    interval_level: float = 0.9
    """Nominal coverage of the uncertainty interval."""
    l2: float = 1e-2
    """L2 penalty of the logistic risk members."""
    workers: int = 2
    """Processes that decode studies into the cache."""
    cache_dir: str = ""
    """Decoded-crop cache (default: ``<cohort>/.vfrisk-cache``); keyed by input files and spec hash."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu or cuda."""
    bf16: bool = True
    """bfloat16 autocast for the image network (CPU with bf16 support, or CUDA)."""
    max_studies: int = 0
    """Use only the first N manifest rows (0 = all); for quick runs and tests."""
    bootstrap: int = 1000
    """Bootstrap resamples for the evaluation intervals."""
    mlflow_uri: str = ""
    """MLflow tracking URI (``http://host:5000``, ``file:///path/mlruns``); empty: no tracking, the run folder
    alone is the record. Needs the ``track`` extra."""

    def __post_init__(self) -> None:
        """Refuse a seed numpy cannot take (from a config file or ``vfrisk train --seed``) and a share outside 0-1,
        before any work."""
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if (value is not None or name == "seed") and (not isinstance(value, int) or not 0 <= value < 2**32):
                raise InputError("bad_config", f"{name} must be an integer from 0 to 2**32 - 1, not {value!r}")
        if not 0.0 <= self.average_tail <= 1.0:
            raise InputError("bad_config", f"average_tail must be from 0 to 1, not {self.average_tail!r}")

    @classmethod
    def load(cls, path: Path | None) -> TrainConfig:
        """Read a JSON or TOML config; unknown keys are an error."""
        if path is None:
            return cls()
        try:
            text = path.read_text()
            raw: dict[str, Any] = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise InputError("bad_config", f"cannot read config {path.name}: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError("bad_config", f"unknown config keys: {', '.join(unknown)}")
        if "split" in raw:
            raw["split"] = tuple(raw["split"])
        for f in fields(cls):
            if f.name in raw and not _fits(raw[f.name], str(f.type)):
                raise InputError("bad_config", f"config key {f.name} must be {f.type}, not {raw[f.name]!r}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _fits(value: Any, annotation: str) -> bool:
    """Whether a config value has the type its field is annotated with (an int is a fine float; a bool is no
    number)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation.endswith(" | None"):
        return value is None or _fits(value, annotation.removesuffix(" | None"))
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation.startswith("tuple"):
        return isinstance(value, tuple) and all(_fits(v, "float") for v in value)
    return True
