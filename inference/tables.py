"""The one reader of the project's CSV inputs: manifests (``study,ntx,bmd_tscore,age,sex[,...]``, DESIGN.md) and
labs CSVs keyed by ``study_instance_uid``, for the batch job, the PACS glue, training and evaluation alike.

Every problem with the file as a whole (unreadable, a missing or repeated column, a ragged row, a repeated
StudyInstanceUID) is an :class:`~inference.errors.InputError` with a one-line reason; a blank cell is kept as
``""`` (not given), never filled.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from inference.errors import InputError

MANIFEST_COLUMNS = ("study", "ntx", "bmd_tscore", "age", "sex")
"""Manifest columns every row needs (DESIGN.md, cohort on disk); any other column is carried through."""
LAB_COLUMNS = ("ntx", "bmd_tscore", "age", "sex")
"""The lab cells of a manifest or labs row (blank age/sex: from the DICOM header)."""
UID_COLUMN = "study_instance_uid"
"""Key column of a labs CSV."""


def read_csv(path: Path, required: Sequence[str], what: str) -> tuple[list[str], list[list[str]]]:
    """Header and non-blank rows of a CSV, checking the required columns (``bad_<what>`` for the whole file)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [row for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"bad_{what}", f"cannot read the {what} {path.name}: {reason}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"bad_{what}", f"the {what} {path.name} lacks the column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise InputError(f"bad_{what}", f"the {what} {path.name} repeats a column name")
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InputError(f"bad_{what}", f"row {i} of the {what} has {len(row)} fields, not {len(header)}")
    return header, rows


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The rows of a manifest CSV as column -> cell (``bad_manifest`` without rows or a required column)."""
    header, rows = read_csv(path, MANIFEST_COLUMNS, "manifest")
    if not rows:
        raise InputError("bad_manifest", f"the manifest {path.name} has no rows")
    return [dict(zip(header, row, strict=True)) for row in rows]


def read_labs_csv(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a labs CSV keyed by StudyInstanceUID, in file order (``bad_labs`` for a repeated UID)."""
    header, rows = read_csv(path, (UID_COLUMN,), "labs")
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        values = dict(zip(header, row, strict=True))
        uid = values[UID_COLUMN].strip()
        if uid in out:
            raise InputError("bad_labs", f"the labs {path.name} lists a StudyInstanceUID more than once")
        out[uid] = values
    return out
