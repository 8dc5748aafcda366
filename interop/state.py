"""The listener's records, in one SQLite file that survives a restart: a status per study, the non-CT objects set
aside, and the outbox of DICOM objects still to send.

* ``studies``: one row per Study Instance UID: ``received`` (instances arrived, not yet handled), ``scored``,
  ``refused`` (with the reason), ``waiting_for_labs`` (with the reason); for a scored study the key it was scored
  under (series, model version and hash, input hash, labs hash), the probability and category and the report
  folder. A study is scored again only when its key changes.
* ``set_aside``: each non-CT instance received (SOP class and modality), never scored.
* ``outbox``: each object to send to each target, ``pending`` until stored, then ``sent``; ``superseded`` when a
  later scoring of the study replaced it before it went out. A failed send is retried after a growing delay.

Nothing here holds patient identity: studies are named by their UID.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    series_uid TEXT, model_version TEXT, model_sha256 TEXT, input_sha256 TEXT, labs_sha256 TEXT,
    probability REAL, risk_category TEXT, report_dir TEXT, times_scored INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside (
    sop_instance_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '', received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, path TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, sent_at REAL);
"""
STATUSES = ("received", "scored", "refused", "waiting_for_labs")


@dataclass(frozen=True)
class ScoringKey:
    """What a scoring depends on: the study is scored again only when one of these changes."""

    series_uid: str
    model_version: str
    model_sha256: str
    input_sha256: str
    labs_sha256: str


@dataclass(frozen=True)
class StudyRecord:
    """The status record of one study."""

    study_uid: str
    status: str
    reason: str
    key: ScoringKey | None
    probability: float | None
    risk_category: str | None
    report_dir: str | None
    times_scored: int
    updated_at: float


@dataclass(frozen=True)
class Outgoing:
    """One pending send: an object of a study for a target."""

    id: int
    study_uid: str
    path: Path
    sop_instance_uid: str
    target: str
    attempts: int


