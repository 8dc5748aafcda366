"""The typed objects that flow through inference: the study read from DICOM/NIfTI and the labs.

Canonical orientation (the one every reader produces and every model consumes)
-----------------------------------------------------------------------------
``Study.volume`` is float32 HU with shape ``(Z, Y, X)``:

* axis 0 runs inferior -> superior (+S in DICOM LPS terms),
* axis 1 runs anterior -> posterior (+P),
* axis 2 runs right -> left (+L).

``spacing_mm`` is given in the same (Z, Y, X) order. ``affine`` is the 4x4 matrix that maps a voxel index
``(k, j, i, 1)`` (axis 0, 1, 2) to patient LPS coordinates in mm. An axial, sagittal or coronal
reconstruction of the same anatomy yields the same canonical array.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inference.dicom.parse import Frame


@dataclass(frozen=True)
class ContrastTags:
    """The header's Contrast/Bolus module (DICOM PS3.3 C.7.6.4) as written; every field None when absent or empty.
    What they say about enhancement is :func:`inference.contrast.header_says`."""

    agent: str | None = None
    """ContrastBolusAgent (0018,0010), or the code meaning of ContrastBolusAgentSequence (0018,0012)."""
    route: str | None = None
    """ContrastBolusRoute (0018,1040)."""
    start_time: str | None = None
    """ContrastBolusStartTime (0018,1042), as written (HHMMSS.FFFFFF)."""
    volume_ml: float | None = None
    """ContrastBolusVolume (0018,1041), in ml."""


@dataclass(frozen=True, kw_only=True)
class SeriesFacts:
    """What is known about a scorable series besides its voxels: geometry, identity and header facts."""

    spacing_mm: tuple[float, float, float]
    """Voxel size in mm along (Z, Y, X)."""
    affine: np.ndarray
    """4x4 float64: voxel index (k, j, i, 1) -> LPS mm."""
    study_instance_uid: str
    series_instance_uid: str
    orientation: str = "axial"
    """Acquisition plane of the source series: axial, sagittal, coronal or oblique."""
    n_source_slices: int = 0
    age: int | None = None
    """Patient age in years from the header (PatientAge or birth/study date), if present."""
    sex: str | None = None
    """'F' or 'M' from the header, if present."""
    source_format: str = "dicom"
    contrast_tags: ContrastTags | None = None
    """The header's contrast tags (DICOM); None when there is no header to read (NIfTI)."""
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class Study(SeriesFacts):
    """A scorable CT volume in HU plus the identity and header facts the pipeline needs."""

    volume: np.ndarray
    """float32 HU, shape (Z, Y, X), canonical orientation (see module docstring)."""
    source_frames: tuple[Frame, ...] = field(default=(), compare=False, repr=False)
    """The scored series' frames as the DICOM reader parsed them (headers only: their pixel data was dropped
    once decoded), in the order read, so that the reports reuse the parsed headers instead of reading the files
    again (:func:`interop.source.study_source_series`). Empty for NIfTI and for a study made in memory."""

    def input_sha256(self) -> str:
        """Hash of the canonical HU volume and its spacing: the identity of what the model sees."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.volume, dtype=np.float32).tobytes())
        h.update(np.asarray(self.spacing_mm, dtype=np.float64).tobytes())
        h.update(str(self.volume.shape).encode())
        return h.hexdigest()


def z_slab(study: Study, lo_mm: float, hi_mm: float) -> Study:
    """The part of a canonical study (axis 0 running up along patient z) between two patient z values, as a
    shorter scan would have shown it: same grid, first slice moved. For tests that cut real scans short; raises
    ``ValueError`` when no slice is left."""
    z = study.affine[2, 3] + study.affine[2, 0] * np.arange(study.volume.shape[0])
    keep = np.nonzero((z >= lo_mm) & (z <= hi_mm))[0]
    if keep.size == 0:
        raise ValueError("the slab holds no slice")
    affine = study.affine.copy()
    affine[:3, 3] = (study.affine @ np.array([keep[0], 0, 0, 1.0]))[:3]
    return dataclasses.replace(study, volume=study.volume[keep[0]: keep[-1] + 1], affine=affine)
