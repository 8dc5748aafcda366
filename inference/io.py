"""One entry point for every study format: DICOM (folder, zip, files) or NIfTI (.nii / .nii.gz)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import InputError
from inference.nifti import is_nifti, load_nifti
from inference.study import Study

if TYPE_CHECKING:
    from inference.dicom.limits import Limits


def load_any(source: Path | str | Sequence[Path | str], limits: Limits | None = None) -> Study:
    """Load a study from DICOM or NIfTI; the same refusals either way (``limits``: the DICOM reader's)."""
    from inference.dicom import load_study

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError("not_found", f"no such file or folder: {path.name}")
        if is_nifti(path):
            return load_nifti(path)
        return load_study(path, limits=limits)
    paths = [Path(p) for p in source]
    if len(paths) == 1:
        return load_any(paths[0], limits)
    if any(is_nifti(p) for p in paths):
        raise InputError("bad_usage", "give one NIfTI file at a time")
    return load_study(paths, limits=limits)
