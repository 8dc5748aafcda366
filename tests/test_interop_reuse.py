"""The reports reuse the headers the reader already parsed, and write the same files as when they parse the source
again (after normalising generated UIDs, UUIDs and dates: ``normalise``).

Before issue 20 ``write_reports`` read every header of the scored series back from the source; now a study read
from DICOM keeps its parsed headers (``Study.source_frames``) and the reports use them. Both paths are run here on
the same result, for every transfer syntax family the reader has a different path for, and compared file by file.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from normalise import report_folder
from test_dicom_synth import Variant, phantom, write_series
from test_interop_support import Scored, make_result

from inference.dicom import load_study
from inference.dicom.limits import Limits
from inference.study import Study
from interop import source as source_mod
from interop.reports import FORMATS, write_reports

pytest_plugins = ["test_interop_support"]

SYNTAXES = {
    "explicit": pydicom.uid.ExplicitVRLittleEndian,
    "implicit": pydicom.uid.ImplicitVRLittleEndian,
    "j2k": pydicom.uid.JPEG2000Lossless,
    "rle": pydicom.uid.RLELossless,
}


def _rewrite(src: Path, dest: Path, syntax: str) -> Path:
    """The study's files re-encoded in ``syntax`` (same headers, same pixels)."""
    dest.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        uid = SYNTAXES[syntax]
        if uid.is_compressed:
            ds.compress(uid, encoding_plugin="pylibjpeg" if syntax != "rle" else "")
            ds.save_as(dest / path.name, enforce_file_format=True)
        else:
            ds.file_meta.TransferSyntaxUID = uid
            ds.save_as(dest / path.name, enforce_file_format=True, implicit_vr=syntax == "implicit")
    return dest


