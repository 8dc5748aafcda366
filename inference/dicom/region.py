"""Decode only the part of a series that is asked for: the batch scorer needs the model's crop, not the volume.

A :class:`RegionVolume` looks like the canonical float32 HU volume to the crop code (``shape`` and basic
slicing) but reads and converts only the slices, rows and columns a slice asks for, with exactly the
arithmetic of :func:`inference.dicom.pixels.decode_volume`, so a crop cut from it is bit-identical to one cut
from the whole volume. It exists only where that is guaranteed: every frame is a single-frame single-channel
8/16-bit image, every rescale table converts, the stack needs no tilt resampling and its canonical axes are the
stack's own (axial, any flips). Two kinds of frame qualify:

* uncompressed little-endian pixel data whose length covers the image: only the rows asked for are read from
  the file, and the spine finder thresholds the stored values;
* pixel data that needs a decoder (JPEG 2000, JPEG-LS, JPEG, RLE, deflated, big-endian), each file one image:
  a slice is decoded whole, only when it is asked for (the slices the spine finder samples, kept for the crop,
  and the crop's own), never the others, and its compressed bytes are dropped again once decoded.

Anything else goes through the whole-volume path, as does a file whose Pixel Data turns out not to be where
its header said or a decoder that returns another type than the header describes (:class:`NotNativeError`).
A decoding error in a slice that is used refuses the study as the whole-volume path does; a corrupt compressed
slice that the crop does not use is not decoded, so it is not noticed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from inference.dicom import geometry
from inference.dicom.parse import Frame
from inference.dicom.pixels import (
    NativeLayout,
    decode_frame,
    hu_into,
    hu_table,
    native_layout,
    stored_values,
    table_key,
)
from inference.dicom.valuecache import header_value
from inference.errors import InputError

_PIXEL_TAG = BaseTag(0x7FE00010)
_PIXEL_HEADER = b"\xe0\x7f\x10\x00"


class NotNativeError(Exception):
    """A frame's pixel data was not where its header placed it: decode the whole volume instead."""


