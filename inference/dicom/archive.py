"""Find the files of a study: a folder (recursive), a zip, or a list of files; zips extracted safely.

A zip is extracted member by member into a private temporary folder under flat generated names, so no member
path is ever used to build a file name. The archive is refused as a whole (``unsafe_archive``) when a member
name is absolute or climbs out with ``..``, when a member is encrypted, when there are too many members, when
the declared or actual uncompressed size exceeds the cap, or when a member's compression ratio is absurd.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from inference.dicom.limits import MIB, Budget, Limits
from inference.errors import InputError

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
_CHUNK = 1 << 20


@dataclass
class Gathered:
    """The files of one study, with display names for the report."""

    files: list[Path] = field(default_factory=list)
    names: dict[Path, str] = field(default_factory=dict)
    skipped: int = 0
    """Entries that are not regular files (symlinked folders, sockets, zip directory entries...)."""
    total_bytes: int = 0
    budget: Budget = field(default_factory=lambda: Budget(Limits()))
    """The study's memory budget (:attr:`Limits.max_study_bytes`), shared by every file read from it."""

    def add(self, path: Path, name: str, size: int, limits: Limits) -> None:
        """Record one file, enforcing the count and size caps."""
        self.files.append(path)
        self.names[path] = name
        self.total_bytes += size
        if len(self.files) > limits.max_files:
            raise InputError("too_large", f"the input holds more than {limits.max_files} files")
        if self.total_bytes > limits.max_total_bytes:
            raise InputError("too_large", f"the input is larger than {limits.max_total_bytes // MIB} MB")


def is_zip(path: Path) -> bool:
    """True for a zip archive (by its signature, never by its name; a DICOM file is never a zip)."""
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") and head[128:132] != b"DICM"


def _walk(folder: Path, out: Gathered, limits: Limits) -> None:
    """Add every regular file under ``folder`` (symlinked folders are not followed), sorted."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                out.skipped += 1
                continue
            if not path.is_file():
                out.skipped += 1
                continue
            out.add(path, str(path.relative_to(folder)), st.st_size, limits)


def _check_member(info: zipfile.ZipInfo, limits: Limits) -> None:
    """Refuse a member whose name escapes the folder, that is encrypted, or that is a likely bomb."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or ".." in parts or "\x00" in name:
        raise InputError("unsafe_archive", "the zip has a member whose path points outside the archive")
    if info.flag_bits & 0x1:
        raise InputError("unsafe_archive", "the zip is password-protected")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MIB and ratio > limits.max_zip_ratio:
        raise InputError("unsafe_archive", f"a zip member expands {ratio:.0f}-fold (a zip bomb?)")


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Stream one member to ``dest``, never writing more than declared or than ``budget``."""
    written = 0
    cap = min(info.file_size, budget)
    with zf.open(info) as src, dest.open("xb") as dst:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > cap:
                raise InputError("unsafe_archive", "the zip holds more data than it declares (a zip bomb?)")
            dst.write(chunk)
    return written


def _extract(archive: Path, workdir: Path, out: Gathered, limits: Limits, label: str) -> None:
    """Extract ``archive`` safely into a new folder under ``workdir`` and add its members."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("unsafe_archive", "the zip archive cannot be read") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > limits.max_files:
            raise InputError("unsafe_archive", f"the zip holds more than {limits.max_files} files")
        for info in infos:
            _check_member(info, limits)
        declared = sum(i.file_size for i in infos)
        if out.total_bytes + declared > limits.max_total_bytes:
            raise InputError("unsafe_archive", "the zip would expand beyond the size limit (a zip bomb?)")
        dest_dir = Path(tempfile.mkdtemp(prefix="zip-", dir=workdir))
        for n, info in enumerate(infos):
            dest = dest_dir / f"m{n:06d}"
            try:
                size = _copy_member(zf, info, dest, limits.max_total_bytes - out.total_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                raise InputError(
                    "unsafe_archive", "a zip member cannot be read (corrupt, or compressed in an unsupported way)"
                ) from exc
            out.add(dest, f"{label}:{info.filename}", size, limits)


def _add_path(path: Path, workdir: Path, out: Gathered, limits: Limits) -> None:
    if path.is_dir():
        _walk(path, out, limits)
    elif path.is_file():
        if is_zip(path):
            _extract(path, workdir, out, limits, path.name)
        else:
            out.add(path, path.name, path.stat().st_size, limits)
    else:
        raise InputError("not_found", f"no such file or folder: {path.name}")


@contextmanager
def gather(source: Source, limits: Limits) -> Iterator[Gathered]:
    """Yield the files of ``source``; extracted zip members live in a private folder removed on exit."""
    paths = [Path(source)] if isinstance(source, str | os.PathLike) else [Path(p) for p in source]
    if not paths:
        raise InputError("not_found", "no input files were given")
    workdir = Path(tempfile.mkdtemp(prefix="vfrisk-dicom-"))
    try:
        out = Gathered(budget=Budget(limits))
        for path in paths:
            _add_path(path, workdir, out, limits)
        yield out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
