"""The results table of DESIGN.md, written atomically to CSV or Parquet (chosen by the file extension).

Columns: the manifest columns (verbatim), then ``status``, ``probability``, ``error``,
``series_instance_uid``, ``model_version``, ``input_sha256``, ``scored_at``. The file is written to a temporary
name in the same folder, flushed to disk and renamed over the target, so a reader (or a kill) never sees half a
table. While a run scores, :class:`LiveTable` keeps the table up to date with the rows finished so far.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.batch.store import Record
from inference.errors import InputError

RESULT_COLUMNS = ("status", "probability", "error", "series_instance_uid", "model_version", "input_sha256",
                  "scored_at")
FORMATS = (".csv", ".parquet")


def table_format(out: Path) -> str:
    """``.csv`` or ``.parquet``; anything else is a usage error."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InputError("bad_usage", f"the output table must end in .csv or .parquet, not {out.name}")
    return suffix


def result_values(record: Record) -> dict[str, Any]:
    """The result columns of one stored row."""
    return {"status": record.status, "probability": record.probability, "error": record.error,
            "series_instance_uid": record.series_instance_uid, "model_version": record.model_version,
            "input_sha256": record.input_sha256, "scored_at": record.scored_at}


def table_rows(manifest: Sequence[dict[str, str]], records: Sequence[Record]) -> list[dict[str, Any]]:
    """Manifest values joined with their results, in manifest order."""
    return [{**values, **result_values(rec)} for values, rec in zip(manifest, records, strict=True)]


def _csv_bytes(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c])
                         for c in columns])
    return buf.getvalue().encode()


def _column_type(values: Sequence[str]) -> Any:
    """int64, float64 or string: the narrowest type every non-blank manifest value parses as."""
    import pyarrow as pa

    filled = [v.strip() for v in values if v.strip()]
    for kind, parse in ((pa.int64(), int), (pa.float64(), float)):
        try:
            for v in filled:
                parse(v)
        except ValueError:
            continue
        return kind if filled else pa.string()
    return pa.string()


def _parquet_bytes(columns: Sequence[str], manifest_columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in columns:
        values = [row[c] for row in rows]
        if c in manifest_columns:
            kind = _column_type(values)
            cast = {pa.int64(): int, pa.float64(): float}.get(kind, str)
            arrays[c] = pa.array([cast(v.strip()) if v.strip() or kind == pa.string() else None for v in values],
                                 type=kind)
        elif c == "probability":
            arrays[c] = pa.array(values, type=pa.float64())
        else:
            arrays[c] = pa.array(values, type=pa.string())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return bytes(sink.getvalue().to_pybytes())


def _remove_stale(path: Path) -> None:
    """Delete temporaries left by a writer of ``path`` that was killed (its process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            continue


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync of the folder.

    Temporaries of killed writers are removed first; the target is never seen half-written.
    """
    _remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table(out: Path, manifest_columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """The results table as CSV or Parquet (by ``out``'s extension), written atomically."""
    columns = [*manifest_columns, *RESULT_COLUMNS]
    csv_out = table_format(out) == ".csv"
    atomic_write(out, _csv_bytes(columns, rows) if csv_out else _parquet_bytes(columns, manifest_columns, rows))


class LiveTable:
    """The results table of the rows done so far, rewritten (atomically) while a run scores.

    A run killed at any moment thus leaves a readable table of what it had finished, in manifest order, rows not
    yet done left out; the end of the run writes the complete table over it.
    """

    def __init__(self, out: Path, manifest_columns: Sequence[str], rows: Sequence[tuple[str, dict[str, str]]],
                 done: dict[str, Record], every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``rows``: (key, manifest values) in manifest order; ``done``: the records already final for this run;
        ``every_s``: least seconds between two rewrites."""
        self.out, self.columns, self.rows = out, manifest_columns, rows
        self.done = dict(done)
        self.every_s, self.clock = every_s, clock
        self.last = -float("inf")

    def add(self, record: Record) -> None:
        """Record a finished row; rewrite the table when the last rewrite is old enough."""
        self.done[record.key] = record
        if self.clock() - self.last >= self.every_s:
            self.write()

    def write(self) -> None:
        """Rewrite the table with every row done so far."""
        finished = [(values, self.done[key]) for key, values in self.rows if key in self.done]
        write_table(self.out, self.columns, table_rows([v for v, _ in finished], [r for _, r in finished]))
        self.last = self.clock()
