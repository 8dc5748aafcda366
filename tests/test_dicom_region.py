"""Reading only the model's region (``load_crop``) gives exactly the crop of the whole-volume path.

``inference.dicom.load_crop`` decodes only the slices ``spine_center`` samples and the crop's own rows and
columns, and thresholds stored values instead of HU; every encoding and orientation here must give a crop
identical, voxel for voxel, to ``spine_crop(load_study(...))``, and the header-value cache must not change
a single value pydicom reads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid as uids
import pytest
from pydicom import hooks as pydicom_hooks
from test_dicom_synth import Variant, phantom, write_series

from inference.crop import crop_volume, spine_crop
from inference.dicom import load_crop, load_study, region
from inference.dicom.archive import gather
from inference.dicom.limits import Limits
from inference.dicom.series import sorted_frames
from inference.dicom.valuecache import cached_raw_element_value, header_value
from inference.errors import InputError
from inference.spec import PreprocessSpec

SPEC = replace(PreprocessSpec(), crop_mm=(200.0, 100.0, 90.0))
"""Smaller than the test volume in-plane, so the crop is a strict sub-region (and padded along z)."""
VOL = phantom(nz=60, ny=180, nx=160)


def _same(folder: Path, z_centre_index: float | None = None) -> None:
    facts, crop = load_crop(folder, SPEC, z_centre_index=z_centre_index)
    study = load_study(folder)
    ref = spine_crop(study, SPEC, z_centre_index)
    assert crop.image.dtype == np.float32
    assert np.array_equal(crop.image, ref.image)
    assert (crop.start_index, crop.center_mm, crop.spacing_mm) == (ref.start_index, ref.center_mm, ref.spacing_mm)
    assert np.array_equal(facts.affine, study.affine)
    assert (facts.series_instance_uid, facts.age, facts.sex, facts.warnings) == (
        study.series_instance_uid, study.age, study.sex, study.warnings)


def _lazy(folder: Path) -> region.RegionVolume | None:
    with gather(folder, Limits()) as gathered:
        from inference.dicom import _choose, _scan

        scan = _scan(gathered, Limits())
        chosen = _choose(scan)
        assert chosen.stack is not None
        return region.region_volume(sorted_frames(chosen), chosen.stack)


def _rewrite(folder: Path, **attrs: object) -> None:
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for name, value in attrs.items():
            setattr(ds, name, value)
        ds.save_as(path)


@pytest.mark.parametrize("variant", [
    Variant(),
    Variant(slope=1.0, intercept=-1024.0),
    Variant(slope=0.5, intercept=-1024.0),
    Variant(slope=1.0, intercept=0.0, signed=True),
    Variant(slope=2.0, intercept=-2048.0),
    Variant(slope=0.37, intercept=-1000.5),
    Variant(transfer_syntax=uids.ImplicitVRLittleEndian),
    Variant(transfer_syntax=uids.RLELossless),
    Variant(transfer_syntax=uids.JPEG2000Lossless),
    Variant(transfer_syntax=uids.JPEG2000Lossless, slope=1.0, intercept=0.0, signed=True),
    Variant(transfer_syntax=uids.JPEGLSLossless, slope=0.5, intercept=-1024.0),
    Variant(transfer_syntax=uids.DeflatedExplicitVRLittleEndian),
], ids=["default", "slope1", "slope0.5", "signed", "slope2", "fractional", "implicit", "rle", "j2k", "j2k-signed",
        "jpegls-slope0.5", "deflated"])
def test_region_crop_equals_whole_volume_crop(tmp_path: Path, variant: Variant) -> None:
    write_series(tmp_path, VOL, variant)
    assert _lazy(tmp_path) is not None  # these all take the region path
    _same(tmp_path)
    _same(tmp_path, z_centre_index=5.0)  # mostly padding
    _same(tmp_path, z_centre_index=41.5)


@pytest.mark.parametrize("iop", [[-1, 0, 0, 0, -1, 0], [1, 0, 0, 0, -1, 0], [-1, 0, 0, 0, 1, 0]],
                         ids=["flip_yx", "flip_zy", "flip_zx"])
def test_flipped_axes(tmp_path: Path, iop: list[int]) -> None:
    write_series(tmp_path, VOL)
    _rewrite(tmp_path, ImageOrientationPatient=[float(v) for v in iop])
    assert _lazy(tmp_path) is not None
    _same(tmp_path)


def test_negative_slope_takes_the_table_rule(tmp_path: Path) -> None:
    """HU falling with the stored value: no single stored threshold exists, the boolean table is used."""
    write_series(tmp_path, VOL, Variant(slope=1.0, intercept=0.0, signed=True))
    for path in tmp_path.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PixelData = (-np.frombuffer(ds.PixelData, dtype="<i2")).astype("<i2").tobytes()
        ds.RescaleSlope = -1.0
        ds.save_as(path)
    _same(tmp_path)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_stored_12_with_junk_high_bits(tmp_path: Path, signed: bool) -> None:
    intercept = 1000.0 if signed else -1024.0  # stored values fit in 12 bits either way
    write_series(tmp_path, VOL, Variant(intercept=intercept, signed=signed))
    for i, path in enumerate(sorted(tmp_path.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        words = np.frombuffer(ds.PixelData, dtype="<u2") & np.uint16(0x0FFF)
        ds.PixelData = (words | np.uint16((i % 16) << 12)).tobytes()
        ds.BitsStored, ds.HighBit = 12, 11
        ds.save_as(path)
    _same(tmp_path)


@pytest.mark.parametrize("variant", [Variant(plane="sagittal"), Variant(plane="sagittal",
                                                                      transfer_syntax=uids.RLELossless)],
                         ids=["sagittal", "sagittal-rle"])
def test_other_series_use_the_whole_volume_path(tmp_path: Path, variant: Variant) -> None:
    write_series(tmp_path, VOL[:, :100, :90], variant)
    assert _lazy(tmp_path) is None
    _same(tmp_path)


@pytest.mark.parametrize("syntax", [uids.JPEG2000Lossless, uids.JPEGLSLossless, uids.RLELossless],
                         ids=["j2k", "jpegls", "rle"])
def test_compressed_series_decode_only_the_slices_used(tmp_path: Path, syntax: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """200 slices: the spine finder samples every third, the crop needs 50; each of those is decoded once, the
    others never, and the crop is the whole-volume one."""
    from inference.dicom import parse

    monkeypatch.setattr(parse, "DEFER_BYTES", 64)  # these tiny compressed slices are deferred like real ones
    write_series(tmp_path, phantom(nz=200, ny=64, nx=48), Variant(transfer_syntax=syntax))
    lazy = _lazy(tmp_path)
    assert lazy is not None
    study = load_study(tmp_path)
    crop = crop_volume(lazy, study.spacing_mm, SPEC)
    ref = spine_crop(study, SPEC)
    assert np.array_equal(crop.image, ref.image) and crop.start_index == ref.start_index
    sampled = set(range(0, 200, max(1, 200 // 64)))
    cropped = set(range(max(0, crop.start_index[0]), min(200, crop.start_index[0] + crop.image.shape[0])))
    assert sorted(lazy.decoded_slices) == sorted(sampled | cropped) and len(sampled | cropped) < 200
    assert set(lazy._decoded) == sampled - cropped  # a sampled slice the crop used was not kept any longer
    with gather(tmp_path, Limits()) as gathered:  # no decoded frame keeps its compressed bytes
        from inference.dicom import _choose, _scan

        chosen = _choose(_scan(gathered, Limits()))
        assert chosen.stack is not None
        frames = sorted_frames(chosen)
        again = region.region_volume(frames, chosen.stack)
        assert again is not None
        assert frames[5].ds.get_item(0x7FE00010, keep_deferred=True).value is None  # deferred
        again.above(5, (150.0,))
        assert again.decoded_slices == [5]
        assert frames[5].ds.get_item(0x7FE00010, keep_deferred=True).value is None  # deferred again


def test_compressed_slice_that_fails_refuses_as_the_whole_volume(tmp_path: Path) -> None:
    """A used slice that cannot be decoded: the same refusal, in the same words, either way."""
    paths = write_series(tmp_path, VOL, Variant(transfer_syntax=uids.JPEG2000Lossless))
    ds = pydicom.dcmread(paths[30])
    frames = pydicom.encaps.generate_fragmented_frames(ds.PixelData)
    fragment = b"".join(next(frames))
    ds.PixelData = pydicom.encaps.encapsulate([fragment[:40] + bytes(len(fragment) - 40)])
    ds.save_as(paths[30])
    with pytest.raises(InputError) as whole:
        load_study(tmp_path)
    with pytest.raises(InputError) as part:
        load_crop(tmp_path, SPEC)
    assert part.value.code == whole.value.code == "decode_failed"
    assert part.value.message == whole.value.message
    assert part.value.message.startswith("slice 31 of 60: ")


def test_decoder_type_other_than_the_header_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path, VOL, Variant(transfer_syntax=uids.RLELossless))
    real = region.decode_frame

    def widened(frame: object) -> np.ndarray:
        return real(frame).astype(np.int32)  # type: ignore[arg-type]

    monkeypatch.setattr(region, "decode_frame", widened)
    _same(tmp_path)


def test_pixel_data_not_where_the_header_says_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path, VOL)

    def moved(self: region.RegionVolume, s: int, r0: int, r1: int) -> np.ndarray:
        raise region.NotNativeError("moved")

    monkeypatch.setattr(region.RegionVolume, "_words", moved)
    _same(tmp_path)


def test_region_slices_match_the_volume(tmp_path: Path) -> None:
    write_series(tmp_path, VOL, Variant(slope=0.5, intercept=-1024.0))
    _rewrite(tmp_path, ImageOrientationPatient=[-1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    lazy = _lazy(tmp_path)
    assert lazy is not None
    volume = load_study(tmp_path).volume
    assert lazy.shape == volume.shape
    for key in [(slice(None),), (slice(None, None, 7),), (slice(3, 50), slice(20, 90), slice(10, 150)),
                (slice(50, 3, -2), slice(None, None, 3), slice(100, 20, -1)), (slice(70, 80),)]:
        assert np.array_equal(lazy[key], volume[key]), key
    for k in (0, 17, 59):
        for mask, t in zip(lazy.above(k, (-400.0, 150.0, 1e9, -1e9)), (-400.0, 150.0, 1e9, -1e9), strict=True):
            assert np.array_equal(mask, volume[k] > t), (k, t)
    with pytest.raises(TypeError):
        lazy[3]  # type: ignore[index]


def _values(path: Path) -> dict[int, object]:
    ds = pydicom.dcmread(path, force=True)
    out: dict[int, object] = {}
    for elem in ds.iterall():
        try:
            out[int(elem.tag)] = (elem.VR, str(elem.value))
        except Exception as exc:  # the same failure must happen both ways
            out[int(elem.tag)] = type(exc).__name__
    return out


def test_value_cache_changes_no_value() -> None:
    """Every element of pydicom's test files reads the same with and without the memoised conversion."""
    from pydicom.data import get_testdata_files

    files = [Path(p) for p in get_testdata_files("*.dcm")][:80]
    assert files
    pydicom_hooks.hooks.register_callback("raw_element_value", pydicom_hooks.raw_element_value)
    try:
        plain = {p: _values(p) for p in files}
    finally:
        pydicom_hooks.hooks.register_callback("raw_element_value", cached_raw_element_value)
    for _ in range(2):  # the second pass reads from the cache
        assert {p: _values(p) for p in files} == plain


def test_header_value_is_ds_get(tmp_path: Path) -> None:
    write_series(tmp_path, VOL[:4], Variant(slope=0.5, intercept=-1024.0))
    keywords = ["Rows", "Columns", "BitsStored", "RescaleSlope", "RescaleIntercept", "SeriesInstanceUID",
                "ImageType", "PatientAge", "PixelSpacing", "InstanceNumber", "NoSuchKeyword", "WindowCenter"]
    for path in tmp_path.glob("*.dcm"):
        fast, ref = pydicom.dcmread(path, defer_size=4096), pydicom.dcmread(path, defer_size=4096)
        for _ in range(2):
            for kw in keywords:
                assert header_value(fast, kw, "dflt") == ref.get(kw, "dflt"), kw
        assert str(header_value(fast.file_meta, "TransferSyntaxUID")) == str(ref.file_meta.TransferSyntaxUID)
