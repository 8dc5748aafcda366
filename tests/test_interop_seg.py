"""DICOM SEG of the vertebral bodies: validator, alignment with the source series, bodies on the synthetic truth,
segment descriptions, and the sliced frames against a voxel-by-voxel look-up."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from test_interop_support import LEVELS, Scored, dciodvfy_errors, make_result, truth_rows

from inference.dicom import load_study
from interop import codes as vc
from interop.seg import _paint_lookup, body_segments, build_seg, frame_plane, label_frames
from interop.source import read_source_series

pytest_plugins = ["test_interop_support"]


def test_dciodvfy_reports_no_error(reports: dict[str, Path]) -> None:
    assert dciodvfy_errors(reports["seg"]) == []


def test_segments_are_delineated_bodies_with_codes_and_a_description(reports: dict[str, Path],
                                                                      scored: Scored) -> None:
    seg = hd.seg.segread(reports["seg"])
    present = [v.level for v in scored.result.vertebrae if v.present]
    segmented = [s.TrackingID.removeprefix("Vertebral body ") for s in seg.SegmentSequence]
    assert len(segmented) >= 4 and set(segmented) <= set(present)  # T12-L3 delineated on this phantom at least
    assert segmented == [lv for lv in present if lv in segmented]  # the result's order
    for item, level in zip(seg.SegmentSequence, segmented, strict=True):
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == vc.VERTEBRAL_BODY.value
        assert item.AnatomicRegionSequence[0].CodeValue == vc.vertebra(level).value
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentLabel.startswith(level)
        assert "elliptic cylinder" in item.SegmentDescription and "not a voxel-wise" in item.SegmentDescription
    (scheme,) = seg.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == vc.PRIVATE_SCHEME


def test_seg_shares_frame_of_reference_and_study(reports: dict[str, Path], scored: Scored) -> None:
    seg = pydicom.dcmread(reports["seg"])
    source = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.PatientID == source.PatientID
    (ref,) = seg.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == scored.result.to_json()["series_instance_uid"]


def _pixel(frame: object, point: np.ndarray) -> tuple[int, int]:
    col = round(float(np.dot(point - frame.position, frame.row_dir)) / frame.spacing[1])  # type: ignore[attr-defined]
    row = round(float(np.dot(point - frame.position, frame.col_dir)) / frame.spacing[0])  # type: ignore[attr-defined]
    return row, col


def test_truth_body_centre_is_in_its_segment_and_the_discs_are_not(reports: dict[str, Path], scored: Scored) -> None:
    """The generator's body centre lies in the level's segment; halfway between two bodies (the disc) lies in none
    where both bodies have both neighbours found (an end level's far endplate is searched without a neighbour and
    may overshoot: the measurement's limit, shown as it is)."""
    seg = hd.seg.segread(reports["seg"])
    source = read_source_series(scored.source, scored.result.series_instance_uid)
    z = np.asarray([float(f.position[2]) for f in source.frames])
    numbers = {s.TrackingID.removeprefix("Vertebral body "): int(s.SegmentNumber) for s in seg.SegmentSequence}
    for level, number in numbers.items():
        point = np.array([float(scored.truth[f"{level}_{a}_mm"]) for a in "xyz"])
        f = int(np.argmin(np.abs(z - point[2])))
        pixels = seg.get_pixels_by_source_instance([source.datasets[f].SOPInstanceUID], segment_numbers=[number])
        assert pixels[(0, *_pixel(source.frames[f], point), 0)], level
    interior = {b for a, b, c in zip(LEVELS, LEVELS[1:], LEVELS[2:], strict=False) if {a, b, c} <= set(numbers)}
    checked = 0
    for upper, lower in pairwise(LEVELS):
        if upper not in interior or lower not in interior:
            continue
        checked += 1
        disc = np.mean([[float(scored.truth[f"{lv}_{a}_mm"]) for a in "xyz"] for lv in (upper, lower)], axis=0)
        f = int(np.argmin(np.abs(z - disc[2])))
        labels = label_frames(scored.study, [source.frames[f]], body_segments(scored.result, scored.study))
        assert labels[(0, *_pixel(source.frames[f], disc))] == 0, (upper, lower)
    assert checked >= 1


def test_body_volume_is_that_of_a_vertebral_body(scored: Scored) -> None:
    """Each segment is body-sized (adult lumbar body 20-60 cm3), not the 54 x 93 mm box of a whole level."""
    sz, sy, sx = scored.study.spacing_mm
    for seg in body_segments(scored.result, scored.study):
        volume_cm3 = seg.block.sum() * sz * sy * sx / 1000
        assert 5 < volume_cm3 < 80, (seg.level.level, volume_cm3)
        width_mm = (seg.region.columns[1] - seg.region.columns[0]) * sx
        assert width_mm < 54, seg.level.level


def test_no_found_level_gives_no_seg(scored: Scored) -> None:
    result = make_result(scored.study, scored.truth, absent=LEVELS)
    source = read_source_series(scored.source, scored.study.series_instance_uid)
    assert build_seg(result, scored.study, source) is None


def test_sagittal_source_series_sliced_like_the_lookup(tiny_cohort: Path) -> None:
    """A sagittal series: its frames are planes of the canonical grid, sliced; the slicing agrees voxel for voxel
    with the nearest-voxel look-up that tilted series need."""
    truth = truth_rows(tiny_cohort)
    name = next(k for k, row in truth.items() if row["orientation"] == "sagittal")
    study = load_study(tiny_cohort / name)
    result = make_result(study, truth[name])
    source = read_source_series(tiny_cohort / name, study.series_instance_uid)
    assert abs(source.frames[0].row_dir[1]) > 0.9  # sagittal frames: rows run anterior-posterior
    to_index = np.linalg.inv(study.affine)
    assert all(frame_plane(f, to_index) is not None for f in source.frames)
    segments = body_segments(result, study)
    assert len(segments) >= 3
    sliced = label_frames(study, source.frames, segments)
    looked_up = np.zeros_like(sliced)
    for f, frame in enumerate(source.frames):
        _paint_lookup(looked_up[f], frame, to_index, segments)
    assert sliced.any() and np.array_equal(sliced, looked_up)
    seg = build_seg(result, study, source)
    assert seg is not None and seg.number_of_segments == len(segments)


@pytest.mark.parametrize("index", range(6))
def test_every_truth_centre_falls_in_its_body_block(tiny_cohort: Path, index: int) -> None:
    name = f"studies/S{index:05d}"
    row = truth_rows(tiny_cohort)[name]
    study = load_study(tiny_cohort / name)
    to_index = np.linalg.inv(study.affine)
    segments = body_segments(make_result(study, row), study)
    assert segments, name
    for seg in segments:
        point = [float(row[f"{seg.level.level}_{a}_mm"]) for a in "xyz"]
        k, j, i = np.rint((to_index @ np.array([*point, 1.0]))[:3]).astype(int) - np.asarray(seg.origin)
        inside = all(0 <= v < n for v, n in zip((k, j, i), seg.block.shape, strict=True))
        assert inside and seg.block[k, j, i], (name, seg.level.level)


def test_label_frames_marks_each_body_once(scored: Scored) -> None:
    source = read_source_series(scored.source, scored.study.series_instance_uid)
    segments = body_segments(scored.result, scored.study)
    labels = label_frames(scored.study, source.frames, segments)
    assert set(np.unique(labels)) == set(range(len(segments) + 1))
    for n, seg in enumerate(segments, start=1):  # no pixel outside the body's block
        assert (labels == n).sum() <= seg.block.sum()
