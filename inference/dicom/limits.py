"""Safety limits and scoring minimums for reading untrusted DICOM input."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


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
    """Largest dataset a Deflated Explicit VR Little Endian file may inflate to."""
    max_slices: int = 5_000
    """Slices (frames) in the chosen series."""
    max_voxels: int = 1_000_000_000
    """Voxels of the output volume (4 GB of float32)."""
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
