"""Group frames into series, check each series, and choose the one to score.

Checks, in this order; the first that fails sets the series aside with its reason code:

1. ``no_image_series``: no pixel data, or a non-image object (SEG, SR, RT, presentation state, secondary
   capture, DICOMDIR).
2. ``localizer_only``: ImageType says LOCALIZER/SCOUT.
3. ``missing_geometry``: a frame without ImagePositionPatient, ImageOrientationPatient or PixelSpacing.
4. ``mixed_orientation`` / ``mixed_geometry``: the frames of one series are not one stack of parallel slices
   of one size (a tri-plane localizer, two stacks under one SeriesInstanceUID).
5. ``not_ct``: the modality is not CT (checked after 4 so a multi-plane localizer is named as such).
6. ``duplicate_positions``, ``missing_slices``, ``uneven_spacing``, ``gantry_tilt``: see geometry.
7. ``too_few_slices``; ``insufficient_coverage`` (head-to-foot extent or BodyPartExamined);
   ``missing_rescale`` (a CT without Rescale Slope/Intercept or Modality LUT); ``too_large``.

Among the series that pass, the chosen one is: ORIGINAL before DERIVED, slices of 3 mm or less before thicker
ones, bone/standard/soft kernels before unknown and lung kernels, then the thinnest, the longest coverage, the
most slices, and the SeriesInstanceUID (so the choice never depends on file order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from inference.dicom import geometry
from inference.dicom.limits import Limits
from inference.dicom.parse import Frame, ParsedFile, _get, _int
from inference.errors import InputError

NON_IMAGE_MODALITIES = {
    "SEG",
    "SR",
    "RTSTRUCT",
    "RTDOSE",
    "RTPLAN",
    "RTRECORD",
    "RTIMAGE",
    "PR",
    "KO",
    "REG",
    "DOC",
}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
NOT_SPINE_PARTS = {
    "HEAD",
    "BRAIN",
    "SKULL",
    "NECK",
    "ORBIT",
    "SINUS",
    "IAC",
    "TMJ",
    "JAW",
    "EXTREMITY",
    "HAND",
    "FOOT",
    "KNEE",
    "ANKLE",
    "WRIST",
    "ELBOW",
    "SHOULDER",
    "ARM",
    "LEG",
    "FOREARM",
    "FINGER",
    "TOE",
}
GOOD_KERNELS = (
    "BONE",
    "STANDARD",
    "STND",
    "STD",
    "SOFT",
    "BODY",
    "B30",
    "B31",
    "B35",
    "B40",
    "B41",
    "BR3",
    "BR4",
    "BR5",
    "BR6",
    "BR3",
    "I30",
    "I31",
    "I40",
    "FC0",
    "FC1",
)
LUNG_KERNELS = ("LUNG", "B70", "B80", "BL5", "BL6", "BR7", "BR8", "I70", "I80", "FC5", "FC8", "YA", "YB")
THIN_MM = 3.0
STAGES = (
    "no_image_series",
    "localizer_only",
    "missing_geometry",
    "mixed_orientation",
    "mixed_geometry",
    "not_ct",
    "duplicate_positions",
    "missing_slices",
    "uneven_spacing",
    "gantry_tilt",
    "too_few_slices",
    "insufficient_coverage",
    "missing_rescale",
    "too_large",
)


@dataclass
class Series:
    """The frames of one series (SeriesInstanceUID), with the verdict of the checks."""

    key: str
    frames: list[Frame]
    ds: Dataset
    """Header of the first file, for series-level attributes."""
    stack: geometry.Stack | None = None
    problem: InputError | None = None

    @property
    def uid(self) -> str:
        """SeriesInstanceUID (may be empty in anonymised data)."""
        return str(_get(self.ds, "SeriesInstanceUID", ""))

    @property
    def modality(self) -> str:
        """Modality, falling back to the SOP class for CT."""
        modality = str(_get(self.ds, "Modality", "")).upper()
        if not modality and str(_get(self.ds, "SOPClassUID", "")) in CT_SOP_CLASSES:
            return "CT"
        return modality

    @property
    def n_files(self) -> int:
        """Files holding this series' frames."""
        return len({f.path for f in self.frames}) if self.frames else 1

    @property
    def stage(self) -> int:
        """How far the series got through the checks (len(STAGES) when it passed)."""
        if self.problem is None:
            return len(STAGES)
        return STAGES.index(self.problem.code) if self.problem.code in STAGES else len(STAGES)


