"""Decode only the part of a series that is asked for: the batch scorer needs the model's crop, not the volume.

A :class:`RegionVolume` looks like the canonical float32 HU volume to the crop code (``shape`` and basic
slicing) but reads and converts only the slices, rows and columns a slice asks for, with exactly the
arithmetic of :func:`inference.dicom.pixels.decode_volume`, so a crop cut from it is bit-identical to one cut
from the whole volume. It exists only where that is guaranteed without decoding anything first: every frame is
uncompressed little-endian single-frame 8/16-bit pixel data whose length covers the image, every rescale table
converts, the stack needs no tilt resampling and its canonical axes are the stack's own (axial, any flips).
Anything else goes through the whole-volume path, as does a file whose Pixel Data turns out not to be where
its header said (:class:`NotNativeError`).
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
    hu_into,
    hu_table,
    native_layout,
    stored_values,
    table_key,
)

_PIXEL_TAG = BaseTag(0x7FE00010)
_PIXEL_HEADER = b"\xe0\x7f\x10\x00"


class NotNativeError(Exception):
    """A frame's pixel data was not where its header placed it: decode the whole volume instead."""


class RegionVolume:
    """The canonical HU volume of an axial series, decoded region by region on demand."""

    def __init__(self, frames: Sequence[Frame], layouts: Sequence[NativeLayout],
                 flips: tuple[bool, bool, bool], tables: dict[tuple[str, ...], np.ndarray]) -> None:
        """Use :func:`region_volume`, which checks that the frames qualify."""
        self._frames, self._layouts, self._flips, self._tables = list(frames), list(layouts), flips, tables
        self._rules: dict[tuple[tuple[str, ...], str, float], int | bool | np.ndarray] = {}
        self.shape = (len(frames), frames[0].rows, frames[0].columns)
        self.dtype = np.dtype(np.float32)

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
        words = stored_values(self._words(s, 0, frame.rows), layout)
        key = table_key(frame, layout.dtype)
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
        """Raw words of rows ``r0:r1`` of stack frame ``s`` (only those rows are read)."""
        frame, layout = self._frames[s], self._layouts[s]
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

    def _decode_into(self, out: np.ndarray, s: int, r0: int, r1: int, c0: int, c1: int) -> None:
        """HU of rows ``r0:r1``, columns ``c0:c1`` of stack frame ``s`` into ``out``."""
        words = self._words(s, r0, r1)[:, c0:c1]
        hu_into(out, stored_values(words, self._layouts[s]), self._frames[s], self._tables)


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
    layouts: list[NativeLayout] = []
    tables: dict[tuple[str, ...], np.ndarray] = {}
    for frame in frames:
        layout = native_layout(frame)
        if layout is None or (frame.rows, frame.columns) != (rows, cols) or not _deferred_pixels(frame, layout):
            return None
        key = table_key(frame, layout.dtype)
        if key is None:
            return None
        if key not in tables:  # checks every rescale now, as decoding every frame would
            tables[key] = hu_table(frame, layout.dtype)
        layouts.append(layout)
    return RegionVolume(frames, layouts, flips, tables)
