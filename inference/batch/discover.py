"""Folder-only mode: find every study under an archive and join the labs CSV on StudyInstanceUID.

Every regular file under the archive (hidden folders skipped, symlinked folders not followed) has its header
read by the ingestion reader (pixels never decoded); files are grouped by StudyInstanceUID. A zip counts as
one study, named by the StudyInstanceUID of its first DICOM member. The table has one row per labs row, in
the CSV's order, then one row per study found without labs (by UID); a labs row whose study is not found is an
``error`` row (``not_found``), a study without labs one too (``missing_lab``, raised when it is scored).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from inference.batch.tasks import UID_COLUMN, Plan, Task, fingerprint, row_keys
from inference.dicom.archive import gather, is_zip
from inference.dicom.limits import Limits
from inference.dicom.parse import read_file
from inference.errors import InputError
from inference.tables import LAB_COLUMNS, read_labs_csv


def _uid_of(path: Path, limits: Limits) -> str:
    """StudyInstanceUID of one file ('' when it is not a readable DICOM file)."""
    parsed = read_file(path, limits)
    if parsed.ds is None:
        return ""
    return str(parsed.ds.get("StudyInstanceUID", "") or "")


def _zip_uid(path: Path, limits: Limits) -> str:
    """StudyInstanceUID of the first DICOM member of a zip ('' when none, or the zip is refused)."""
    try:
        with gather(path, limits) as gathered:
            for member in gathered.files:
                uid = _uid_of(member, limits)
                if uid:
                    return uid
    except InputError:
        return ""
    return ""


def find_studies(archive: Path, limits: Limits | None = None) -> dict[str, list[Path]]:
    """StudyInstanceUID -> its files (or its zip), for every study under ``archive``."""
    limits = limits or Limits()
    found: dict[str, list[Path]] = defaultdict(list)
    for root, dirs, files in os.walk(archive, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            uid = _zip_uid(path, limits) if is_zip(path) else _uid_of(path, limits)
            if uid:
                found[uid].append(path)
    return dict(found)


def _common_folder(paths: list[Path], archive: Path) -> str:
    """The study's place relative to the archive (for the table's ``study`` column): its zip or its folder."""
    if len(paths) == 1 and is_zip(paths[0]):
        return paths[0].relative_to(archive).as_posix()
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return common.relative_to(archive).as_posix()


def _labs_rows(labs_csv: Path | None) -> tuple[list[str], list[dict[str, str]]]:
    """Columns (other than the UID) and rows of the labs CSV (:func:`inference.tables.read_labs_csv`)."""
    if labs_csv is None:
        return [], []
    by_uid = read_labs_csv(labs_csv)
    header = list(next(iter(by_uid.values()), {UID_COLUMN: ""}))
    return [h for h in header if h != UID_COLUMN], list(by_uid.values())


def discover(archive: Path, labs_csv: Path | None) -> Plan:
    """Tasks for every study under ``archive``, labs joined from ``labs_csv`` by StudyInstanceUID."""
    studies = find_studies(archive)
    lab_columns, lab_rows = _labs_rows(labs_csv)
    by_uid = {r[UID_COLUMN].strip(): r for r in lab_rows}
    order = list(by_uid) + sorted(uid for uid in studies if uid not in by_uid)
    columns = (UID_COLUMN, "study", *lab_columns)
    value_rows = []
    for uid in order:
        files = studies.get(uid, [])
        labs = by_uid.get(uid, {})
        values = {UID_COLUMN: uid, "study": _common_folder(files, archive) if files else ""}
        values |= {c: labs.get(c, "") for c in lab_columns}
        value_rows.append(values)
    keys = row_keys([[v[c] for c in columns] for v in value_rows])
    tasks = []
    for i, (uid, values, key) in enumerate(zip(order, value_rows, keys, strict=True)):
        files = studies.get(uid, [])
        problem = None if files else ("not_found", "no study with this StudyInstanceUID under the archive")
        tasks.append(Task(index=i, key=key, values=values, source=tuple(str(p) for p in files),
                          fingerprint=fingerprint(files) if files else "", problem=problem,
                          labs={c: values.get(c, "") for c in LAB_COLUMNS}))
    return Plan(columns, tuple(tasks))