class RegionVolume:
    """The canonical HU volume of an axial series, decoded region by region on demand."""

    def __init__(self, frames: Sequence[Frame], layouts: Sequence[NativeLayout | None],
                 flips: tuple[bool, bool, bool], tables: dict[tuple[str, ...], np.ndarray],
                 dtypes: Sequence[np.dtype]) -> None:
        """Use :func:`region_volume`, which checks that the frames qualify. ``layouts[s]`` is None for a frame
        that needs its decoder, which must return ``dtypes[s]``."""
        self._frames, self._layouts, self._flips, self._tables = list(frames), list(layouts), flips, tables
        self._dtypes = list(dtypes)
        self._rules: dict[tuple[tuple[str, ...], str, float], int | bool | np.ndarray] = {}
        self._decoded: dict[int, np.ndarray] = {}
        """Stored values of the decoder frames the spine finder sampled, kept for the crop."""
        self.shape = (len(frames), frames[0].rows, frames[0].columns)
        self.dtype = np.dtype(np.float32)
        self.decoded_slices: list[int] = []
        """The stack indices of the frames that went through their decoder, in order (each once for a crop)."""

    def _stack_index(self, axis: int, key: slice) -> np.ndarray:
        """Stack indices (file order, row, column) of a canonical slice along ``axis``."""
        n = self.shape[axis]
        idx = np.arange(n)[key]
        return n - 1 - idx if self._flips[axis] else idx

    def __getitem__(self, key: slice | tuple[slice, ...]) -> np.ndarray:
        """The float32 HU of a basic slice (one to three ``slice`` objects) of the canonical volume."""
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > 3 or not all(isinstance(k, slice) for k in keys):
            raise TypeError("a RegionVolume takes up to three slice objects")
        zs, ys, xs = (self._stack_index(a, k) for a, k in
                      enumerate((*keys, *(slice(None),) * (3 - len(keys)))))
        out = np.empty((zs.size, ys.size, xs.size), dtype=np.float32)
        if out.size == 0:
            return out
        r0, r1, c0, c1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        direct = np.array_equal(ys, np.arange(r0, r1)) and np.array_equal(xs, np.arange(c0, c1))
        rect = None if direct else np.empty((r1 - r0, c1 - c0), dtype=np.float32)
        for i, k in enumerate(zs):
            target = out[i] if rect is None else rect
            self._decode_into(target, int(k), r0, r1, c0, c1)
            if rect is not None:
                out[i] = rect[np.ix_(ys - r0, xs - c0)]
        return out

    def above(self, k: int, thresholds: Sequence[float]) -> list[np.ndarray]:
        """Masks ``HU > t`` of canonical slice ``k`` for each threshold, compared on the stored values (the
        same masks as thresholding the float32 HU slice, without computing it)."""
        s = int(self._stack_index(0, slice(k, k + 1))[0])
        frame, layout = self._frames[s], self._layouts[s]
        if layout is None:
            words = self._decoded.get(s)
            if words is None:
                words = self._decoded.setdefault(s, self._decode(s))
        else:
            words = stored_values(self._words(s, 0, frame.rows), layout)
        key = table_key(frame, words.dtype)
        assert key is not None
        masks = [self._above(words, key, float(t)) for t in thresholds]
        flip = (slice(None, None, -1 if self._flips[1] else 1), slice(None, None, -1 if self._flips[2] else 1))
        return [m[flip] for m in masks]

    def _above(self, words: np.ndarray, key: tuple[str, ...], t: float) -> np.ndarray:
        """``HU > t`` for stored ``words`` of rescale ``key``."""
        rule = self._rules.get((key, words.dtype.str, t))
        if rule is None:
            rule = self._rules.setdefault((key, words.dtype.str, t), self._rule(key, words.dtype, t))
        if isinstance(rule, np.ndarray):
            return np.take(rule, words.view(f"u{words.dtype.itemsize}"))
        if isinstance(rule, bool):
            return np.full(words.shape, rule)
        return words > words.dtype.type(rule)

    def _rule(self, key: tuple[str, ...], dtype: np.dtype, t: float) -> int | bool | np.ndarray:
        """How to threshold stored values of ``dtype`` and rescale ``key`` at ``HU > t``: a stored value ``x``
        (``HU > t`` exactly where ``stored > x``: a monotone rescale), True/False for every value, or else the
        boolean table over the unsigned view. Derived from the HU :func:`hu_into` gives every stored value, so
        the masks are those of thresholding the float32 HU volume."""
        frame = next(f for f in self._frames if table_key(f, dtype) == key)
        unsigned = np.dtype(f"u{dtype.itemsize}")
        domain = np.arange(np.iinfo(unsigned).max + 1, dtype=unsigned).view(dtype)
        hu = np.empty(domain.shape, dtype=np.float32)
        hu_into(hu, domain, frame, self._tables)
        lut = hu > np.float32(t)
        order = np.argsort(domain, kind="stable")
        step = lut[order]
        if not step.any() or step.all():
            return bool(step[0])
        first = int(np.argmax(step))
        if step[first:].all():  # False below, True from ``first`` on: one comparison does it
            return int(domain[order[first - 1]])
        return lut

    def _words(self, s: int, r0: int, r1: int) -> np.ndarray:
        """Raw words of rows ``r0:r1`` of uncompressed stack frame ``s`` (only those rows are read)."""
        frame, layout = self._frames[s], self._layouts[s]
        assert layout is not None
        elem = frame.ds.get_item(_PIXEL_TAG, keep_deferred=True)
        assert isinstance(elem, RawDataElement) and elem.value_tell is not None  # checked by region_volume
        header = 8 if elem.is_implicit_VR else 12
        row_bytes = frame.columns * layout.dtype.itemsize
        with open(frame.ds.filename, "rb") as fp:
            fp.seek(elem.value_tell - header)
            head = fp.read(4)
            fp.seek(elem.value_tell + r0 * row_bytes)
            data = fp.read((r1 - r0) * row_bytes)
        if head != _PIXEL_HEADER or len(data) != (r1 - r0) * row_bytes:
            raise NotNativeError(frame.path.name)
        return np.frombuffer(data, dtype=layout.dtype).reshape(r1 - r0, frame.columns)

    def _decode(self, s: int) -> np.ndarray:
        """Stored values of decoder frame ``s``, exactly as :func:`~inference.dicom.pixels.decode_volume` gets
        them; its compressed bytes are forgotten again (a deferred element is read from the file on use)."""
        frame = self._frames[s]
        raw = frame.ds.get_item(_PIXEL_TAG, keep_deferred=True)
        try:
            words = decode_frame(frame)
        except InputError as exc:
            raise InputError(exc.code, f"slice {s + 1} of {len(self._frames)}: {exc.message}") from exc
        finally:
            if isinstance(raw, RawDataElement) and raw.value is None:
                frame.ds[_PIXEL_TAG] = raw
        self.decoded_slices.append(s)
        if words.dtype != self._dtypes[s]:
            raise NotNativeError(frame.path.name)  # not the type the rescale tables were checked for
        return words

    def _decode_into(self, out: np.ndarray, s: int, r0: int, r1: int, c0: int, c1: int) -> None:
        """HU of rows ``r0:r1``, columns ``c0:c1`` of stack frame ``s`` into ``out``."""
        layout = self._layouts[s]
        if layout is None:
            kept = self._decoded.pop(s, None)  # a sampled slice is used once more, by the crop
            words = (kept if kept is not None else self._decode(s))[r0:r1, c0:c1]
        else:
            words = stored_values(self._words(s, r0, r1)[:, c0:c1], layout)
        hu_into(out, words, self._frames[s], self._tables)


