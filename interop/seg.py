"""DICOM Segmentation of the vertebral levels the model found, aligned with the scored series (highdicom).

No voxel mask comes out of the model, so each level is a box (see :mod:`interop.spine`): the level's slab
around the vertebra in front of the spine column found in the volume. The boxes are drawn into the frames of
the *source* series (each source pixel is mapped to the canonical volume through the study's affine), so the
SEG shares the source's frame of reference and frames whatever the acquisition plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np

from inference.findings import Vertebra as LevelFinding
from inference.study import Study
from interop import codes as vc
from interop.source import FrameGeometry, SourceSeries
from interop.spine import LevelBox, box_mask, level_boxes
from vfrisk.result import Result

MANUFACTURER = "vfrisk"
SEG_SERIES_NUMBER = 9902
SEG_SERIES_DESCRIPTION = "vfrisk vertebral levels (boxes)"


def segmentable_levels(result: Result) -> list[LevelFinding]:
    """Levels found by the model that have a position and a SNOMED CT vertebra code."""
    return [v for v in result.found_levels() if v.level in vc.LEVELS]


def _segment(number: int, level: str, algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=level,
        segmented_property_category=vc.ANATOMICAL_STRUCTURE,
        segmented_property_type=vc.vertebra(level),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id=f"Vertebra {level}",
    )


def label_frames(study: Study, frames: Sequence[FrameGeometry], boxes: Sequence[LevelBox]) -> np.ndarray:
    """Label map (n_frames, rows, columns), uint8: segment number ``n`` (1-based, order of ``boxes``) where a
    source pixel centre falls in box ``n - 1``, 0 elsewhere.
    """
    to_index = np.linalg.inv(study.affine)
    rows, cols = frames[0].rows, frames[0].columns
    out = np.zeros((len(frames), rows, cols), dtype=np.uint8)
    for f, frame in enumerate(frames):
        lps = frame.pixel_lps()
        index = lps @ to_index[:3, :3].T + to_index[:3, 3]
        for n, box in enumerate(boxes, start=1):
            out[f][box_mask(box, index)] = n
    return out


def build_seg(result: Result, study: Study, source: SourceSeries) -> hd.seg.Segmentation | None:
    """The SEG of the found levels, or None when the model found none."""
    levels = segmentable_levels(result)
    if not levels:
        return None
    boxes = level_boxes(study, [(v.level, float(v.z_mm or 0.0)) for v in levels])
    labels = label_frames(study, source.frames, boxes)
    if not labels.any():
        return None
    algorithm = hd.AlgorithmIdentificationSequence(
        name=result.model.name, version=result.model.version, family=vc.AI
    )
    return hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(n, v.level, algorithm) for n, v in enumerate(levels, start=1)],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=result.model.name,
        software_versions=result.model.version,
        device_serial_number=result.model.sha256[:16] or "unknown",
        series_description=SEG_SERIES_DESCRIPTION,
        content_description="Vertebral levels as boxes",
        content_label="VERTEBRAE",
    )


def write_seg(result: Result, study: Study, source: SourceSeries, path: Path) -> Path | None:
    """Build the SEG and write it to ``path``; None (nothing written) when there is no level to segment."""
    seg = build_seg(result, study, source)
    if seg is None:
        return None
    seg.save_as(path, enforce_file_format=True)
    return path