def _image_type(ds: Dataset) -> list[str]:
    value = _get(ds, "ImageType", [])
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).upper() for v in values]


def group_series(parsed: Sequence[ParsedFile]) -> list[Series]:
    """Group readable DICOM objects by SeriesInstanceUID (objects without one by series number and plane).

    A file whose SOPInstanceUID was already seen is a copy of the same image and is read once.
    """
    groups: dict[str, Series] = {}
    seen: set[str] = set()
    for pf in parsed:
        if pf.ds is None:
            continue
        sop = str(_get(pf.ds, "SOPInstanceUID", ""))
        if sop and sop in seen:
            continue  # the same instance twice (a copy next to the original): read it once
        seen.add(sop)
        uid = str(_get(pf.ds, "SeriesInstanceUID", ""))
        key = uid or _fallback_key(pf)
        if key not in groups:
            groups[key] = Series(key=key, frames=[], ds=pf.ds)
        groups[key].frames.extend(pf.frames)
    return sorted(groups.values(), key=lambda s: s.key)


def _fallback_key(pf: ParsedFile) -> str:
    """A grouping key for objects without a SeriesInstanceUID."""
    ds = pf.ds
    assert ds is not None
    orient = pf.frames[0].orientation if pf.frames else None
    plane = tuple(round(v, 2) for v in orient) if orient else None
    study = str(_get(ds, "StudyInstanceUID", ""))
    return f"(no uid) {study} #{_get(ds, 'SeriesNumber', '')} {_get(ds, 'Modality', '')} {plane}"


def _non_image(series: Series) -> str | None:
    """Why the series is not an image to score, if it is not."""
    sop = str(_get(series.ds, "SOPClassUID", ""))
    if not series.frames:
        return "holds no pixel data (a directory, report or other non-image object)"
    if series.modality in NON_IMAGE_MODALITIES:
        return f"is a {series.modality} object, not an image to score"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        return "is a secondary capture (screenshot), not an image to score"
    return None


def _check_plane(frames: Sequence[Frame]) -> None:
    """Refuse frames that miss geometry or do not form one stack of identical parallel slices."""
    if any(f.position is None or f.orientation is None or f.pixel_spacing is None for f in frames):
        raise InputError("missing_geometry", "slice position, orientation or pixel spacing is missing")
    first = frames[0]
    assert first.orientation is not None
    if any(not geometry.same_orientation(f.orientation or (), first.orientation) for f in frames):
        raise InputError("mixed_orientation", "slices in several planes (a localizer?): not one volume")
    if any(
        (f.rows, f.columns, f.pixel_spacing) != (first.rows, first.columns, first.pixel_spacing)
        for f in frames
    ):
        raise InputError("mixed_geometry", "slices of different sizes or pixel spacings: not one volume")


def _has_rescale(frame: Frame) -> bool:
    lut = frame.lut
    return ("RescaleSlope" in lut and "RescaleIntercept" in lut) or "ModalityLUTSequence" in lut


def _check_scope(series: Series, stack: geometry.Stack, limits: Limits) -> None:
    """Refuse a valid stack that is too small, too short, too big or cannot give HU."""
    n = len(series.frames)
    if n < limits.min_slices:
        raise InputError("too_few_slices", f"{n} slice(s): too few to hold two vertebral bodies")
    part = str(_get(series.ds, "BodyPartExamined", "")).upper()
    if limits.check_body_part and part in NOT_SPINE_PARTS:
        raise InputError("insufficient_coverage", f"the series covers the {part.lower()}, not the spine")
    first = series.frames[0]
    extent = stack.craniocaudal_mm(first.rows, first.columns)
    if extent < limits.min_extent_mm:
        raise InputError(
            "insufficient_coverage",
            f"the series covers {extent:.0f} mm head to foot, less than the {limits.min_extent_mm:.0f} mm "
            "needed for the thoracolumbar spine",
        )
    if not all(_has_rescale(f) for f in series.frames):
        raise InputError("missing_rescale", "the CT images carry no Rescale Slope/Intercept: no HU")
    if n > limits.max_slices or n * first.rows * first.columns > limits.max_voxels:
        raise InputError("too_large", f"{n} slices of {first.rows}x{first.columns} exceed the size limit")