def _deferred_pixels(frame: Frame, layout: NativeLayout) -> bool:
    """True when the frame's Pixel Data is a deferred element of known offset covering the whole image."""
    try:
        elem = frame.ds.get_item(_PIXEL_TAG, keep_deferred=True)
    except Exception:
        return False
    return (isinstance(elem, RawDataElement) and elem.value is None and elem.value_tell is not None
            and isinstance(getattr(frame.ds, "filename", None), str)
            and elem.length not in (None, 0xFFFFFFFF)
            and elem.length >= frame.rows * frame.columns * layout.dtype.itemsize
            and elem.value_tell >= (8 if elem.is_implicit_VR else 12))


def _decoder_dtype(frame: Frame) -> np.dtype | None:
    """The stored type the decoder gives a single-frame, single-channel 8/16-bit image that is not stored
    uncompressed little-endian, when this installation can decode its transfer syntax; None otherwise."""
    from pydicom.pixels import get_decoder

    ds = frame.ds
    try:
        if (frame.index != 0 or int(header_value(ds, "SamplesPerPixel", 1)) != 1
                or int(header_value(ds, "NumberOfFrames") or 1) != 1):
            return None
        allocated = int(header_value(ds, "BitsAllocated"))
        signed = int(header_value(ds, "PixelRepresentation")) == 1
        available = get_decoder(header_value(ds.file_meta, "TransferSyntaxUID")).is_available
    except Exception:
        return None
    if allocated not in (8, 16) or not available:
        return None
    return np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")


def region_volume(frames: Sequence[Frame], stack: geometry.Stack) -> RegionVolume | None:
    """A :class:`RegionVolume` of ``frames`` (in stack order), or None when the whole-volume path is needed.

    Raises:
        InputError: ``decode_failed`` when a rescale cannot be applied, as the whole-volume path would.

    """
    if not frames or stack.tilted:
        return None
    perm, flips = geometry.canonical_axes(stack.affine())
    if perm != (0, 1, 2):
        return None  # sagittal/coronal: the canonical z runs across the files
    rows, cols = frames[0].rows, frames[0].columns
    layouts: list[NativeLayout | None] = []
    dtypes: list[np.dtype] = []
    tables: dict[tuple[str, ...], np.ndarray] = {}
    for frame in frames:
        if (frame.rows, frame.columns) != (rows, cols):
            return None
        layout = native_layout(frame)
        if layout is not None and not _deferred_pixels(frame, layout):
            return None
        dtype = layout.dtype if layout is not None else _decoder_dtype(frame)
        if dtype is None:
            return None
        key = table_key(frame, dtype)
        if key is None:
            return None
        if key not in tables:  # checks every rescale now, as decoding every frame would
            tables[key] = hu_table(frame, dtype)
        layouts.append(layout)
        dtypes.append(dtype)
    return RegionVolume(frames, layouts, flips, tables, dtypes)
