"""What a batch run scores: one :class:`Task` per row, from a manifest or from a folder walk.

Row identity
------------
A row's ``key`` is a hash of its manifest values (all columns, in order) plus its occurrence number among
identical rows. Editing a row (another lab value, another study path) gives it a new key, so it is scored again;
rows of an older manifest stay in the database but never reach the table.

Source fingerprint
------------------
Resuming must decide, without decoding anything, whether a row's input is the one already scored. The
fingerprint is the SHA-256 of the sorted list of ``(relative path, size, mtime_ns)`` of every file of the
study (the folder walked recursively, or the zip/file itself). Copying an archive changes mtimes, so a copied
archive is scored again: the fingerprint errs on the side of rescoring. The table's ``input_sha256`` is
something else: the hash of the decoded HU volume that the model saw (:meth:`Study.input_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference.tables import LAB_COLUMNS, MANIFEST_COLUMNS, UID_COLUMN, read_csv

__all__ = ["LAB_COLUMNS", "UID_COLUMN", "Plan", "Task", "fingerprint", "read_manifest", "row_keys"]


@dataclass(frozen=True)
class Task:
    """One row to score: its manifest values, where its files are, and what it needs to be scored."""

    index: int
    """Position of the row in the manifest (the table keeps this order)."""
    key: str
    values: dict[str, str]
    """The manifest columns of the row, verbatim."""
    source: tuple[str, ...]
    """Absolute paths: one folder or zip, or the files of one study (folder-only mode)."""
    fingerprint: str
    problem: tuple[str, str] | None = None
    """(code, message) when the row cannot even be attempted (bad path, no study found)."""
    labs: dict[str, str] = field(default_factory=dict)
    """Raw lab strings: ntx, bmd_tscore, age, sex (blank age/sex: from the header)."""
    z_centre_index: float | None = None
    """Second pass only: the slice to centre the crop on (where the first pass placed the spine)."""


@dataclass(frozen=True)
class Plan:
    """The rows of a run, in table order, and the manifest columns of the table."""

    columns: tuple[str, ...]
    tasks: tuple[Task, ...]


def row_keys(rows: Iterable[Sequence[str]]) -> list[str]:
    """Stable keys: hash of the row's values plus its occurrence number among identical rows."""
    seen: dict[str, int] = {}
    keys = []
    for values in rows:
        digest = hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:32]
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        keys.append(f"{digest}-{n}")
    return keys


def _file_lines(path: Path, base: Path) -> Iterable[str]:
    """``relpath size mtime_ns`` for every regular file under ``path`` (symlinked folders not followed)."""
    if path.is_file():
        st = path.stat()
        yield f"{path.name}\t{st.st_size}\t{st.st_mtime_ns}"
        return
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            st = full.stat()
            yield f"{full.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}"


def fingerprint(paths: Sequence[Path]) -> str:
    """SHA-256 of the file list, sizes and modification times of a study (no file is read)."""
    h = hashlib.sha256()
    for path in paths:
        base = path if path.is_dir() else path.parent
        h.update(f"#{path.name}\n".encode())
        for line in _file_lines(path, base):
            h.update(line.encode() + b"\n")
    return h.hexdigest()


def _resolve(archive: Path, study: str) -> tuple[Path | None, tuple[str, str] | None]:
    """The study's path inside the archive, or the reason it cannot be used."""
    rel = Path(study.strip())
    if not study.strip():
        return None, ("bad_manifest", "the study column is blank")
    if rel.is_absolute() or ".." in rel.parts:
        return None, ("bad_path", "the study path must be relative to the archive, without '..'")
    path = archive / rel
    if not path.exists():
        return None, ("not_found", f"no such study in the archive: {rel.as_posix()}")
    return path, None


def read_manifest(manifest: Path, archive: Path) -> Plan:
    """Tasks from a manifest CSV (DESIGN.md): ``study`` relative to ``archive``, then the labs."""
    header, rows = read_csv(manifest, MANIFEST_COLUMNS, "manifest")
    keys = row_keys(rows)
    tasks = []
    for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
        values = dict(zip(header, row, strict=True))
        path, problem = _resolve(archive, values["study"])
        tasks.append(Task(
            index=i, key=key, values=values,
            source=(str(path),) if path else (),
            fingerprint=fingerprint([path]) if path else "",
            problem=problem,
            labs={c: values[c] for c in LAB_COLUMNS},
        ))
    return Plan(tuple(header), tuple(tasks))
