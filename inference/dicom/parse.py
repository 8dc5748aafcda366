"""Read DICOM headers once, defensively, into typed per-frame records.

Pixel Data is never read here: it is deferred (pydicom ``defer_size``) and decoded later, only for the
series that is chosen. A Deflated Explicit VR Little Endian file is inflated with a hard output cap, since
``pydicom.dcmread`` would inflate it without any bound.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from inference.dicom import valuecache
from inference.dicom.fastread import fast_read
from inference.dicom.limits import Budget, Limits, megabytes
from inference.dicom.valuecache import header_value
from inference.errors import InputError

valuecache.install()  # every header goes through here: convert a series' repeated values once

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
DEFER_BYTES = 4096
_DEFLATE_UID = str(DeflatedExplicitVRLittleEndian).encode()
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Frame:
    """One 2-D image: a single-frame file or one frame of an enhanced multi-frame file."""

    path: Path
    index: int
    """Frame index inside its file (0 for single-frame files)."""
    ds: Dataset
    """The file's header (pixel data deferred)."""
    lut: Dataset
    """Dataset holding the Modality LUT module (rescale or LUT) that applies to this frame."""
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    instance_number: int | None


@dataclass(frozen=True)
class ParsedFile:
    """The outcome of reading one file's header."""

    path: Path
    ds: Dataset | None
    frames: tuple[Frame, ...]
    problem: str = ""
    """Empty when the file is a readable DICOM object; otherwise 'not_dicom' or 'unreadable: ...'."""


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """Return ``n`` finite floats from a multi-valued element, or None when absent or malformed."""
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or any(not math.isfinite(v) or abs(v) > 1e7 for v in out):
        return None
    return out


def _text_floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats of a DS/IS element, parsed from its raw text when pydicom has not converted it yet
    (about 10x cheaper than the conversion); the same result as ``_floats(_get(ds, keyword), n)``."""
    tag = tag_for_keyword(keyword)
    try:
        elem = ds.get_item(tag) if tag is not None else None
    except Exception:
        return None
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and elem.VR in (None, "DS", "IS"):
        try:
            out = tuple(float(part) for part in elem.value.decode("ascii").split("\\"))
        except (UnicodeDecodeError, ValueError):
            return _floats(_get(ds, keyword), n)
        if len(out) != n or any(not math.isfinite(v) or abs(v) > 1e7 for v in out):
            return None
        return out
    return _floats(_get(ds, keyword), n)


def _get(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """Read an element tolerating malformed values (a bad IS/DS gives ``default``)."""
    try:
        value = header_value(ds, keyword, default)
    except Exception:
        return default
    return default if value is None or value == "" else value


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """Return the first item of a sequence, or None."""
    if ds is None:
        return None
    seq = _get(ds, keyword)
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _inflate_stream(fp: BinaryIO, cap: int) -> bytes | None:
    """Inflate the raw deflate stream that follows in ``fp``, reading and inflating 1 MB at a time; None as soon
    as the output would exceed ``cap`` bytes (never more than ``cap`` plus one chunk is held)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pieces: list[bytes] = []
    total = 0
    try:
        while chunk := fp.read(_CHUNK):
            while chunk:
                piece = inflater.decompress(chunk, cap - total + 1)
                total += len(piece)
                if total > cap:
                    return None
                pieces.append(piece)
                chunk = inflater.unconsumed_tail
        pieces.append(inflater.flush())
    except zlib.error as exc:
        raise InvalidDicomError(f"corrupt deflate stream: {exc}") from exc
    if total + len(pieces[-1]) > cap:
        return None
    return b"".join(pieces)