class StateStore:
    """The SQLite file; every method is one transaction, safe to call from the listener's threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # -- studies ---------------------------------------------------------------------------------------------

    def study(self, study_uid: str) -> StudyRecord | None:
        """The record of one study, or None when it was never seen."""
        with self._tx() as db:
            row = db.execute("SELECT study_uid, status, reason, series_uid, model_version, model_sha256, "
                             "input_sha256, labs_sha256, probability, risk_category, report_dir, times_scored, "
                             "updated_at FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
        if row is None:
            return None
        key = ScoringKey(*row[3:8]) if row[3] is not None and row[6] is not None else None
        return StudyRecord(row[0], row[1], row[2], key, row[8], row[9], row[10], row[11], row[12])

    def studies(self, status: str | None = None) -> list[StudyRecord]:
        """Every study record (of one status when given), oldest update first."""
        with self._tx() as db:
            query = "SELECT study_uid FROM studies" + (" WHERE status = ?" if status else "") + " ORDER BY updated_at"
            uids = [r[0] for r in db.execute(query, (status,) if status else ()).fetchall()]
        return [r for r in (self.study(u) for u in uids) if r is not None]

    def received(self, study_uid: str) -> None:
        """Instances of the study arrived: a new study is ``received``; a known one keeps its status until it is
        handled again."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO studies (study_uid, status, updated_at) VALUES (?, 'received', ?)",
                       (study_uid, time.time()))

    def set_status(self, study_uid: str, status: str, reason: str = "") -> None:
        """Record ``refused``, ``waiting_for_labs`` (with the reason) or ``received``; a scored study's key and
        values are kept (they say what was last sent)."""
        if status not in STATUSES or status == "scored":
            raise ValueError(f"not a status to set: {status}")
        with self._tx() as db:
            db.execute("INSERT INTO studies (study_uid, status, reason, updated_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(study_uid) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
                       "updated_at = excluded.updated_at", (study_uid, status, reason, time.time()))

    def scored(self, study_uid: str, key: ScoringKey, probability: float, risk_category: str,
               report_dir: Path) -> None:
        """Record a scoring under ``key``; pending sends of an earlier scoring are superseded."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO studies (study_uid, status, reason, series_uid, model_version, model_sha256, "
                "input_sha256, labs_sha256, probability, risk_category, report_dir, times_scored, updated_at) "
                "VALUES (?, 'scored', '', ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(study_uid) DO UPDATE SET "
                "status = 'scored', reason = '', series_uid = excluded.series_uid, "
                "model_version = excluded.model_version, model_sha256 = excluded.model_sha256, "
                "input_sha256 = excluded.input_sha256, labs_sha256 = excluded.labs_sha256, "
                "probability = excluded.probability, risk_category = excluded.risk_category, "
                "report_dir = excluded.report_dir, times_scored = studies.times_scored + 1, "
                "updated_at = excluded.updated_at",
                (study_uid, key.series_uid, key.model_version, key.model_sha256, key.input_sha256,
                 key.labs_sha256, probability, risk_category, str(report_dir), now))
            db.execute("UPDATE outbox SET state = 'superseded' WHERE study_uid = ? AND state = 'pending'",
                       (study_uid,))

    # -- non-CT objects ----------------------------------------------------------------------------------------

    def set_aside(self, study_uid: str, sop_instance_uid: str, sop_class_uid: str, modality: str) -> None:
        """Record a non-CT instance that was stored aside (never scored)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?, ?, ?)",
                       (sop_instance_uid, study_uid, sop_class_uid, modality, time.time()))

    def set_aside_of(self, study_uid: str) -> list[tuple[str, str]]:
        """(SOP class UID, modality) of each instance of the study set aside."""
        with self._tx() as db:
            return [(r[0], r[1]) for r in db.execute(
                "SELECT sop_class_uid, modality FROM set_aside WHERE study_uid = ? ORDER BY received_at",
                (study_uid,)).fetchall()]

    # -- outbox --------------------------------------------------------------------------------------------

    def enqueue(self, study_uid: str, items: list[tuple[Path, str]], targets: list[str]) -> int:
        """Queue each (file, SOP Instance UID) for each target; return how many sends were queued."""
        now = time.time()
        with self._tx() as db:
            for target in targets:
                for path, sop in items:
                    db.execute("INSERT INTO outbox (study_uid, path, sop_instance_uid, target, next_try, "
                               "created_at) VALUES (?, ?, ?, ?, ?, ?)", (study_uid, str(path), sop, target, now, now))
        return len(items) * len(targets)

    def due(self, now: float | None = None) -> list[Outgoing]:
        """The pending sends whose time has come, oldest first."""
        with self._tx() as db:
            rows = db.execute("SELECT id, study_uid, path, sop_instance_uid, target, attempts FROM outbox "
                              "WHERE state = 'pending' AND next_try <= ? ORDER BY id",
                              (time.time() if now is None else now,)).fetchall()
        return [Outgoing(r[0], r[1], Path(r[2]), r[3], r[4], r[5]) for r in rows]

    def sent(self, ids: list[int]) -> None:
        """Mark sends as done."""
        with self._tx() as db:
            db.executemany("UPDATE outbox SET state = 'sent', sent_at = ?, last_error = '' WHERE id = ?",
                           [(time.time(), i) for i in ids])

    def failed(self, ids: list[int], error: str, retry_after: float) -> None:
        """Count a failed attempt and schedule the next one ``retry_after`` seconds from now."""
        with self._tx() as db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?",
                           [(error[:500], time.time() + retry_after, i) for i in ids])

    def outbox(self, study_uid: str | None = None) -> list[dict[str, object]]:
        """The outbox rows (of one study when given): id, study, SOP Instance UID, target, state, attempts,
        last error."""
        with self._tx() as db:
            query = ("SELECT id, study_uid, sop_instance_uid, target, state, attempts, last_error FROM outbox"
                     + (" WHERE study_uid = ?" if study_uid else "") + " ORDER BY id")
            rows = db.execute(query, (study_uid,) if study_uid else ()).fetchall()
        keys = ("id", "study_uid", "sop_instance_uid", "target", "state", "attempts", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]
