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

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from inference.dicom.limits import Limits
from inference.dicom.parse import PIXEL_DATA_TAGS, Frame
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


def native_frame(frame: Frame) -> np.ndarray | None:
    """Stored values of an uncompressed little-endian single-frame 8/16-bit image straight from its bytes.

    The same array pydicom's decoder gives (unused high bits masked, signed values sign-extended) for the
    common CT case, without its per-call set-up; None when the frame is anything else (the decoder handles it).
    """
    ds = frame.ds
    try:
        if (frame.index != 0 or str(ds.file_meta.TransferSyntaxUID) not in _NATIVE_LE
                or int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("NumberOfFrames") or 1) != 1):
            return None
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
        raw = _pixel_bytes(ds)
    except (AttributeError, KeyError, TypeError, ValueError, OSError):
        return None
    if allocated not in (8, 16) or not 1 <= stored <= allocated or not isinstance(raw, bytes):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    count = frame.rows * frame.columns
    if len(raw) < count * dtype.itemsize:
        return None  # the decoder reports the short pixel data
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(frame.rows, frame.columns)
    if stored < allocated:
        shift = allocated - stored
        unsigned = arr.view(f"<u{dtype.itemsize}")
        if signed:  # move the sign bit to the top (on the unsigned view), then shift back arithmetically
            arr = (unsigned << unsigned.dtype.type(shift)).view(dtype) >> dtype.type(shift)
        else:
            arr = unsigned & dtype.type((1 << stored) - 1)
    return arr


def decode_frame(frame: Frame) -> np.ndarray:
    """Decode one frame to its stored values (2-D array), or raise ``decode_failed``."""
    native = native_frame(frame)
    if native is not None:
        return native
    try:
        syntax = frame.ds.file_meta.TransferSyntaxUID
        for tag in PIXEL_DATA_TAGS:  # read a deferred element once: the decoder would re-read the file ~20x slower
            if tag in frame.ds:
                _ = frame.ds[tag].value
                break
        arr, _ = get_decoder(syntax).as_array(frame.ds, index=frame.index)
    except Exception as exc:
        raise InputError(
            "decode_failed", f"the image in {frame.path.name} cannot be decoded ({_why(exc)})"
        ) from exc
    if arr.shape != (frame.rows, frame.columns):
        raise InputError(
            "decode_failed", f"{frame.path.name} is not a single-channel {frame.rows}x{frame.columns} image"
        )
    return arr


def _why(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def to_hu(stored: np.ndarray, frame: Frame) -> np.ndarray:
    """Stored values to HU through the frame's Modality LUT (rescale or LUT), as float32."""
    try:
        hu = apply_modality_lut(stored, frame.lut)
    except Exception as exc:
        raise InputError(
            "decode_failed", f"the rescale/LUT of {frame.path.name} is invalid ({_why(exc)})"
        ) from exc
    return np.asarray(hu, dtype=np.float32)


def _table_key(frame: Frame, dtype: np.dtype) -> tuple[str, ...] | None:
    """Key of a reusable stored-value -> HU table, or None when the frame needs a direct conversion."""
    lut = frame.lut
    if dtype.kind not in "iu" or dtype.itemsize > 2 or "ModalityLUTSequence" in lut:
        return None
    return (dtype.str, str(lut.get("RescaleSlope", "")), str(lut.get("RescaleIntercept", "")))


def hu_table(frame: Frame, dtype: np.dtype) -> np.ndarray:
    """HU of every possible stored value of an 8/16-bit ``dtype``, via apply_modality_lut, indexed unsigned.

    Looking stored values up in this table gives exactly what apply_modality_lut gives pixel by pixel, in
    one pass instead of four.
    """
    unsigned = np.dtype(f"u{dtype.itemsize}")
    domain = np.arange(np.iinfo(unsigned).max + 1, dtype=unsigned).view(dtype)
    return to_hu(domain, frame)


def _hu_into(
    out: np.ndarray, stored: np.ndarray, frame: Frame, tables: dict[tuple[str, ...], np.ndarray]
) -> None:
    """Write the HU of ``stored`` into ``out`` (a table look-up when the stored type allows it)."""
    key = _table_key(frame, stored.dtype)
    if key is None:
        out[...] = to_hu(stored, frame)
        return
    if key[1] in ("1", "1.0", "1.") and _is_integer(key[2]):  # slope 1, whole intercept: exact in float32
        np.add(stored, np.float32(float(key[2])), out=out)
        return
    table = tables.get(key)
    if table is None:
        table = tables.setdefault(key, hu_table(frame, stored.dtype))
    np.take(table, stored.view(f"u{stored.dtype.itemsize}"), out=out)


def _is_integer(text: str) -> bool:
    """True for a decimal string holding a whole number small enough to be exact in float32."""
    try:
        value = float(text)
    except ValueError:
        return False
    return value.is_integer() and abs(value) < 2**20


def decode_volume(frames: Sequence[Frame], limits: Limits) -> np.ndarray:
    """Decode ``frames`` (already in their final order) into a (n, rows, columns) float32 HU array."""
    n, rows, cols = len(frames), frames[0].rows, frames[0].columns
    out = np.empty((n, rows, cols), dtype=np.float32)
    multi = {id(f.ds): f.ds for f in frames if f.index > 0}
    for ds in multi.values():  # load shared multi-frame pixel data once, before the threads start
        _ = ds.get(_PIXEL_DATA)

    tables: dict[tuple[str, ...], np.ndarray] = {}

    def work(k: int) -> None:
        frame = frames[k]
        _hu_into(out[k], decode_frame(frame), frame, tables)
        if id(frame.ds) not in multi and _PIXEL_DATA in frame.ds:
            del frame.ds[_PIXEL_DATA]  # keep peak memory near the output array

    workers = _workers(limits, n)
    if workers == 1:
        for k in range(n):
            work(k)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(n)))
    return out