def _inflate(path: Path, limits: Limits, budget: Budget) -> FileDataset:
    """Read a Deflated Explicit VR Little Endian file with a cap on the inflated size.

    Inflating and parsing hold the inflated bytes twice (the stream, then the parsed values), so twice the
    inflated size is charged to the study's ``budget`` while the file is read and once afterwards, for as long
    as the dataset (its pixel data in memory) is held.
    """
    cap = min(limits.max_inflated_bytes, budget.remaining // 2)
    with path.open("rb") as fp:
        preamble = fp.read(128)
        fp.seek(132)
        meta = _read_file_meta_info(fp)
        data = _inflate_stream(fp, cap)
    if data is None:
        if cap < limits.max_inflated_bytes:
            raise InputError("too_large", "the study's deflated DICOM files inflate beyond its memory budget of "
                             f"{megabytes(budget.limit)} (a deflate bomb?)")
        raise InputError("too_large", f"a deflated DICOM file inflates beyond {megabytes(cap)} (a deflate bomb?)")
    size = len(data)
    budget.charge(2 * size, "inflating the deflated DICOM files")
    try:
        dataset = read_dataset(DicomBytesIO(data), False, True)  # type: ignore[arg-type]
    finally:
        del data
        budget.release(size)  # the stream is freed; the parsed dataset stays charged
    ds = FileDataset(BytesIO(), dataset, preamble, meta, False, True)
    ds.filename = str(path)
    return ds


def _may_be_deflated(head: bytes) -> bool:
    """True unless the file meta group (read from the first bytes) rules out the deflated syntax."""
    if _DEFLATE_UID in head:
        return True
    if head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
        return True  # no group length: let the full meta parse decide
    return 144 + int.from_bytes(head[140:144], "little") > len(head)


def _read_dataset(path: Path, limits: Limits, budget: Budget) -> FileDataset:
    """Parse the header (pixel data deferred) or raise."""
    fast = fast_read(path)
    if fast is not None:
        return fast
    with path.open("rb") as fp:
        head = fp.read(8192)
    if head[128:132] != b"DICM":
        raise InvalidDicomError("no DICM prefix")
    if _may_be_deflated(head) and read_file_meta_info(path).get("TransferSyntaxUID") == (
        DeflatedExplicitVRLittleEndian
    ):
        return _inflate(path, limits, budget)
    return pydicom.dcmread(path, defer_size=DEFER_BYTES)


def read_file(path: Path, limits: Limits, budget: Budget | None = None) -> ParsedFile:
    """Read one file's header; never raises for a bad file (the problem is recorded instead).

    ``budget`` is the study's memory budget (a deflated file's dataset is charged to it); None gives the file a
    budget of its own.

    Raises:
        InputError: ``too_large`` for a deflate bomb, alone or summed over the study (a hostile file is not
            silently skipped).

    """
    budget = budget if budget is not None else Budget(limits)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return ParsedFile(path, None, (), f"unreadable: {exc.strerror}")
    if size > limits.max_file_bytes:
        return ParsedFile(path, None, (), "unreadable: file larger than the per-file limit")
    if size < 132:
        return ParsedFile(path, None, (), "not_dicom")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read_dataset(path, limits, budget)
            frames = tuple(frames_of(path, ds))
    except InvalidDicomError:
        return ParsedFile(path, None, (), "not_dicom")
    except InputError:
        raise
    except (Exception, RecursionError) as exc:  # a hostile header must never crash the reader
        return ParsedFile(path, None, (), f"unreadable: {type(exc).__name__}")
    return ParsedFile(path, ds, frames)


def read_deferred(ds: Dataset) -> None:
    """Read now every deferred value of ``ds`` but pixel data: a header kept after its study was read (for the
    reports) must not need its file again (a zip member's file is gone by then)."""
    for tag in list(ds.keys()):
        if tag in PIXEL_DATA_TAGS:
            continue
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement) and elem.value is None and elem.length not in (0, None):
            ds.get_item(tag)  # reads the value from the file and keeps it


def has_pixels(ds: Dataset) -> bool:
    """True when the dataset carries pixel data (of any kind)."""
    return any(tag in ds for tag in PIXEL_DATA_TAGS)


def frames_of(path: Path, ds: Dataset) -> list[Frame]:
    """Split a dataset into its 2-D frames with the geometry and Modality LUT of each."""
    if not has_pixels(ds):
        return []
    rows, cols = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    n_frames = _int(ds, "NumberOfFrames") or 1
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced_frames(path, ds, rows, cols, n_frames)
    frame = Frame(
        path=path,
        index=0,
        ds=ds,
        lut=ds,
        position=_text_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        orientation=_text_floats(ds, "ImageOrientationPatient", 6),  # type: ignore[arg-type]
        pixel_spacing=_text_floats(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
        rows=rows,
        columns=cols,
        instance_number=_int(ds, "InstanceNumber"),
    )
    if n_frames == 1:
        return [frame]
    # A classic multi-frame image (no functional groups) has one position for all frames: not a volume
    # we can place, so every frame repeats it and the geometry check refuses it as duplicate positions.
    return [Frame(**{**frame.__dict__, "index": i}) for i in range(n_frames)]


def _group_value(per_frame: Dataset | None, shared: Dataset | None, seq: str, keyword: str) -> Any:
    """Look ``seq[0].keyword`` up in the per-frame group first, then in the shared group."""
    for group in (per_frame, shared):
        item = _item(group, seq)
        if item is not None and keyword in item:
            return _get(item, keyword)
    return None


def _lut_dataset(per_frame: Dataset | None, shared: Dataset | None, ds: Dataset) -> Dataset:
    """The Pixel Value Transformation of an enhanced frame as a dataset apply_modality_lut can read."""
    slope = _group_value(per_frame, shared, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _group_value(per_frame, shared, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is None or intercept is None:
        return ds
    lut = Dataset()
    lut.RescaleSlope = slope
    lut.RescaleIntercept = intercept
    return lut


def _enhanced_frames(path: Path, ds: Dataset, rows: int, cols: int, n_frames: int) -> list[Frame]:
    """Frames of an enhanced (functional-group) multi-frame image."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = _get(ds, "PerFrameFunctionalGroupsSequence") or []
    frames = []
    for i in range(n_frames):
        per = per_frame_seq[i] if i < len(per_frame_seq) else None
        frames.append(
            Frame(
                path=path,
                index=i,
                ds=ds,
                lut=_lut_dataset(per, shared, ds),
                position=_floats(
                    _group_value(per, shared, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),  # type: ignore[arg-type]
                orientation=_floats(  # type: ignore[arg-type]
                    _group_value(per, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
                ),
                pixel_spacing=_floats(_group_value(per, shared, "PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
                rows=rows,
                columns=cols,
                instance_number=i + 1,
            )
        )
    return frames
