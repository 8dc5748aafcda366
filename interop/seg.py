"""DICOM Segmentation of the vertebral bodies the measurement delineated, aligned with the scored series.

No voxel mask comes out of the model. The transparent measurement (:mod:`inference.measure`) delineates each body
it can: its antero-posterior and left-right extent on the axial slab at the level centre, and its two endplates.
Each such body becomes one segment: an **elliptic cylinder** inscribed in that extent, running from one endplate to
the other and leaning with the body's measured sagittal tilt. It approximates the vertebral body (cortex
included, posterior elements excluded); it is not a voxel-wise segmentation, and every segment says so in its
Segment Description. A level the model found but the measurement could not delineate has no segment (the SR then
points at the level centre instead).

The segments are built by array slicing: a body is a small block of the canonical volume (a range of slices, rows
and columns), and each source frame that is a plane of the canonical grid (axial, sagittal or coronal, single- or
multi-frame) receives the block's slice through it by transposing and flipping. Only a frame that is not such a
plane (a gantry-tilted or oblique series the reader resampled) is looked up pixel by pixel, nearest voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from inference.findings import Vertebra as LevelFinding
from inference.measure import BodyRegion, Measurement, measure_levels
from inference.study import Study
from interop import codes as vc
from interop.source import FrameGeometry, SourceSeries
from vfrisk.result import Result

MANUFACTURER = "vfrisk"
SEG_SERIES_NUMBER = 9902
SEG_SERIES_DESCRIPTION = "vfrisk vertebral bodies (approximate, decision support)"
_TOL = 1e-3
"""How far (in voxels) a frame may lie from a plane of the canonical grid and still be sliced."""


@dataclass(frozen=True)
class BodySegment:
    """One segment: the level, its finding, the measured region and its block in the canonical volume."""

    level: LevelFinding
    region: BodyRegion
    origin: tuple[int, int, int]
    """Canonical index (k, j, i) of the block's first voxel."""
    block: np.ndarray
    """bool (nk, nj, ni): the body's voxels inside the block."""

    def description(self) -> str:
        """The Segment Description: what this segment is, in words."""
        confidence = "" if self.level.name_confidence is None else f", name confidence {self.level.name_confidence:.2f}"
        uncertain = " (name uncertain)" if self.level.name_uncertain else ""
        return (f"Vertebral body {self.level.level}{uncertain}{confidence}: elliptic cylinder inscribed in the "
                "body's measured antero-posterior and left-right extent, between the endplates found by the "
                "measurement; an approximation, not a voxel-wise segmentation")[:1024]


def segmentable_levels(result: Result) -> list[LevelFinding]:
    """Levels found by the model that have a position and a SNOMED CT vertebra code."""
    return [v for v in result.found_levels() if v.level in vc.LEVELS]


def measured_regions(study: Study, levels: Sequence[LevelFinding]) -> dict[str, Measurement]:
    """The measurement of each level (the same call as the engine's transparent measurement, so the same bodies);
    only those with a delineated body are returned."""
    found = [(v.level, float(v.z_mm)) for v in levels if v.z_mm is not None]
    if not found:
        return {}
    return {m.level: m for m in measure_levels(study, found) if m.quality == "ok" and m.region is not None}


def body_block(region: BodyRegion, tilt_deg: float, study: Study) -> tuple[tuple[int, int, int], np.ndarray]:
    """The body's block of the canonical volume: (origin (k, j, i), bool mask). On each slice between the
    endplates, the ellipse inscribed in the measured extent, its centre moved anteriorly with height by the tilt."""
    nk, nj, ni = study.volume.shape
    sk, sj, _ = study.spacing_mm
    k0, k1 = max(0, math.ceil(region.slices[0])), min(nk - 1, math.floor(region.slices[1]))
    yc, xc = sum(region.rows) / 2, sum(region.columns) / 2
    ry, rx = (region.rows[1] - region.rows[0]) / 2, (region.columns[1] - region.columns[0]) / 2
    shift = -math.tan(math.radians(tilt_deg)) * sk / sj  # rows per slice: the top leans anteriorly (-j)
    mid = (region.slices[0] + region.slices[1]) / 2
    centres = [yc + (k - mid) * shift for k in range(k0, k1 + 1)] if k1 >= k0 else [yc]
    j0 = max(0, math.floor(min(centres) - ry))
    j1 = min(nj - 1, math.ceil(max(centres) + ry))
    i0, i1 = max(0, math.floor(xc - rx)), min(ni - 1, math.ceil(xc + rx))
    if k1 < k0 or j1 < j0 or i1 < i0 or ry <= 0 or rx <= 0:
        return (0, 0, 0), np.zeros((0, 0, 0), dtype=bool)
    jj = np.arange(j0, j1 + 1, dtype=np.float32)[None, :, None]
    ii = np.arange(i0, i1 + 1, dtype=np.float32)[None, None, :]
    cy = np.asarray(centres, dtype=np.float32)[:, None, None]
    block = ((jj - cy) / ry) ** 2 + ((ii - xc) / rx) ** 2 <= 1.0
    return (k0, j0, i0), block


