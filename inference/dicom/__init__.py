"""DICOM ingestion: the only way vfrisk reads a study.

``load_study`` turns a folder, a zip or a list of files into a :class:`~inference.study.Study` (float32 HU
in the canonical orientation), refusing with an :class:`~inference.errors.InputError` whatever it cannot
read exactly.
``inspect_study`` reports every series found, the one chosen and why the others were set aside, without
decoding pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.crop import Crop, crop_volume, spine_crop
from inference.dicom import geometry, pixels, region
from inference.dicom.archive import Gathered, Source, gather
from inference.dicom.contrast import contrast_tags
from inference.dicom.limits import Limits
from inference.dicom.parse import Frame, ParsedFile, read_deferred, read_file
from inference.dicom.patient import patient_age, patient_sex
from inference.dicom.series import Series, choose, evaluate, group_series, report, sorted_frames
from inference.errors import InputError
from inference.spec import PreprocessSpec
from inference.study import SeriesFacts, Study

__all__ = ["Limits", "inspect_study", "load_crop", "load_study"]


@dataclass
class Scan:
    """Everything learnt from the headers of one input."""

    gathered: Gathered
    parsed: list[ParsedFile]
    series: list[Series]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """File counts for the report."""
        unreadable = [self.gathered.names[p.path] for p in self.parsed if p.problem.startswith("unreadable")]
        return {
            "files": len(self.parsed),
            "dicom": sum(1 for p in self.parsed if p.ds is not None),
            "non_dicom_skipped": sum(1 for p in self.parsed if p.problem == "not_dicom"),
            "unreadable": len(unreadable),
            "unreadable_files": unreadable[:20],
            "other_entries_skipped": self.gathered.skipped,
        }


def _scan(gathered: Gathered, limits: Limits) -> Scan:
    parsed = [read_file(path, limits, gathered.budget) for path in gathered.files]
    series = group_series(parsed)
    for s in series:
        evaluate(s, limits)
    return Scan(gathered, parsed, series)


def _refuse_empty(scan: Scan) -> None:
    """Raise the right reason when the input holds no DICOM object at all."""
    counts = scan.counts()
    if counts["dicom"]:
        return
    if counts["unreadable"]:
        raise InputError(
            "unreadable",
            f"{counts['unreadable']} DICOM file(s) could not be read and no other DICOM was found",
        )
    raise InputError("not_dicom", f"no DICOM file found ({counts['files']} file(s) looked at)")


def _read_headers(gathered: Gathered, limits: Limits) -> tuple[Scan, Series, list[Frame]]:
    """Parse every header, choose the scorable series and sort its frames (the ``read`` stage)."""
    scan = _scan(gathered, limits)
    chosen = _choose(scan)
    return scan, chosen, sorted_frames(chosen)


def _choose(scan: Scan) -> Series:
    _refuse_empty(scan)
    return choose(scan.series)


def _study_warnings(scan: Scan, chosen: Series) -> list[str]:
    out = []
    stack = chosen.stack
    assert stack is not None
    if stack.tilted:
        out.append(
            f"gantry tilt of {stack.tilt_deg:.1f} degrees corrected by resampling each slice "
            f"(spacing along the slice normal {stack.slice_spacing:.3f} mm)"
        )
    if not chosen.uid:
        out.append("the series has no SeriesInstanceUID")
    if stack.plane == "oblique":
        out.append("oblique slices: the canonical axes follow the nearest patient axes (see the affine)")
    studies = {str(s.ds.get("StudyInstanceUID", "")) for s in scan.series}
    if len(studies) > 1:
        out.append(f"the input holds {len(studies)} studies; one series was chosen from them")
    return out


def _facts(scan: Scan, chosen: Series, affine: np.ndarray) -> dict[str, Any]:
    """The :class:`~inference.study.SeriesFacts` fields of the chosen series with its canonical ``affine``."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    age, age_warning = patient_age(chosen.ds)
    warnings = _study_warnings(scan, chosen) + ([age_warning] if age_warning else [])
    assert chosen.stack is not None
    return {
        "spacing_mm": (float(spacing[0]), float(spacing[1]), float(spacing[2])),
        "affine": affine,
        "study_instance_uid": str(chosen.ds.get("StudyInstanceUID", "")),
        "series_instance_uid": chosen.uid,
        "orientation": chosen.stack.plane,
        "n_source_slices": len(chosen.frames),
        "age": age,
        "sex": patient_sex(chosen.ds),
        "source_format": "dicom",
        "contrast_tags": contrast_tags(chosen.ds),
        "warnings": tuple(warnings),
    }


def _decode(gathered: Gathered, chosen: Series, frames: list[Frame], limits: Limits) -> np.ndarray:
    """The chosen series' HU volume, charged to the study's budget (twice when it must be reordered)."""
    assert chosen.stack is not None
    perm, flips = geometry.canonical_axes(chosen.stack.affine())
    copies = 1 if perm == (0, 1, 2) and not any(flips) else 2
    return pixels.decode_volume(frames, limits, gathered.budget, copies)