@pytest.fixture(scope="module", params=sorted(SYNTAXES))
def encoded(request: pytest.FixtureRequest, scored: Scored, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """The interop study re-encoded in each syntax, read again, with the same hand-made result."""
    folder = _rewrite(scored.source, tmp_path_factory.mktemp(request.param) / "study", request.param)
    study = load_study(folder)
    return Scored(folder, study, make_result(study, scored.truth, absent=("L4",)), scored.truth)


def _both(case: Scored, source: Path | list[Path], tmp_path: Path) -> tuple[dict, dict]:
    reused = write_reports(case.result, case.study, source, tmp_path / "reused")
    parsed = write_reports(case.result, replace(case.study, source_frames=()), source, tmp_path / "parsed")
    assert set(reused) == set(parsed) and set(reused) >= set(FORMATS) - {"seg"}
    return report_folder(tmp_path / "reused", case.source), report_folder(tmp_path / "parsed", case.source)


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("the headers were read from the files again")


def test_reused_headers_write_the_same_reports(encoded: Scored, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(encoded.study.source_frames) == encoded.study.n_source_slices
    with monkeypatch.context() as patch:  # the reuse path reads no header back
        patch.setattr(source_mod, "read_source_series", _fail)
        reused = write_reports(encoded.result, encoded.study, encoded.source, tmp_path / "reused")
    parsed = write_reports(encoded.result, replace(encoded.study, source_frames=()), encoded.source,
                           tmp_path / "parsed")
    assert set(reused) == set(parsed) == set(FORMATS)
    assert report_folder(tmp_path / "reused", encoded.source) == report_folder(tmp_path / "parsed", encoded.source)


def test_a_list_of_files_reuses_the_headers(scored: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(scored.source.iterdir())
    monkeypatch.setattr(source_mod, "read_source_series", _fail)
    assert len(source_mod.study_source_series(scored.study, files).datasets) == scored.study.n_source_slices
    monkeypatch.undo()
    reused, parsed = _both(scored, files, tmp_path)
    assert reused == parsed


def test_a_zip_is_read_again_and_writes_the_same(scored: Scored, tmp_path: Path) -> None:
    """A zip's members were extracted to a folder that is gone: its headers are read from the zip again."""
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(scored.source.iterdir()):
            zf.write(path, f"dicom/{path.name}")
    study = load_study(archive)
    assert study.source_frames and not source_mod._holds(archive, study.source_frames[0].path)
    case = Scored(scored.source, study, make_result(study, scored.truth, absent=("L4",)), scored.truth)
    reused, parsed = _both(case, archive, tmp_path)
    assert reused == parsed


def test_another_source_is_still_refused(scored: Scored, interop_cohort: Path, tmp_path: Path) -> None:
    """Headers kept from one folder are not used for another: that source is read, and refused."""
    from inference.errors import InputError

    with pytest.raises(InputError) as err:
        write_reports(scored.result, scored.study, interop_cohort / "studies" / "S00000", tmp_path, formats=("sr",))
    assert err.value.code == "source_mismatch"


def test_kept_headers_need_no_file(tmp_path: Path) -> None:
    """A long value pydicom defers (read from the file on first use) is read while the files exist: a zip's
    extracted members are gone once the study is read, and the kept headers still give every value."""
    folder = tmp_path / "s"
    write_series(folder, phantom(nz=24, ny=16, nx=16), Variant(transfer_syntax=pydicom.uid.ImplicitVRLittleEndian))
    comment = "x" * 6000  # beyond the reader's 4096-byte deferral threshold
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageComments = comment
        ds.save_as(path, implicit_vr=True)
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    shutil.rmtree(folder)
    study = load_study(archive, limits=Limits(min_extent_mm=0.0))
    assert not study.source_frames[0].path.exists()
    for frame in study.source_frames:
        assert frame.ds.ImageComments == comment
        assert all(tag not in frame.ds for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009))  # pixel data dropped
    series = source_mod.series_from_frames(study.source_frames)
    assert len(series.datasets) == 24
    assert np.allclose([g.position[2] for g in series.frames], sorted(g.position[2] for g in series.frames))


def test_series_from_frames_is_read_source_series(scored: Scored) -> None:
    """The same headers, in the same order, with the same geometry, either way."""
    kept = source_mod.series_from_frames(scored.study.source_frames)
    read = source_mod.read_source_series(scored.source, scored.study.series_instance_uid)
    assert [d.SOPInstanceUID for d in kept.datasets] == [d.SOPInstanceUID for d in read.datasets]
    for a, b in zip(kept.frames, read.frames, strict=True):
        assert np.array_equal(a.position, b.position) and a.spacing == b.spacing
    for a, b in zip(kept.datasets, read.datasets, strict=True):
        assert {e.keyword: str(e.value) for e in a} == {e.keyword: str(e.value) for e in b}


def test_study_without_kept_headers_reads_them(scored: Scored) -> None:
    bare: Study = replace(scored.study, source_frames=())
    series = source_mod.study_source_series(bare, scored.source)
    assert len(series.datasets) == scored.study.n_source_slices



def test_spine_column_is_found_once_per_study(scored: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key image, its level marks and the SEG's boxes share one search of the spine column per study."""
    from interop import spine

    calls: list[int] = []
    real = spine._find_column

    def counted(study: Study) -> tuple[float, float]:
        calls.append(1)
        return real(study)

    monkeypatch.setattr(spine, "_find_column", counted)
    monkeypatch.setattr(spine, "_COLUMN", spine._LastStudy())
    write_reports(scored.result, scored.study, scored.source, tmp_path, formats=("seg", "pdf"))
    assert len(calls) == 1
    other = replace(scored.study, volume=scored.study.volume.copy())  # another study: searched again
    assert spine.spine_column(other) == real(scored.study) and len(calls) == 2


def test_bone_count_is_the_mask_sum(scored: Scored) -> None:
    """The column search counts bone slice by slice: the same counts as the volume-sized mask summed."""
    from interop import spine

    volume = scored.study.volume
    np.testing.assert_array_equal(spine.bone_count(volume), (volume > spine.BONE_HU).sum(axis=0))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_one_pass_count_and_mean_are_the_two_passes(scored: Scored, dtype: str) -> None:
    """The column search reads the volume once for the bone count and the mean image (issue 20): the same
    count as :func:`bone_count` and the same mean as numpy's, bit for bit, on the study and on noise."""
    from interop import spine

    rng = np.random.default_rng(20)
    for volume in (scored.study.volume.astype(dtype), rng.normal(0.0, 600.0, (301, 37, 53)).astype(dtype)):
        count, mean = spine.bone_count_and_mean(volume)
        np.testing.assert_array_equal(count, spine.bone_count(volume))
        assert mean.dtype == volume.mean(axis=0).dtype
        np.testing.assert_array_equal(mean, volume.mean(axis=0))
        assert mean.tobytes() == volume.mean(axis=0).tobytes()


def test_kept_column_searches_write_the_same_reports(scored: Scored, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The reports written with every column search done afresh equal those written with the searches the
    scoring (crop, measurement) and an earlier report already did, kept (issue 20's speed-up changes no file)."""
    from inference import crop
    from interop import spine

    monkeypatch.setattr(crop, "_LAST", crop._LastVolume())
    monkeypatch.setattr(spine, "_COLUMN", spine._LastStudy())
    write_reports(scored.result, scored.study, scored.source, tmp_path / "cold")
    write_reports(scored.result, scored.study, scored.source, tmp_path / "kept")
    assert report_folder(tmp_path / "cold", scored.source) == report_folder(tmp_path / "kept", scored.source)


def test_released_tables_are_read_again(scored: Scored, tmp_path: Path) -> None:
    """``vfrisk predict --out`` frees highdicom's tables of the standard after its reports; a later report in
    the same process reads them again and writes the same files."""
    from highdicom._standard_utils import get_module_attribute_map

    from interop.reports import release_tables

    write_reports(scored.result, scored.study, scored.source, tmp_path / "before")
    assert get_module_attribute_map.cache_info().currsize == 1
    release_tables()
    assert get_module_attribute_map.cache_info().currsize == 0
    write_reports(scored.result, scored.study, scored.source, tmp_path / "after")
    assert report_folder(tmp_path / "before", scored.source) == report_folder(tmp_path / "after", scored.source)


def test_reports_are_written_with_the_old_objects_frozen(scored: Scored, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """While the reports are written the objects that existed before are out of the collector's scans
    (``gc.freeze``); afterwards nothing stays frozen, and the collector is on as before."""
    import gc

    from interop import reports

    frozen: list[int] = []
    real = reports._Writers.json

    def json(self: reports._Writers, path: Path) -> Path:
        frozen.append(gc.get_freeze_count())
        return real(self, path)

    monkeypatch.setattr(reports._Writers, "json", json)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    write_reports(scored.result, scored.study, scored.source, tmp_path)
    assert frozen and frozen[0] > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_module_index_is_that_of_the_installed_highdicom() -> None:
    """The committed index of highdicom's module table (``interop.standard_table``) is derived again from the
    installed file: an upgrade of highdicom fails here until the index is rebuilt."""
    import json

    from interop import standard_table as st

    source = st.source_file()
    assert source is not None and st.matches()
    assert st.derive_index(source) == json.loads(st.INDEX.read_text())["modules"]
    full = json.loads(source.read_text())
    table = st.LazyModuleTable(source, st.derive_index(source))
    assert list(table) == list(full) and len(table) == len(full)
    for key in ("patient", "general-study", "segmentation-image", "enhanced-general-equipment"):
        assert key in table and table[key] == full[key]
    assert "no-such-module" not in table
    with pytest.raises(KeyError):
        table["no-such-module"]


def test_reports_with_the_table_read_by_module_equal_those_with_the_whole_table(
        scored: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """highdicom given its table one module at a time writes the same SR, SEG and DICOM PDF and key image as
    with its own whole table (after normalising UIDs and dates)."""
    import highdicom._standard_utils as hd_standard

    from interop import standard_table as st

    lazy = write_reports(scored.result, scored.study, scored.source, tmp_path / "lazy")
    assert hd_standard.get_module_attribute_map is st._lazy_table  # the reports put it in place
    st.use_full_table()
    monkeypatch.setattr(st, "use_lazy_table", lambda: False)  # as with another highdicom: its whole table
    try:
        whole = write_reports(scored.result, scored.study, scored.source, tmp_path / "whole")
        assert hd_standard.get_module_attribute_map is not st._lazy_table
        assert len(hd_standard.get_module_attribute_map()) == len(st._lazy_table())
    finally:
        monkeypatch.undo()
    assert set(lazy) == set(whole) and {"sr", "seg", "encapsulated_pdf", "key_image"} <= set(lazy)
    assert report_folder(tmp_path / "lazy", scored.source) == report_folder(tmp_path / "whole", scored.source)


def test_memoised_iod_lookup_answers_as_highdicom_and_writes_the_same_reports(
        scored: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """highdicom's ``is_attribute_in_iod`` answered from a memo (``interop.standard_table``) gives highdicom's own
    answers, and the reports written with it equal those written without it (after normalising UIDs and dates)."""
    import highdicom._standard_utils as hd_standard

    from interop import standard_table as st

    memo = write_reports(scored.result, scored.study, scored.source, tmp_path / "memo")
    lookup = hd_standard.is_attribute_in_iod
    assert getattr(lookup, "memoised", False)
    original = st._SAVED["iod_lookup"]
    for sop_class in (pydicom.uid.CTImageStorage, pydicom.uid.SegmentationStorage,
                      pydicom.uid.Comprehensive3DSRStorage, pydicom.uid.EnhancedCTImageStorage):
        for attribute in ("PerFrameFunctionalGroupsSequence", "NumberOfFrames", "ContentDate", "PixelData"):
            for exclude in (None, ["IconImageSequence"]):
                assert lookup(attribute, sop_class, exclude) == original(attribute, sop_class, exclude)
    with pytest.raises(KeyError):
        lookup("PixelData", "1.2.3.4")
    st.use_plain_iod_lookup()
    monkeypatch.setattr(st, "use_memoised_iod_lookup", lambda: False)  # as with a highdicom without it
    try:
        plain = write_reports(scored.result, scored.study, scored.source, tmp_path / "plain")
        assert hd_standard.is_attribute_in_iod is original
    finally:
        monkeypatch.undo()
        st.use_memoised_iod_lookup()
    assert set(plain) == set(memo) and {"sr", "seg", "encapsulated_pdf", "key_image"} <= set(memo)
    assert report_folder(tmp_path / "memo", scored.source) == report_folder(tmp_path / "plain", scored.source)


def test_save_dicom_writes_what_pydicom_writes(scored: Scored, tmp_path: Path) -> None:
    """The DICOM reports are saved with the ambiguous-VR correction run once (issue 20): each file is byte for
    byte what ``save_as`` writes of the same object, SEG, SR, Encapsulated PDF and key image."""
    import copy

    from interop.encapsulated import build_encapsulated_pdf
    from interop.keyimage import build_key_image
    from interop.reports import save_dicom
    from interop.seg import body_segments, build_seg
    from interop.source import study_source_series
    from interop.sr import build_sr

    source = study_source_series(scored.study, scored.source)
    bodies = body_segments(scored.result, scored.study)
    seg = build_seg(scored.result, scored.study, source, bodies)
    assert seg is not None
    made = {"seg": seg, "sr": build_sr(scored.result, source, seg),
            "encapsulated_pdf": build_encapsulated_pdf(scored.result, source, b"%PDF-1.4\n%%EOF\n"),
            "key_image": build_key_image(scored.result, scored.study, source, bodies)}
    for name, ds in made.items():
        twin = copy.deepcopy(ds)
        save_dicom(ds, tmp_path / f"{name}.dcm")
        twin.save_as(tmp_path / f"{name}.plain.dcm", enforce_file_format=True)
        assert (tmp_path / f"{name}.dcm").read_bytes() == (tmp_path / f"{name}.plain.dcm").read_bytes(), name
