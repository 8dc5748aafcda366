"""Decode the chosen frames into one preallocated float32 HU array, in parallel.

Stored values become HU only through :func:`pydicom.pixels.apply_modality_lut` (Rescale Slope/Intercept or a
Modality LUT). The Photometric Interpretation is a presentation matter: a MONOCHROME1 image has the same
Modality LUT and the same HU as its MONOCHROME2 twin, so it is not inverted. JPEG, JPEG-LS, JPEG 2000 and RLE
decode through pydicom's plugins (python-gdcm, pylibjpeg); those release the GIL, so threads pay off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from inference.dicom.limits import Budget, Limits
from inference.dicom.parse import PIXEL_DATA_TAGS, Frame
from inference.dicom.valuecache import header_value
from inference.errors import InputError

_PIXEL_DATA = 0x7FE00010
_PIXEL_TAG = BaseTag(_PIXEL_DATA)


def _workers(limits: Limits, n: int) -> int:
    if limits.workers > 0:
        return min(limits.workers, n)
    return max(1, min(8, os.cpu_count() or 1, n))


_NATIVE_LE = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))


def _pixel_bytes(ds: Dataset) -> bytes:
    """The Pixel Data value; a deferred one is read straight from its offset in the file (4x faster than
    pydicom's deferred read), after checking that the element header there is Pixel Data's."""
    elem = ds.get_item(_PIXEL_TAG, keep_deferred=True)
    filename = getattr(ds, "filename", None)
    if not (isinstance(elem, RawDataElement) and elem.value is None and isinstance(filename, str)
            and elem.value_tell is not None and elem.length not in (None, 0xFFFFFFFF)):
        return bytes(ds.PixelData)
    header = 8 if elem.is_implicit_VR else 12
    with open(filename, "rb") as fp:
        fp.seek(elem.value_tell - header)
        data = fp.read(header + elem.length)
    if data[:4] != b"\xe0\x7f\x10\x00" or len(data) != header + elem.length:
        return bytes(ds.PixelData)  # not where we expected it: let pydicom find it
    return data[header:]


@dataclass(frozen=True)
class NativeLayout:
    """How the stored values of an uncompressed little-endian single-frame 8/16-bit image lie in its bytes."""

    dtype: np.dtype
    """Little-endian stored type (``<i2``, ``<u2``, ``<i1`` or ``<u1``)."""
    stored: int
    """Bits Stored (the high bits above it are not part of the value)."""


def native_layout(frame: Frame) -> NativeLayout | None:
    """The layout of a frame whose stored values can be read straight from its bytes; None for anything
    else (compressed, big-endian, multi-frame, colour, odd bit depths: the decoder handles those)."""
    ds = frame.ds
    try:
        if (frame.index != 0 or str(header_value(ds.file_meta, "TransferSyntaxUID")) not in _NATIVE_LE
                or int(header_value(ds, "SamplesPerPixel", 1)) != 1
                or int(header_value(ds, "NumberOfFrames") or 1) != 1):
            return None
        allocated, stored = int(header_value(ds, "BitsAllocated")), int(header_value(ds, "BitsStored"))
        signed = int(header_value(ds, "PixelRepresentation")) == 1
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        return None
    return NativeLayout(np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}"), stored)


def stored_values(arr: np.ndarray, layout: NativeLayout) -> np.ndarray:
    """Raw words as stored values: unused high bits masked, signed values sign-extended, exactly as
    pydicom's decoder does."""
    dtype, allocated = layout.dtype, layout.dtype.itemsize * 8
    if layout.stored >= allocated:
        return arr
    shift = allocated - layout.stored
    unsigned = arr.view(f"<u{dtype.itemsize}")
    if dtype.kind == "i":  # move the sign bit to the top (on the unsigned view), then shift back arithmetically
        return (unsigned << unsigned.dtype.type(shift)).view(dtype) >> dtype.type(shift)
    return unsigned & dtype.type((1 << layout.stored) - 1)


def native_frame(frame: Frame) -> np.ndarray | None:
    """Stored values of an uncompressed little-endian single-frame 8/16-bit image straight from its bytes.

    The same array pydicom's decoder gives (unused high bits masked, signed values sign-extended) for the
    common CT case, without its per-call set-up; None when the frame is anything else (the decoder handles it).
    """
    layout = native_layout(frame)
    if layout is None:
        return None
    try:
        raw = _pixel_bytes(frame.ds)
    except (AttributeError, KeyError, TypeError, ValueError, OSError):
        return None
    count = frame.rows * frame.columns
    if not isinstance(raw, bytes) or len(raw) < count * layout.dtype.itemsize:
        return None  # the decoder reports the short pixel data
    arr = np.frombuffer(raw, dtype=layout.dtype, count=count).reshape(frame.rows, frame.columns)
    return stored_values(arr, layout)


def decode_frame(frame: Frame) -> np.ndarray:
    """Decode one frame to its stored values (2-D array), or raise ``decode_failed``.

    The message names neither the file nor the decoder library's own text (a table row or a web page shows it
    as is): it says which compression the frame uses and whether this installation can decode it.
    """
    native = native_frame(frame)
    if native is not None:
        return native
    syntax = None
    try:
        syntax = frame.ds.file_meta.TransferSyntaxUID
        for tag in PIXEL_DATA_TAGS:  # read a deferred element once: the decoder would re-read the file ~20x slower
            if tag in frame.ds:
                _ = frame.ds[tag].value
                break
        arr, _ = get_decoder(syntax).as_array(frame.ds, index=frame.index)
    except Exception as exc:
        raise InputError("decode_failed", _undecodable(syntax)) from exc
    if arr.shape != (frame.rows, frame.columns):
        raise InputError("decode_failed", f"the image is not a single-channel {frame.rows}x{frame.columns} image")
    return arr


def _undecodable(syntax: object) -> str:
    """Why a frame of ``syntax`` (a transfer syntax UID, or None when absent) cannot be decoded, in our words."""
    if not syntax:
        return "the file has no transfer syntax, so its pixel data cannot be decoded"
    uid = UID(str(syntax))
    name = uid.name if uid.is_transfer_syntax else f"an unknown transfer syntax ({str(uid)[:64]})"
    try:
        available = get_decoder(uid).is_available
    except Exception:
        available = False
    if not available:
        return f"the pixel data is compressed as {name}, which this installation cannot decode"
    return f"the pixel data ({name}) is corrupt or truncated"


def to_hu(stored: np.ndarray, frame: Frame) -> np.ndarray:
    """Stored values to HU through the frame's Modality LUT (rescale or LUT), as float32."""
    try:
        hu = apply_modality_lut(stored, frame.lut)
    except Exception as exc:
        raise InputError("decode_failed", "the rescale slope/intercept or Modality LUT is invalid") from exc
    return np.asarray(hu, dtype=np.float32)


def table_key(frame: Frame, dtype: np.dtype) -> tuple[str, ...] | None:
    """Key of a reusable stored-value -> HU table, or None when the frame needs a direct conversion."""
    lut = frame.lut
    if dtype.kind not in "iu" or dtype.itemsize > 2 or "ModalityLUTSequence" in lut:
        return None
    return (dtype.str, str(header_value(lut, "RescaleSlope", "")), str(header_value(lut, "RescaleIntercept", "")))


def hu_table(frame: Frame, dtype: np.dtype) -> np.ndarray:
    """HU of every possible stored value of an 8/16-bit ``dtype``, via apply_modality_lut, indexed unsigned.

    Looking stored values up in this table gives exactly what apply_modality_lut gives pixel by pixel, in
    one pass instead of four.
    """
    unsigned = np.dtype(f"u{dtype.itemsize}")
    domain = np.arange(np.iinfo(unsigned).max + 1, dtype=unsigned).view(dtype)
    return to_hu(domain, frame)


def hu_into(
    out: np.ndarray, stored: np.ndarray, frame: Frame, tables: dict[tuple[str, ...], np.ndarray]
) -> None:
    """Write the HU of ``stored`` into ``out`` (a table look-up when the stored type allows it; ``tables``
    caches the tables by :func:`table_key`)."""
    key = table_key(frame, stored.dtype)
    if key is None:
        out[...] = to_hu(stored, frame)
        return
    intercept = whole_intercept(key)
    if intercept is not None:  # slope 1, whole intercept: exact in float32
        np.add(stored, np.float32(intercept), out=out)
        return
    table = tables.get(key)
    if table is None:
        table = tables.setdefault(key, hu_table(frame, stored.dtype))
    np.take(table, stored.view(f"u{stored.dtype.itemsize}"), out=out)


def whole_intercept(key: tuple[str, ...]) -> float | None:
    """The intercept of a :func:`table_key` with slope 1 and a whole intercept small enough that
    ``float32(stored) + float32(intercept)`` is exact; None for any other rescale."""
    return float(key[2]) if key[1] in ("1", "1.0", "1.") and _is_integer(key[2]) else None


def _is_integer(text: str) -> bool:
    """True for a decimal string holding a whole number small enough to be exact in float32."""
    try:
        value = float(text)
    except ValueError:
        return False
    return value.is_integer() and abs(value) < 2**20


def _pixel_length(ds: Dataset) -> int:
    """Bytes of a dataset's Pixel Data as its header declares them (0 when unknown or undefined)."""
    try:
        elem = ds.get_item(_PIXEL_TAG, keep_deferred=True)
    except (KeyError, TypeError, ValueError):
        return 0
    length = getattr(elem, "length", None) if elem is not None else None
    if isinstance(length, int) and length != 0xFFFFFFFF:
        return length
    value = getattr(elem, "value", None)
    return len(value) if isinstance(value, bytes) else 0


def volume_bytes(frames: Sequence[Frame]) -> int:
    """Bytes of the float32 volume of ``frames``."""
    return len(frames) * frames[0].rows * frames[0].columns * 4


def decode_volume(frames: Sequence[Frame], limits: Limits, budget: Budget | None = None,
                  copies: int = 1) -> np.ndarray:
    """Decode ``frames`` (already in their final order) into a (n, rows, columns) float32 HU array.

    The volume (``copies`` times: 2 when the caller will reorder it into a new array) and any multi-frame pixel
    data loaded at once are charged to the study's ``budget`` before they are allocated.
    """
    budget = budget if budget is not None else Budget(limits)
    n, rows, cols = len(frames), frames[0].rows, frames[0].columns
    reordered = ", and its reordered copy" if copies > 1 else ""
    budget.charge(copies * volume_bytes(frames), f"the decoded volume ({n} x {rows} x {cols} float32{reordered})")
    multi = {id(f.ds): f.ds for f in frames if f.index > 0}
    budget.charge(sum(_pixel_length(ds) for ds in multi.values()), "the multi-frame pixel data")
    out = np.empty((n, rows, cols), dtype=np.float32)
    for ds in multi.values():  # load shared multi-frame pixel data once, before the threads start
        _ = ds.get(_PIXEL_DATA)

    tables: dict[tuple[str, ...], np.ndarray] = {}

    def work(k: int) -> None:
        frame = frames[k]
        try:
            hu_into(out[k], decode_frame(frame), frame, tables)
        except InputError as exc:
            raise InputError(exc.code, f"slice {k + 1} of {n}: {exc.message}") from exc
        if id(frame.ds) not in multi and _PIXEL_DATA in frame.ds:
            del frame.ds[_PIXEL_DATA]  # keep peak memory near the output array

    workers = _workers(limits, n)
    if workers == 1:
        for k in range(n):
            work(k)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(n)))
    for ds in multi.values():  # the headers may be kept (for the reports): not the pixel data
        if _PIXEL_DATA in ds:
            del ds[_PIXEL_DATA]
    return out
