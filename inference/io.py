"""One entry point for every study format: DICOM (folder, zip, files) or NIfTI (.nii / .nii.gz)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import InputError
from inference.nifti import is_nifti, load_nifti
from inference.study import SeriesFacts, Study

if TYPE_CHECKING:
    from inference.crop import Crop
    from inference.dicom.limits import Limits
    from inference.spec import PreprocessSpec


def load_any(source: Path | str | Sequence[Path | str], limits: Limits | None = None) -> Study:
    """Load a study from DICOM or NIfTI; the same refusals and the same ``limits`` either way (default:
    :meth:`~inference.dicom.limits.Limits.from_env`)."""
    from inference.dicom import load_study

    path = _paths(source)
    if isinstance(path, Path) and is_nifti(path):
        return load_nifti(path, limits)
    return load_study(path, limits=limits)


def _paths(source: Path | str | Sequence[Path | str]) -> Path | list[Path]:
    """One existing path, or a list of several; the same refusals as :func:`load_any`."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError("not_found", f"no such file or folder: {path.name}")
        return path
    paths = [Path(p) for p in source]
    if len(paths) == 1:
        return _paths(paths[0])
    if any(is_nifti(p) for p in paths):
        raise InputError("bad_usage", "give one NIfTI file at a time")
    return paths


def load_crop_any(source: Path | str | Sequence[Path | str], spec: PreprocessSpec, *,
                  z_centre_index: float | None = None, limits: Limits | None = None,
                  timings: dict[str, float] | None = None) -> tuple[SeriesFacts, Crop]:
    """The model's crop of a DICOM or NIfTI study (:func:`inference.dicom.load_crop`): the same crop and
    refusals as :func:`load_any` followed by :func:`inference.crop.spine_crop`."""
    from inference.crop import spine_crop
    from inference.dicom import load_crop

    path = _paths(source)
    if isinstance(path, Path) and is_nifti(path):
        t0 = time.perf_counter()
        study = load_nifti(path, limits)
        t1 = time.perf_counter()
        crop = spine_crop(study, spec, z_centre_index)
        if timings is not None:
            timings.update(read=t1 - t0, crop=time.perf_counter() - t1)
        return study, crop
    return load_crop(path, spec, z_centre_index=z_centre_index, limits=limits, timings=timings)
