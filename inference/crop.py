"""The one crop function that training and inference share: a spine-centred sub-volume in native voxels.

Resampling to the model grid, windowing and normalisation happen inside the model graph, not here.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from inference.spec import PreprocessSpec
from inference.study import Study
from inference.trunk import SAMPLE_MM, TISSUE_HU, Sections, largest_label, section_width_mm


class Volume(Protocol):
    """What the crop needs of a canonical HU volume when it is not an ndarray: a region reader that decodes on
    demand (:class:`inference.dicom.region.RegionVolume`)."""

    @property
    def shape(self) -> tuple[int, ...]:
        """(Z, Y, X) voxel counts."""
        ...

    def __getitem__(self, key: slice | tuple[slice, ...]) -> np.ndarray:
        """float32 HU of a basic slice."""
        ...

    def above(self, k: int, thresholds: Sequence[float]) -> list[np.ndarray]:
        """Masks ``HU > t`` of slice ``k``, one per threshold."""
        ...


@dataclass(frozen=True)
class Crop:
    """A sub-volume of fixed physical extent around the spine, padded where the scan ends.

    The crop follows the vertebral column: each of its slices is centred in-plane on the column at that height
    (:func:`spine_track`), so a curved spine comes out straight and stays inside the crop's 120 mm. ``offsets``
    gives, per crop slice, the study (row, column) index of that slice's voxel (0, 0).
    """

    image: np.ndarray
    """float32 HU (D, H, W), canonical orientation, native voxel spacing."""
    spacing_mm: tuple[float, float, float]
    start_index: tuple[int, int, int]
    """Index in the study volume of crop voxel (0, 0, 0) of the crop's middle slice (may be negative: padding);
    the row and column of other slices are in ``offsets``."""
    center_mm: tuple[float, float, float]
    """Centre of the crop's middle slice in canonical voxel-index millimetres (index * spacing)."""
    offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    """(D, 2) int: study (row, column) index of voxel (0, 0) of each crop slice; empty means ``start_index``
    for every slice (an unstraightened crop)."""
    sections: Sections | None = None
    """The patient's section width through the column along the crop (:mod:`inference.trunk`); None: not
    measured."""

    def slice_origin(self, j: float) -> tuple[int, int]:
        """Study (row, column) index of voxel (0, 0) of crop slice ``j`` (clipped to the crop)."""
        if len(self.offsets) == 0:
            return self.start_index[1], self.start_index[2]
        i = int(np.clip(round(j), 0, len(self.offsets) - 1))
        return int(self.offsets[i, 0]), int(self.offsets[i, 1])


def _smooth2d(img: np.ndarray, radius: int) -> np.ndarray:
    """Box filter by cumulative sums (faster than scipy's uniform filter here)."""
    if radius <= 0:
        return img
    k = 2 * radius + 1
    pad = np.pad(img, radius, mode="edge").astype(np.float64)
    c = pad.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _above(volume: np.ndarray | Volume, k: int, thresholds: Sequence[float]) -> list[np.ndarray]:
    """Masks ``HU > t`` of slice ``k`` (a region reader compares its stored values instead)."""
    if isinstance(volume, np.ndarray):
        return [volume[k] > t for t in thresholds]
    return volume.above(k, thresholds)


@dataclass
class _Sampled:
    """Bone and body masks of the slices the column search samples."""

    ks: list[int]
    bone: list[np.ndarray]
    body: np.ndarray
    """Share of the sampled non-empty slices in which each (row, column) lies inside the body."""


def patient_section(inside: np.ndarray) -> np.ndarray:
    """The patient's section of one slice's ``inside`` mask (HU above -400): its largest connected region, so
    that the table under the patient (a carbon-fibre shell over foam, denser than the bone threshold and present
    in every slice) and anything else apart from the patient is neither body nor bone to the column search. The
    regions are found on blocks (2 x 2 voxels, 4 x 4 from a 256 matrix up) wholly inside, so a thin air gap
    between the back and the table stays a gap; the region is grown back by one block and kept where ``inside``
    is."""
    h, w = inside.shape
    b = 4 if min(h, w) >= 256 else 2
    if h < 2 * b or w < 2 * b:
        return inside
    hb, wb = h // b, w // b
    blocks = inside[: hb * b, : wb * b]
    while blocks.shape[0] > hb:  # a block is inside when all its voxels are: halve by AND once or twice
        blocks = blocks[0::2] & blocks[1::2]
        blocks = blocks[:, 0::2] & blocks[:, 1::2]
    labels, n = ndimage.label(blocks)
    if n == 0:  # nothing a block wide: no section to tell apart
        return inside
    keep = labels == largest_label(labels, n)
    grown = keep.copy()  # grown by one block, the 8 neighbours (shifted ORs: cheaper than a dilation)
    grown[1:] |= keep[:-1]
    grown[:-1] |= keep[1:]
    rows = grown.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    full = np.zeros_like(inside)
    full[: hb * b, : wb * b] = grown.repeat(b, axis=0).repeat(b, axis=1)
    if hb * b < h:  # the last rows and columns the blocks did not cover follow their neighbours
        full[hb * b:] = full[hb * b - 1]
    if wb * b < w:
        full[:, wb * b:] = full[:, wb * b - 1: wb * b]
    return full & inside