def evaluate(series: Series, limits: Limits) -> None:
    """Run the checks on one series, recording its stack geometry and the first problem found."""
    try:
        why = _non_image(series)
        if why:
            raise InputError("no_image_series", f"the series {why}")
        if any(t in ("LOCALIZER", "SCOUT") for t in _image_type(series.ds)):
            raise InputError("localizer_only", "a localizer (scout) image, not a volume")
        _check_plane(series.frames)
        if series.modality != "CT":
            raise InputError("not_ct", f"the series is {series.modality or 'of unknown modality'}, not CT")
        first = series.frames[0]
        series.stack = geometry.build_stack(
            [f.position for f in series.frames],  # type: ignore[misc]
            first.orientation,  # type: ignore[arg-type]
            first.pixel_spacing,  # type: ignore[arg-type]
            limits.max_tilt_deg,
            _float(_get(series.ds, "SliceThickness")),
        )
        _check_scope(series, series.stack, limits)
    except InputError as exc:
        series.problem = exc


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def kernel_rank(ds: Dataset) -> int:
    """0 for bone/standard/soft kernels, 1 unknown, 2 lung/sharp kernels."""
    value = _get(ds, "ConvolutionKernel", "")
    kernel = " ".join(value if not isinstance(value, str) else [value]).upper()
    if any(k in kernel for k in LUNG_KERNELS):
        return 2
    if any(k in kernel for k in GOOD_KERNELS):
        return 0
    return 1


def preference(series: Series) -> tuple[Any, ...]:
    """Sort key of a scorable series: smaller is preferred (see module docstring)."""
    stack = series.stack
    assert stack is not None
    derived = _image_type(series.ds)[:1] == ["DERIVED"]
    return (
        derived,
        stack.slice_spacing > THIN_MM,
        kernel_rank(series.ds),
        round(stack.slice_spacing, 3),
        -stack.extent_mm,
        -len(series.frames),
        series.key,
    )


def choose(series: Sequence[Series]) -> Series:
    """The series to score, or raise the reason of the series that came closest."""
    ok = [s for s in series if s.problem is None]
    if ok:
        return min(ok, key=preference)
    if not series:
        raise InputError("no_image_series", "no DICOM image series was found")
    best = max(series, key=lambda s: (s.stage, len(s.frames)))
    assert best.problem is not None
    others = len(series) - 1
    extra = f" ({others} other series also set aside)" if others else ""
    raise InputError(best.problem.code, f"{best.problem.message}{extra}")


def sorted_frames(series: Series) -> list[Frame]:
    """The series' frames in stack order (along the slice normal)."""
    assert series.stack is not None
    return [series.frames[i] for i in series.stack.order]


def report(series: Series, chosen: bool) -> dict[str, Any]:
    """JSON-able summary of one series for ``inspect``."""
    first = series.frames[0] if series.frames else None
    stack = series.stack
    return {
        "series_instance_uid": series.uid,
        "series_number": _int(series.ds, "SeriesNumber"),
        "modality": series.modality,
        "description": str(_get(series.ds, "SeriesDescription", "")),
        "image_type": _image_type(series.ds),
        "kernel": str(_get(series.ds, "ConvolutionKernel", "")),
        "n_files": series.n_files,
        "n_slices": len(series.frames),
        "rows_columns": [first.rows, first.columns] if first else None,
        "orientation": stack.plane if stack else None,
        "spacing_mm": [round(stack.slice_spacing, 4), *stack.pixel_spacing] if stack else None,
        "extent_mm": round(stack.extent_mm, 2) if stack else None,
        "tilt_deg": round(stack.tilt_deg, 2) if stack else None,
        "chosen": chosen,
        "set_aside": _set_aside(series, chosen),
    }


def _set_aside(series: Series, chosen: bool) -> str | None:
    if series.problem is not None:
        return series.problem.one_line()
    if chosen:
        return None
    return "not_chosen: another scorable series is preferred (original, thinner, bone/standard kernel)"
