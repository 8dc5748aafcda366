"""DICOM SEG of the level boxes: validator, alignment with the source series, boxes on the synthetic truth."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from test_interop_support import LEVELS, Scored, dciodvfy_errors, make_result, truth_rows

from inference.dicom import load_study
from interop import codes as vc
from interop.seg import build_seg, label_frames
from interop.source import read_source_series
from interop.spine import box_mask, level_boxes

pytest_plugins = ["test_interop_support"]


def test_dciodvfy_reports_no_error(reports: dict[str, Path]) -> None:
    assert dciodvfy_errors(reports["seg"]) == []


def test_segments_are_the_found_levels_with_snomed_codes(reports: dict[str, Path], scored: Scored) -> None:
    seg = hd.seg.segread(reports["seg"])
    present = [v["level"] for v in scored.result.to_json()["vertebrae"] if v["present"]]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == present
    for item, level in zip(seg.SegmentSequence, present, strict=True):
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == vc.vertebra(level).value
        assert item.SegmentAlgorithmType == "AUTOMATIC"


def test_seg_shares_frame_of_reference_and_study(reports: dict[str, Path], scored: Scored) -> None:
    seg = pydicom.dcmread(reports["seg"])
    source = pydicom.dcmread(next(scored.source.iterdir()), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.PatientID == source.PatientID
    (ref,) = seg.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == scored.result.to_json()["series_instance_uid"]


def test_truth_centre_of_each_level_is_labelled_in_its_source_slice(reports: dict[str, Path], scored: Scored) -> None:
    seg = hd.seg.segread(reports["seg"])
    source = read_source_series(scored.source, scored.result.to_json()["series_instance_uid"])
    present = [v["level"] for v in scored.result.to_json()["vertebrae"] if v["present"]]
    for number, level in enumerate(present, start=1):
        point = np.array([float(scored.truth[f"{level}_{a}_mm"]) for a in "xyz"])
        z = [float(f.position[2]) for f in source.frames]
        f = int(np.argmin(np.abs(np.asarray(z) - point[2])))
        frame = source.frames[f]
        col = round(float(np.dot(point - frame.position, frame.row_dir)) / frame.spacing[1])
        row = round(float(np.dot(point - frame.position, frame.col_dir)) / frame.spacing[0])
        sop = source.datasets[f].SOPInstanceUID
        pixels = seg.get_pixels_by_source_instance([sop], segment_numbers=[number], combine_segments=False)
        assert pixels[0, row, col, 0], level


def test_no_found_level_gives_no_seg(scored: Scored) -> None:
    result = make_result(scored.study, scored.truth, absent=LEVELS)
    source = read_source_series(scored.source, scored.study.series_instance_uid)
    assert build_seg(result, scored.study, source) is None


def test_sagittal_source_series(tiny_cohort: Path) -> None:
    truth = truth_rows(tiny_cohort)
    name = next(k for k, row in truth.items() if row["orientation"] == "sagittal")
    study = load_study(tiny_cohort / name)
    result = make_result(study, truth[name])
    source = read_source_series(tiny_cohort / name, study.series_instance_uid)
    assert abs(source.frames[0].row_dir[1]) > 0.9  # sagittal frames: rows run anterior-posterior
    seg = build_seg(result, study, source)
    assert seg is not None and seg.number_of_segments == len(LEVELS)


@pytest.mark.parametrize("index", range(6))
def test_every_truth_centre_falls_in_its_level_box(tiny_cohort: Path, index: int) -> None:
    name = f"studies/S{index:05d}"
    row = truth_rows(tiny_cohort)[name]
    study = load_study(tiny_cohort / name)
    boxes = level_boxes(study, [(lv, float(row[f"{lv}_z_mm"])) for lv in LEVELS])
    to_index = np.linalg.inv(study.affine)
    for box in boxes:
        point = [float(row[f"{box.level}_{a}_mm"]) for a in "xyz"]
        index_kji = (to_index @ np.array([*point, 1.0]))[:3]
        assert box_mask(box, index_kji[None])[0], (name, box.level)


def test_label_frames_marks_nothing_outside_the_boxes(scored: Scored) -> None:
    source = read_source_series(scored.source, scored.study.series_instance_uid)
    boxes = level_boxes(scored.study, [(lv, float(scored.truth[f"{lv}_z_mm"])) for lv in ("L1", "L2")])
    labels = label_frames(scored.study, source.frames, boxes)
    assert set(np.unique(labels)) == {0, 1, 2}
    # the slabs do not overlap: no frame holds both labels at the level centres' distance
    frames_with = [{int(v) for v in np.unique(frame)} - {0} for frame in labels]
    assert not any(len(s) > 1 for s in frames_with)
