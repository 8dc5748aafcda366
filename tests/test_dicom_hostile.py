"""Hostile inputs are refused with their reason code, without a traceback, a stray file or memory blow-up."""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_dicom_synth import Variant, phantom, write_series

from inference.dicom import Limits, inspect_study, load_study
from inference.errors import InputError

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_temp_dirs_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test leaves no private extraction folder behind (in a temp root of its own, so that other
    processes on the machine cannot make the check flaky)."""
    root = tmp_path / "private-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield
    assert not list(root.glob("vfrisk-dicom-*"))


def _refused(source: object, code: str, limits: Limits | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        load_study(source, limits=limits)  # type: ignore[arg-type]
    assert info.value.code == code, info.value.one_line()
    assert "\n" not in info.value.message
    return info.value


def _series_zip(tmp_path: Path, extra: dict[str, bytes]) -> Path:
    paths = write_series(tmp_path / "s", phantom(nz=4, ny=16, nx=16), Variant())
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
        for name, data in extra.items():
            zf.writestr(name, data)
    return archive


@pytest.mark.parametrize(
    "member", ["../../escaped.dcm", "/tmp/abs_escaped.dcm", "a/../../escaped.dcm", "C:\\x.dcm"]
)
def test_zip_member_escaping_the_folder_is_refused(tmp_path: Path, member: str) -> None:
    archive = _series_zip(tmp_path / "z", {member: b"x" * 200})
    _refused(archive, "unsafe_archive")
    assert not (tmp_path / "escaped.dcm").exists()
    assert not Path("/tmp/abs_escaped.dcm").exists()
    assert not (Path(tempfile.gettempdir()).parent / "escaped.dcm").exists()


def test_zip_bomb_is_refused_before_extraction(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("slice.dcm", "w") as fp:
        chunk = bytes(MIB)
        for _ in range(64):
            fp.write(chunk)
    assert archive.stat().st_size < MIB
    tracemalloc.start()
    _refused(archive, "unsafe_archive")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * MIB


def test_zip_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    archive = _series_zip(tmp_path, {})
    _refused(archive, "unsafe_archive", Limits(max_total_bytes=2048))


def test_too_many_files_is_refused(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i}").write_bytes(b"x")
    _refused(tmp_path, "too_large", Limits(max_files=10))


def _deflated_file(path: Path, inflated_size: int) -> None:
    """A Deflated Explicit VR LE file whose dataset inflates to ``inflated_size`` bytes of an OB element."""
    uid = b"1.2.840.10008.1.2.1.99\x00"
    ts = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    meta = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(ts)) + ts
    header = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated_size)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(header)
    chunk = bytes(MIB)
    for _ in range(inflated_size // MIB):
        body += comp.compress(chunk)
    body += comp.flush()
    path.write_bytes(b"\x00" * 128 + b"DICM" + meta + body)


def test_deflate_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.dcm"
    _deflated_file(bomb, 64 * MIB)
    assert bomb.stat().st_size < MIB
    tracemalloc.start()
    _refused(bomb, "too_large", Limits(max_inflated_bytes=4 * MIB))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 * MIB


def test_random_bytes_and_png_named_dcm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "a.dcm").write_bytes(rng.bytes(4096))
    (tmp_path / "b.dcm").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.bytes(600))
    _refused(tmp_path, "not_dicom")
    _refused(tmp_path / "a.dcm", "not_dicom")
    _refused(tmp_path / "b.dcm", "not_dicom")


def test_random_bytes_after_a_dicm_prefix(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(20):
        (tmp_path / f"r{i}.dcm").write_bytes(b"\x00" * 128 + b"DICM" + rng.bytes(2000))
    with pytest.raises(InputError):
        load_study(tmp_path)


def test_truncated_slices_are_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path, phantom(nz=24, ny=16, nx=16), Variant())
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 100])
    _refused(tmp_path, "decode_failed", Limits(min_extent_mm=0.0))


def test_lying_element_length_does_not_allocate(tmp_path: Path) -> None:
    paths = write_series(tmp_path, phantom(nz=2, ny=16, nx=16), Variant())
    data = bytearray(paths[0].read_bytes())
    pos = data.find(b"\x08\x00\x60\x00CS")  # Modality
    data[pos + 6 : pos + 8] = b"\xff\xff"
    liar = tmp_path / "liar.dcm"
    liar.write_bytes(bytes(data) + struct.pack("<HH2sHI", 0x0009, 0x1011, b"OB", 0, 0xFFFFFFF0))
    tracemalloc.start()
    with pytest.raises(InputError):
        load_study(liar)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * MIB


def test_absurd_nesting_is_refused(tmp_path: Path) -> None:
    depth = 20_000
    nest = (
        struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ) * depth
    uid = b"1.2.840.10008.1.2.1\x00"
    ts = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    meta = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(ts)) + ts
    (tmp_path / "nested.dcm").write_bytes(b"\x00" * 128 + b"DICM" + meta + nest)
    code = _refused(tmp_path / "nested.dcm", "unreadable").code
    assert code == "unreadable"


def test_inspect_refuses_like_load(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError) as info:
        inspect_study(tmp_path)
    assert info.value.code == "not_dicom"


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    _refused(tmp_path / "nope", "not_found")


def test_symlinked_folder_outside_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_series(outside, phantom(), Variant())
    study = tmp_path / "study"
    study.mkdir()
    os.symlink(outside, study / "link")
    _refused(study, "not_dicom")