def _assemble(scan: Scan, chosen: Series, volume: np.ndarray) -> Study:
    stack = chosen.stack
    assert stack is not None
    if stack.tilted:
        geometry.correct_tilt(volume, stack)
    canon, affine = geometry.to_canonical(volume, stack.affine())
    for ds in {id(f.ds): f.ds for f in chosen.frames}.values():  # kept for the reports: no file needed later
        read_deferred(ds)
    return Study(volume=canon, source_frames=tuple(chosen.frames), **_facts(scan, chosen, affine))


def load_study(source: Source | Path, *, limits: Limits | None = None,
               timings: dict[str, float] | None = None) -> Study:
    """Read the scorable CT series of a study as a canonical float32 HU volume.

    Args:
        source: a folder (searched recursively), a zip file, a DICOM file, or a list of files/folders/zips.
        limits: safety caps and scoring minimums; defaults to :meth:`Limits.from_env`. The study's memory
            budget (``limits.max_study_bytes``) is spent on its inflated datasets and its decoded volume, summed
            over all its files, and checked before each allocation.
        timings: when given, receives the seconds spent reading (finding files, parsing headers, choosing the
            series: ``read``), decoding pixel data to HU (``decode``) and placing it in the canonical
            orientation (``orient``).

    Returns:
        The :class:`~inference.study.Study` of the chosen series.

    Raises:
        InputError: with a stable ``code`` for every refusal (see ``inference.dicom.series``).

    """
    limits = limits or Limits.from_env()
    t0 = time.perf_counter()
    with gather(source, limits) as gathered:
        scan, chosen, frames = _read_headers(gathered, limits)
        t1 = time.perf_counter()
        volume = _decode(gathered, chosen, frames, limits)
        t2 = time.perf_counter()
        study = _assemble(scan, chosen, volume)
    if timings is not None:
        timings.update(read=t1 - t0, decode=t2 - t1, orient=time.perf_counter() - t2)
    return study


def load_crop(source: Source | Path, spec: PreprocessSpec, *, z_centre_index: float | None = None,
              limits: Limits | None = None, timings: dict[str, float] | None = None) -> tuple[SeriesFacts, Crop]:
    """The model's crop of a study, decoding only what the crop needs when the series allows it.

    The crop and the facts are exactly those of ``spine_crop(load_study(source), spec, z_centre_index)`` and the
    refusals are the same, but for a compressed slice the crop does not use (never decoded, so a corrupt one goes
    unnoticed); for an axial series only the slices :func:`~inference.crop.spine_center` samples and the crop's
    own slices are decoded (uncompressed: only the crop's rows are read) and only the crop's rows and columns
    converted to HU (:mod:`inference.dicom.region`).

    Args:
        source: as for :func:`load_study`.
        spec: the bundle's preprocessing spec (crop extent, bone threshold).
        z_centre_index: centre the crop on this canonical slice instead of the middle of the scan.
        limits: as for :func:`load_study`.
        timings: when given, receives ``read`` (as in :func:`load_study`) and ``crop`` (decoding what the crop
            needs, finding the spine, cutting the crop).

    """
    limits = limits or Limits.from_env()
    t0 = time.perf_counter()
    with gather(source, limits) as gathered:
        scan, chosen, frames = _read_headers(gathered, limits)
        t1 = time.perf_counter()
        assert chosen.stack is not None
        lazy = region.region_volume(frames, chosen.stack)
        result: tuple[SeriesFacts, Crop] | None = None
        if lazy is not None:
            facts = SeriesFacts(**_facts(scan, chosen, geometry.canonical_affine(chosen.stack.affine(),
                                                                                 lazy.shape)))
            try:
                result = facts, crop_volume(lazy, facts.spacing_mm, spec, z_centre_index)
            except region.NotNativeError:
                result = None
        if result is None:
            study = _assemble(scan, chosen, _decode(gathered, chosen, frames, limits))
            result = study, spine_crop(study, spec, z_centre_index)
    if timings is not None:
        timings.update(read=t1 - t0, crop=time.perf_counter() - t1)
    return result


def inspect_study(source: Source | Path, *, limits: Limits | None = None) -> dict[str, Any]:
    """Report every series found, the one chosen with its geometry, and why the others were set aside.

    Pixels are not decoded. Raises :class:`InputError` when nothing is scorable.
    """
    limits = limits or Limits.from_env()
    with gather(source, limits) as gathered:
        scan = _scan(gathered, limits)
        chosen = _choose(scan)
    return {
        "files": scan.counts(),
        "series": [report(s, s is chosen) for s in scan.series],
        "chosen": _chosen_report(scan, chosen),
        "warnings": _study_warnings(scan, chosen),
    }


def _chosen_report(scan: Scan, chosen: Series) -> dict[str, Any]:
    stack = chosen.stack
    assert stack is not None
    perm, _ = geometry.canonical_axes(stack.affine())
    shape = (len(chosen.frames), chosen.frames[0].rows, chosen.frames[0].columns)
    spacing = (stack.slice_spacing, *stack.pixel_spacing)
    return {
        "study_instance_uid": str(chosen.ds.get("StudyInstanceUID", "")),
        "series_instance_uid": chosen.uid,
        "orientation": stack.plane,
        "shape_zyx": [shape[a] for a in perm],
        "spacing_mm_zyx": [round(spacing[a], 4) for a in perm],
        "tilt_deg": round(stack.tilt_deg, 2),
        "tilt_corrected": stack.tilted,
        "extent_mm": round(stack.extent_mm, 2),
    }