def body_segments(result: Result, study: Study) -> list[BodySegment]:
    """One segment per found level whose body the measurement delineated, in the result's level order."""
    levels = segmentable_levels(result)
    measured = measured_regions(study, levels)
    out = []
    for level in levels:
        m = measured.get(level.level)
        if m is None or m.region is None:
            continue
        origin, block = body_block(m.region, m.tilt_deg or 0.0, study)
        if block.any():
            out.append(BodySegment(level, m.region, origin, block))
    return out


@dataclass(frozen=True)
class FramePlane:
    """A source frame that is a plane of the canonical grid: which canonical axis it cuts and where, and which
    canonical axis (and direction) its rows and columns run along from which index."""

    axis: int
    index: int
    row_axis: int
    row_sign: int
    row_start: int
    col_axis: int
    col_sign: int
    col_start: int


def _unit_axis(v: np.ndarray) -> tuple[int, int] | None:
    """(axis, sign) when ``v`` (a step in canonical voxels) is one voxel along one axis, else None."""
    a = int(np.argmax(np.abs(v)))
    if abs(abs(v[a]) - 1.0) > _TOL or np.abs(np.delete(v, a)).max() > _TOL:
        return None
    return a, 1 if v[a] > 0 else -1


def frame_plane(frame: FrameGeometry, to_index: np.ndarray) -> FramePlane | None:
    """The frame as a plane of the canonical grid, or None when it is not one (tilted, oblique, other spacing)."""
    origin = to_index[:3, :3] @ frame.position + to_index[:3, 3]
    row = _unit_axis(to_index[:3, :3] @ (frame.col_dir * frame.spacing[0]))  # next row
    col = _unit_axis(to_index[:3, :3] @ (frame.row_dir * frame.spacing[1]))  # next column
    if row is None or col is None or row[0] == col[0] or np.abs(origin - np.round(origin)).max() > _TOL:
        return None
    axis = 3 - row[0] - col[0]
    start = np.round(origin).astype(int)
    return FramePlane(axis, int(start[axis]), row[0], row[1], int(start[row[0]]), col[0], col[1],
                      int(start[col[0]]))


def _span(start: int, sign: int, n: int, lo: int, size: int) -> tuple[slice, slice] | None:
    """Where canonical indices ``lo .. lo + size - 1`` fall on a frame axis of ``n`` pixels running from canonical
    index ``start`` in direction ``sign``: (pixel slice, block slice, reversed when the axis runs backwards)."""
    first, last = (lo - start) * sign, (lo + size - 1 - start) * sign
    p0, p1 = min(first, last), max(first, last)
    q0, q1 = max(p0, 0), min(p1, n - 1)
    if q1 < q0:
        return None
    if sign > 0:
        return slice(q0, q1 + 1), slice(q0 - p0, q1 - p0 + 1)
    # pixel p holds canonical index start - p: block offset (start - p) - lo, decreasing with p
    b_hi, b_lo = start - q0 - lo, start - q1 - lo
    return slice(q0, q1 + 1), slice(b_hi, b_lo - 1 if b_lo > 0 else None, -1)


def _paint_plane(out: np.ndarray, plane: FramePlane, seg: BodySegment, label: int) -> None:
    """Draw the block's slice through ``plane`` into one frame ``out`` (rows, columns)."""
    offset = plane.index - seg.origin[plane.axis]
    if not 0 <= offset < seg.block.shape[plane.axis]:
        return
    cut = np.take(seg.block, offset, axis=plane.axis)  # 2-D over the two other canonical axes, in axis order
    if plane.row_axis > plane.col_axis:
        cut = cut.T  # rows first
    rows = _span(plane.row_start, plane.row_sign, out.shape[0], seg.origin[plane.row_axis],
                 seg.block.shape[plane.row_axis])
    cols = _span(plane.col_start, plane.col_sign, out.shape[1], seg.origin[plane.col_axis],
                 seg.block.shape[plane.col_axis])
    if rows is None or cols is None:
        return
    piece = cut[rows[1], cols[1]]
    target = out[rows[0], cols[0]]
    target[piece] = label