def _sample_step(n_slices: int) -> int:
    """Step between the slices the column search thresholds (at most 127 of them)."""
    return max(1, n_slices // 64)


def _sample(volume: np.ndarray | Volume, spec: PreprocessSpec) -> _Sampled:
    """Threshold at most 127 evenly spaced slices (empty slices, as in zero-padded research volumes, are skipped
    so that they do not dilute the body outline)."""
    step = _sample_step(volume.shape[0])
    ks, bone = [], []
    body_n = np.zeros(volume.shape[1:], dtype=np.int32)
    for k in range(0, volume.shape[0], step):
        inside, bony = _above(volume, k, (-400.0, spec.bone_hu))
        if not inside.any():
            continue
        patient = patient_section(inside)
        ks.append(k)
        bone.append(bony & patient)
        body_n += patient
    body = body_n / len(ks) if ks else np.zeros(volume.shape[1:])
    return _Sampled(ks, bone, body)


def _peak(bone: np.ndarray, body: np.ndarray, spacing: tuple[float, float, float], spec: PreprocessSpec,
          cx: int, reach: tuple[int, int, int, int] | None = None) -> tuple[int, int] | None:
    """Peak of the smoothed bone count inside the body, within ``spec.search_mm`` of column ``cx`` (and inside
    ``reach`` = (row0, row1, col0, col1) when given); None when no bone lies there."""
    r = max(1, round(spec.smooth_mm / spacing[1]))
    score = _smooth2d(_smooth2d(bone, r), max(1, r // 2))  # box of a box: a plateau gets a single, central peak
    half = round(spec.search_mm / spacing[2])
    mask = np.zeros_like(score, dtype=bool)
    if reach is None:
        mask[:, max(0, cx - half): cx + half + 1] = True
    else:
        r0, r1, c0, c1 = reach
        mask[max(0, r0): max(0, r1), max(0, c0, cx - half): max(0, min(c1, cx + half + 1))] = True
    score = np.where(mask & (body > 0.5), score, -1.0)
    if score.max() <= 0:
        return None
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(row), int(col)


def _body_column(sampled: _Sampled, width: int) -> int:
    """Left-right centre of the body outline (clipped to the columns the body occupies)."""
    body = sampled.body
    cols = np.where(body.mean(axis=0) > 0.02)[0]
    cx = round(float(np.average(np.arange(width), weights=body.sum(axis=0) + 1e-9)))
    if cols.size:
        cx = int(np.clip(cx, cols.min(), cols.max()))
    return cx


def spine_center(
    volume: np.ndarray | Volume, spacing: tuple[float, float, float], spec: PreprocessSpec
) -> tuple[int, int]:
    """(row, col) in-plane index of the vertebral column: the densest bony column near the body centre.

    Bone voxels of the patient's section (:func:`patient_section`: not the table) are projected along z; the
    spine is present in every slice, ribs and pelvis only in some, so the smoothed projection peaks on it. The
    search is limited to ``spec.search_mm`` either side of the body's left-right centre.
    """
    key = ("centre", tuple(spacing), spec)
    kept = _LAST.get(volume, key)
    if kept is None:
        kept = _LAST.put(volume, key, _centre(_sample(volume, spec), volume.shape, spacing, spec))
    return int(kept[0]), int(kept[1])


class _LastVolume:
    """Column searches of the volumes still alive, each kept while its volume lives (weakly referenced).

    One study's column is sought by the crop, the engine's transparent measurement and, for ``--out``, again by
    the DICOM SEG's measurement; each search thresholds the same sampled slices. A volume is not changed once
    read, so the answer for the same volume, spacing and spec is the same (a copy of it is handed out). Slabs cut
    from a volume (the contrast check's) are volumes of their own: their entries go when they do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[weakref.ref[Any], dict[tuple[object, ...], Any]]] = {}

    def get(self, volume: object, key: tuple[object, ...]) -> Any:
        """A copy of the kept value of ``key`` for ``volume``, or None."""
        with self._lock:
            entry = self._entries.get(id(volume))
            value = entry[1].get(key) if entry is not None and entry[0]() is volume else None
        return None if value is None else np.array(value, copy=True)

    def put(self, volume: object, key: tuple[object, ...], value: Any) -> Any:
        """Keep ``value`` (an array or a tuple) for ``volume``; return it."""
        ident = id(volume)

        def forget(_: object) -> None:
            with self._lock:
                entry = self._entries.get(ident)
                if entry is not None and entry[0]() is None:
                    del self._entries[ident]

        with self._lock:
            entry = self._entries.get(ident)
            if entry is None or entry[0]() is not volume:
                try:
                    entry = (weakref.ref(volume, forget), {})
                except TypeError:  # a volume that cannot be weakly referenced is not kept
                    return value
                self._entries[ident] = entry
            entry[1][key] = np.array(value, copy=True)
        return value


_LAST = _LastVolume()


def _centre(sampled: _Sampled, shape: tuple[int, ...], spacing: tuple[float, float, float],
            spec: PreprocessSpec) -> tuple[int, int]:
    """:func:`spine_center` of sampled masks."""
    cx = _body_column(sampled, shape[2])
    bone = np.asarray(np.sum(sampled.bone, axis=0, dtype=np.float64)) if sampled.bone else np.zeros(shape[1:])
    peak = _peak(bone, sampled.body, spacing, spec, cx)
    if peak is None:  # no bone anywhere: the argmax of an all-negative score, as before (row 0, the first column)
        score = np.full(shape[1:], -1.0)
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        return int(row), int(col)
    return peak


def spine_track(volume: np.ndarray | Volume, spacing: tuple[float, float, float],
                spec: PreprocessSpec) -> np.ndarray:
    """(Z, 2) float: the in-plane (row, column) of the vertebral column at every slice.

    The whole-scan column (:func:`spine_center`) anchors it; every ``spec.track_step_mm`` along z the same bone
    projection, pooled over the sampled slices within ``spec.track_step_mm`` either side, is searched within
    ``spec.track_reach_mm`` of the anchor. The estimates are median-filtered over three steps (a rib cage or an
    iliac wing in one window cannot pull the track), limited to a slope of ``spec.track_slope`` (mm in-plane per
    mm along z) and interpolated to every slice. A straight spine gives a flat track: the anchor.
    """
    key = ("track", tuple(spacing), spec)
    kept = _LAST.get(volume, key)
    if kept is None:
        kept = _LAST.put(volume, key, _track(volume, spacing, spec))
    out: np.ndarray = kept
    return out


def _track(volume: np.ndarray | Volume, spacing: tuple[float, float, float], spec: PreprocessSpec) -> np.ndarray:
    """:func:`spine_track`, computed."""
    n = volume.shape[0]
    sampled = _sample(volume, spec)
    anchor = _centre(sampled, volume.shape, spacing, spec)
    _LAST.put(volume, ("centre", tuple(spacing), spec), anchor)  # spine_center's answer, found on the way
    out = np.tile(np.array(anchor, dtype=np.float64), (n, 1))
    if len(sampled.ks) < 2 or spec.track_step_mm <= 0:
        return out
    cx = _body_column(sampled, volume.shape[2])
    ks = np.array(sampled.ks)
    reach_r = round(spec.track_reach_mm / spacing[1])
    reach_c = round(spec.track_reach_mm / spacing[2])
    reach = (anchor[0] - reach_r, anchor[0] + reach_r + 1, anchor[1] - reach_c, anchor[1] + reach_c + 1)
    half = spec.track_step_mm / spacing[0]
    centres = np.arange(ks[0], ks[-1] + 1e-9, max(1.0, half))
    zs, est = [], []
    for zc in centres:
        near = np.where(np.abs(ks - zc) <= half)[0]
        if near.size == 0:
            continue
        bone = np.asarray(np.sum([sampled.bone[i] for i in near], axis=0, dtype=np.float64))
        peak = _peak(bone, sampled.body, spacing, spec, cx, reach)
        if peak is not None:
            zs.append(float(zc))
            est.append(peak)
    if len(est) < 3:
        return out
    pts = np.array(est, dtype=np.float64)
    med = np.array([np.median(pts[max(0, i - 1): i + 2], axis=0) for i in range(len(pts))])
    zs_a = np.array(zs)
    # limit the slope, forward then backward, from the point nearest the anchor
    mm = np.array([spacing[1], spacing[2]])
    for order in (range(1, len(med)), range(len(med) - 2, -1, -1)):
        for i in order:
            j = i - 1 if order.step > 0 else i + 1
            room = spec.track_slope * abs(zs_a[i] - zs_a[j]) * spacing[0] / mm
            med[i] = np.clip(med[i], med[j] - room, med[j] + room)
    k = np.arange(n, dtype=np.float64)
    out[:, 0] = np.interp(k, zs_a, med[:, 0])
    out[:, 1] = np.interp(k, zs_a, med[:, 1])
    return out


def spine_crop(study: Study, spec: PreprocessSpec, z_centre_index: float | None = None) -> Crop:
    """Cut the spine-centred crop of ``spec.crop_mm`` from the study, padding with ``spec.pad_hu``.

    In-plane every slice is centred on the vertebral column at its height (:func:`spine_track`); along z the
    crop is centred on the middle of the scan unless ``z_centre_index`` (a slice index) is given.
    """
    return crop_volume(study.volume, study.spacing_mm, spec, z_centre_index)


def crop_volume(vol: np.ndarray | Volume, sp: tuple[float, float, float], spec: PreprocessSpec,
                z_centre_index: float | None = None) -> Crop:
    """:func:`spine_crop` of a canonical volume with voxel size ``sp``: reads only the slices that
    :func:`spine_track` samples and the crop's own region."""
    track = spine_track(vol, sp, spec)
    z_c = (vol.shape[0] - 1) / 2.0 if z_centre_index is None else float(z_centre_index)
    size = [max(1, round(ext / s)) for ext, s in zip(spec.crop_mm, sp, strict=True)]
    z0 = round(z_c - (size[0] - 1) / 2.0)
    ks = np.clip(np.arange(z0, z0 + size[0]), 0, vol.shape[0] - 1)
    offsets = np.stack([np.round(track[ks, a] - (size[a + 1] - 1) / 2.0).astype(np.int64) for a in (0, 1)], axis=1)
    mid = size[0] // 2
    start = (z0, int(offsets[mid, 0]), int(offsets[mid, 1]))
    centre_mm = (z_c * sp[0], float(track[ks[mid], 0]) * sp[1], float(track[ks[mid], 1]) * sp[2])
    out = np.full(size, spec.pad_hu, dtype=np.float32)
    a0, a1 = max(0, z0), min(vol.shape[0], z0 + size[0])
    if a1 <= a0:
        return Crop(out, sp, start, centre_mm, offsets)
    box = []
    for axis in (0, 1):
        lo = int(offsets[a0 - z0: a1 - z0, axis].min())
        hi = int(offsets[a0 - z0: a1 - z0, axis].max()) + size[axis + 1]
        box.append((max(0, lo), min(vol.shape[axis + 1], hi)))
    if any(b1 <= b0 for b0, b1 in box):
        return Crop(out, sp, start, centre_mm, offsets)
    secs = _sections(vol, sp, track, a0, a1, z0)
    region = vol[a0:a1, box[0][0]:box[0][1], box[1][0]:box[1][1]]
    for k in range(a0, a1):
        j = k - z0
        src, dst = [], []
        for axis in (0, 1):
            o, n = int(offsets[j, axis]), size[axis + 1]
            s0, s1 = max(o, box[axis][0]), min(o + n, box[axis][1])
            if s1 <= s0:
                break
            src.append(slice(s0 - box[axis][0], s1 - box[axis][0]))
            dst.append(slice(s0 - o, s1 - o))
        else:
            out[j][dst[0], dst[1]] = region[k - a0][src[0], src[1]]
    return Crop(out, sp, start, centre_mm, offsets, secs)


def _sections(vol: np.ndarray | Volume, sp: tuple[float, float, float], track: np.ndarray, a0: int, a1: int,
              z0: int) -> Sections:
    """The section's width through the column (:func:`inference.trunk.section_width_mm`) on the slices from
    ``a0`` to ``a1`` that the column search sampled, at least :data:`inference.trunk.SAMPLE_MM` apart; indices
    relative to the crop's first slice ``z0``."""
    step = _sample_step(vol.shape[0])
    every = max(step, step * round(SAMPLE_MM / sp[0] / step))
    index, width = [], []
    for k in range(0, vol.shape[0], every):
        if not a0 <= k < a1:
            continue
        tissue = _above(vol, k, (TISSUE_HU,))[0]
        w = section_width_mm(tissue, sp[2], round(float(track[k, 0])), round(float(track[k, 1])))
        index.append(k - z0)
        width.append(np.nan if w is None else w)
    return Sections(np.array(index, dtype=np.float64), np.array(width, dtype=np.float64))
