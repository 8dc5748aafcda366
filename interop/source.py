"""The headers of the scored series (no pixel data): those the reader already parsed, or read back from the
input files.

The SR and SEG must reference exactly the series the model saw, with the patient and study attributes of the
source so that a PACS files them with the study. A study read from DICOM keeps the headers its reader parsed
(:attr:`inference.study.Study.source_frames`) and :func:`study_source_series` reuses them; otherwise the files
are found with the same safe gathering code as ``load_study`` (folders, zips, lists of files) and parsed with the
same defensive header reader (:func:`read_source_series`). Both give the same headers in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset

from inference.dicom.archive import gather
from inference.dicom.limits import Limits
from inference.dicom.parse import PIXEL_DATA_TAGS, Frame, read_file
from inference.errors import InputError
from inference.study import Study


@dataclass(frozen=True)
class FrameGeometry:
    """Where one source frame lies in the patient (LPS, mm)."""

    position: np.ndarray
    """ImagePositionPatient: centre of the first transmitted pixel."""
    row_dir: np.ndarray
    """Direction of increasing column index (first three values of ImageOrientationPatient)."""
    col_dir: np.ndarray
    """Direction of increasing row index."""
    spacing: tuple[float, float]
    """PixelSpacing: (between rows, between columns)."""
    rows: int
    columns: int

    def pixel_lps(self) -> np.ndarray:
        """LPS coordinates of every pixel centre, shape (rows, columns, 3)."""
        r = np.arange(self.rows, dtype=np.float64)[:, None, None] * self.spacing[0]
        c = np.arange(self.columns, dtype=np.float64)[None, :, None] * self.spacing[1]
        return self.position + c * self.row_dir + r * self.col_dir


@dataclass(frozen=True)
class SourceSeries:
    """The scored series: its instances' headers and the geometry of each frame, in frame order.

    For single-frame images ``datasets[i]`` holds frame ``i``; for an enhanced multi-frame image ``datasets``
    has one item and ``frames`` lists its frames in their stored order.
    """

    datasets: tuple[Dataset, ...]
    frames: tuple[FrameGeometry, ...]

    @property
    def first(self) -> Dataset:
        """The first instance (patient, study and equipment attributes)."""
        return self.datasets[0]

    @property
    def multiframe(self) -> bool:
        """True for one enhanced multi-frame instance."""
        return len(self.datasets) == 1 and len(self.frames) > 1


def _header(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without pixel data, with every deferred value read now."""
    out = Dataset()
    for elem in ds:
        if elem.tag not in PIXEL_DATA_TAGS:
            out.add(elem)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.file_meta = FileMetaDataset(meta)
    return out


def _geometry(frame: Frame) -> FrameGeometry:
    if frame.position is None or frame.orientation is None or frame.pixel_spacing is None:
        raise InputError("missing_geometry", "a frame of the scored series has no position or orientation")
    o = np.asarray(frame.orientation, dtype=np.float64)
    return FrameGeometry(
        position=np.asarray(frame.position, dtype=np.float64),
        row_dir=o[:3],
        col_dir=o[3:],
        spacing=(float(frame.pixel_spacing[0]), float(frame.pixel_spacing[1])),
        rows=frame.rows,
        columns=frame.columns,
    )


def _sort_key(frame: Frame) -> float:
    assert frame.position is not None and frame.orientation is not None
    o = np.asarray(frame.orientation, dtype=np.float64)
    return float(np.dot(np.cross(o[:3], o[3:]), frame.position))