def _paint_lookup(out: np.ndarray, frame: FrameGeometry, to_index: np.ndarray,
                  segments: Sequence[BodySegment]) -> None:
    """A frame that is not a plane of the canonical grid: nearest canonical voxel of each pixel (float32)."""
    m = to_index[:3, :3].astype(np.float32)
    origin = (m @ frame.position.astype(np.float32) + to_index[:3, 3].astype(np.float32))
    d_row = m @ (frame.col_dir * frame.spacing[0]).astype(np.float32)
    d_col = m @ (frame.row_dir * frame.spacing[1]).astype(np.float32)
    r = np.arange(frame.rows, dtype=np.float32)[:, None]
    c = np.arange(frame.columns, dtype=np.float32)[None, :]
    index = [np.rint(origin[a] + r * d_row[a] + c * d_col[a]).astype(np.int64) for a in range(3)]
    for label, seg in enumerate(segments, start=1):
        local = [index[a] - seg.origin[a] for a in range(3)]
        inside = np.ones(out.shape, dtype=bool)
        for a in range(3):
            inside &= (local[a] >= 0) & (local[a] < seg.block.shape[a])
        if inside.any():
            hit = seg.block[local[0][inside], local[1][inside], local[2][inside]]
            values = out[inside]
            values[hit] = label
            out[inside] = values


def label_frames(study: Study, frames: Sequence[FrameGeometry], segments: Sequence[BodySegment]) -> np.ndarray:
    """Label map (n_frames, rows, columns), uint8: segment number ``n`` (1-based, order of ``segments``) where a
    source pixel lies in body ``n - 1``, 0 elsewhere."""
    to_index = np.linalg.inv(study.affine)
    out = np.zeros((len(frames), frames[0].rows, frames[0].columns), dtype=np.uint8)
    for f, frame in enumerate(frames):
        plane = frame_plane(frame, to_index)
        if plane is None:
            _paint_lookup(out[f], frame, to_index, segments)
            continue
        for label, seg in enumerate(segments, start=1):
            _paint_plane(out[f], plane, seg, label)
    return out


def _segment(number: int, seg: BodySegment, algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    item = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=f"{seg.level.name_label()} body"[:64],
        segmented_property_category=vc.ANATOMICAL_STRUCTURE,
        segmented_property_type=vc.VERTEBRAL_BODY,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id=f"Vertebral body {seg.level.level}",
        anatomic_regions=[vc.vertebra(seg.level.level)],
    )
    item.SegmentDescription = seg.description()
    return item


def coding_scheme_item() -> Dataset:
    """The Coding Scheme Identification item that declares the private scheme (SR and SEG)."""
    item = Dataset()
    item.CodingSchemeDesignator = vc.PRIVATE_SCHEME
    item.CodingSchemeName = vc.PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def build_seg(result: Result, study: Study, source: SourceSeries,
              segments: Sequence[BodySegment] | None = None) -> hd.seg.Segmentation | None:
    """The SEG of the delineated bodies (``segments``, measured here when not given), or None when there is none
    (the model found no level, or the measurement delineated no body)."""
    segments = body_segments(result, study) if segments is None else segments
    if not segments:
        return None
    labels = label_frames(study, source.frames, segments)
    if not labels.any():
        return None
    algorithm = hd.AlgorithmIdentificationSequence(
        name=result.model.name, version=result.model.version, family=vc.AI,
        parameters={"segment": "elliptic cylinder from inference.measure"},
    )
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(n, s, algorithm) for n, s in enumerate(segments, start=1)],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=result.model.name,
        software_versions=result.model.version,
        device_serial_number=result.model.sha256[:16] or "unknown",
        series_description=SEG_SERIES_DESCRIPTION,
        content_description="Vertebral bodies, approximate (elliptic cylinders)",
        content_label="VERTEBRAE",
    )
    seg.CodingSchemeIdentificationSequence = [coding_scheme_item()]
    return seg


def segment_numbers(seg: Dataset) -> dict[str, int]:
    """Level -> segment number of a SEG written by :func:`build_seg` (read from each segment's tracking ID)."""
    out = {}
    for item in seg.SegmentSequence:
        tracking = str(item.get("TrackingID", ""))
        if tracking.startswith("Vertebral body "):
            out[tracking.removeprefix("Vertebral body ")] = int(item.SegmentNumber)
    return out


def write_seg(result: Result, study: Study, source: SourceSeries, path: Path) -> Path | None:
    """Build the SEG and write it to ``path``; None (nothing written) when there is no body to segment."""
    seg = build_seg(result, study, source)
    if seg is None:
        return None
    seg.save_as(path, enforce_file_format=True)
    return path
