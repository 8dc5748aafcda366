"""Safety limits and scoring minimums for reading untrusted input (DICOM and NIfTI alike).

One :class:`Limits` object caps what a study may cost: files, bytes on disk, voxels, and the memory it may hold
(:attr:`Limits.max_study_bytes`, spent through one :class:`Budget` per study and checked before each allocation).
:meth:`Limits.from_env` reads the operator's overrides (``VFRISK_MAX_VOXELS``, ``VFRISK_STUDY_BUDGET_MB``,
``VFRISK_MAX_INFLATED_MB``); every entry point (``predict``, ``score``, the web app) starts from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from inference.errors import InputError

MIB = 1024 * 1024
ENV = {"max_voxels": ("VFRISK_MAX_VOXELS", 1), "max_study_bytes": ("VFRISK_STUDY_BUDGET_MB", MIB),
       "max_inflated_bytes": ("VFRISK_MAX_INFLATED_MB", MIB)}
"""Limits an operator may set from the environment: field -> (variable, unit in bytes or 1)."""


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile or absurd input from exhausting time, memory or disk.

    The defaults fit a whole-body CT study with several reconstructions; a batch job may lower them.
    """

    max_files: int = 20_000
    """Files considered in one study (folder walk or zip members)."""
    max_file_bytes: int = 2048 * MIB
    """Size of one file (an enhanced multi-frame CT can be large)."""
    max_total_bytes: int = 16 * 1024 * MIB
    """Sum of file sizes (or uncompressed zip member sizes) in one study."""
    max_zip_ratio: float = 200.0
    """Largest compression ratio accepted for one zip member (DICOM rarely deflates beyond 10x)."""
    max_inflated_bytes: int = 512 * MIB
    """Largest dataset one Deflated Explicit VR Little Endian file may inflate to (the study's sum is also
    charged to :attr:`max_study_bytes`)."""
    max_study_bytes: int = 1536 * MIB
    """Memory budget of one study, summed over all its files: the datasets inflated from deflated files while
    the headers are read, the multi-frame pixel data loaded at once, the decoded float32 volume and, when the
    series must be reordered into the canonical axes, its reordered copy. 512 x 512 x 1,400 float32 fits."""
    max_slices: int = 5_000
    """Slices (frames) in the chosen series."""
    max_voxels: int = 1_000_000_000
    """Voxels of the output volume (4 GB of float32; the memory budget usually binds first)."""
    min_slices: int = 12
    """Fewer slices cannot hold two vertebral bodies and their disc at a usable resolution (12 slices of 5 mm
    make 60 mm)."""
    min_extent_mm: float = 50.0
    """Head-to-foot coverage (whatever the slice plane) needed to hold two whole vertebral bodies and their disc
    (the coverage rule then counts the bodies the model finds)."""
    check_body_part: bool = True
    """Set aside series whose BodyPartExamined names a region without thoracolumbar spine (head, limbs)."""
    max_tilt_deg: float = 30.0
    """Gantry tilt up to this angle is corrected by resampling; larger tilts are refused."""
    workers: int = 0
    """Decoding threads; 0 means one per CPU (at most 8)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Limits:
        """The defaults, overridden by the environment (:data:`ENV`) and then by ``overrides``.

        Raises:
            InputError: ``bad_usage`` when a variable is not a positive number.

        """
        values: dict[str, Any] = {}
        for name, (var, unit) in ENV.items():
            raw = os.environ.get(var, "").strip()
            if not raw:
                continue
            try:
                number = float(raw)
            except ValueError:
                number = float("nan")
            if not number > 0 or number == float("inf"):
                raise InputError("bad_usage", f"{var} must be a positive number, not {raw[:20]!r}")
            values[name] = int(number * unit)
        return replace(cls(), **{**values, **overrides})


def megabytes(nbytes: int) -> str:
    """``nbytes`` as whole MB, for messages."""
    return f"{nbytes / MIB:.0f} MB"


class Budget:
    """The memory one study may hold (:attr:`Limits.max_study_bytes`), spent before each allocation.

    One budget follows a study through its headers, its inflated datasets and its decoded volume, so that the
    study's files are summed whatever their number; a refusal is a ``too_large`` :class:`InputError`.
    """

    def __init__(self, limits: Limits) -> None:
        self.limit = limits.max_study_bytes
        self.used = 0

    @property
    def remaining(self) -> int:
        """Bytes still free."""
        return max(self.limit - self.used, 0)

    def charge(self, nbytes: int, what: str) -> None:
        """Spend ``nbytes`` for ``what`` (a few words), or refuse before anything is allocated."""
        if nbytes > self.remaining:
            held = f" ({megabytes(self.used)} already in use)" if self.used else ""
            raise InputError("too_large", f"{what} would need {megabytes(nbytes)}, beyond the study's memory "
                             f"budget of {megabytes(self.limit)}{held}")
        self.used += nbytes

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` once they are freed."""
        self.used = max(self.used - nbytes, 0)