def read_source_series(
    source: Path | Sequence[Path], series_instance_uid: str, limits: Limits | None = None
) -> SourceSeries:
    """Read the headers of series ``series_instance_uid`` from ``source`` (folder, zip or files).

    Single-frame instances are returned sorted along the slice normal (duplicates of one SOP Instance UID
    read once). Raises :class:`InputError` (``source_mismatch``) when the source does not hold the series.
    """
    limits = limits or Limits()
    frames: list[Frame] = []
    headers: dict[str, Dataset] = {}
    with gather(source, limits) as gathered:
        for path in gathered.files:
            parsed = read_file(path, limits)
            if parsed.ds is None or str(parsed.ds.get("SeriesInstanceUID", "")) != series_instance_uid:
                continue
            sop = str(parsed.ds.get("SOPInstanceUID", ""))
            if sop in headers or not parsed.frames:
                continue
            headers[sop] = _header(parsed.ds)
            frames.extend(parsed.frames)
    if not headers:
        raise InputError("source_mismatch", "the input files do not hold the scored series")
    return _assemble(headers, frames)


def series_from_frames(frames: Sequence[Frame]) -> SourceSeries:
    """The :class:`SourceSeries` of frames the reader already parsed (pixel data dropped), without reading a file:
    what :func:`read_source_series` gives for the files those frames came from (the first file of each SOP
    Instance UID kept, the same sort along the slice normal)."""
    headers: dict[str, Dataset] = {}
    owner: dict[str, int] = {}
    kept: list[Frame] = []
    for frame in frames:
        sop = str(frame.ds.get("SOPInstanceUID", ""))
        if owner.setdefault(sop, id(frame.ds)) != id(frame.ds):
            continue  # another file of the same instance: read_source_series reads the first only
        if sop not in headers:
            headers[sop] = _reusable(frame.ds)
        kept.append(frame)
    if not headers:
        raise InputError("source_mismatch", "the study holds no header of the scored series")
    return _assemble(headers, kept)


def _reusable(ds: Dataset) -> Dataset:
    """``ds`` itself when it holds no pixel data (the reader drops it once decoded), else a header copy."""
    return _header(ds) if any(tag in ds for tag in PIXEL_DATA_TAGS) else ds


def _holds(source: Path | Sequence[Path], path: Path) -> bool:
    """True when ``path`` is one of the files ``source`` names or lies in one of its folders (a zip's members
    are extracted to a temporary folder: never held)."""
    roots = [source] if isinstance(source, str | os.PathLike) else list(source)
    target = Path(os.path.abspath(path))
    for root in roots:
        base = Path(os.path.abspath(root))
        if target == base or target.is_relative_to(base):
            return True
    return False


def study_source_series(study: Study, source: Path | Sequence[Path], limits: Limits | None = None) -> SourceSeries:
    """The headers of the series ``study`` was read from: the ones its reader parsed when it kept them and they
    came from ``source`` (no file is read again), else read from ``source`` (:func:`read_source_series`, which
    refuses a source without the series)."""
    frames = study.source_frames
    if frames and all(_holds(source, f.path) for f in frames):
        return series_from_frames(frames)
    return read_source_series(source, study.series_instance_uid, limits)


def _assemble(headers: dict[str, Dataset], frames: list[Frame]) -> SourceSeries:
    if len(headers) == 1 and len(frames) > 1:
        return SourceSeries(tuple(headers.values()), tuple(_geometry(f) for f in frames))
    geo = [_geometry(f) for f in frames]  # raises before sorting when geometry is missing
    order = sorted(range(len(frames)), key=lambda i: _sort_key(frames[i]))
    by_sop = [headers[str(frames[i].ds.get("SOPInstanceUID", ""))] for i in order]
    return SourceSeries(tuple(by_sop), tuple(geo[i] for i in order))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def patient_header(ds: Dataset) -> dict[str, str]:
    """Identity lines for the PDF header, from the source header: label -> value (empty values kept out).

    This holds the patient's name and ID: it goes into the report document only, never into a log.
    """
    fields = {
        "Patient": _text(ds, "PatientName").replace("^", " ").strip(),
        "Patient ID": _text(ds, "PatientID"),
        "Birth date": _text(ds, "PatientBirthDate"),
        "Sex": _text(ds, "PatientSex"),
        "Study date": _text(ds, "StudyDate"),
        "Accession": _text(ds, "AccessionNumber"),
        "Study": _text(ds, "StudyDescription"),
        "Series": _text(ds, "SeriesDescription"),
    }
    return {k: v for k, v in fields.items() if v}
