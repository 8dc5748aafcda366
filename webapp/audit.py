"""The audit log: one JSON line per login, upload, score and download.

Each line says who (the app user name), when (UTC), what (event), which study (a hash of its
StudyInstanceUID, never the UID itself), which model version, and the outcome (``ok`` or a reason code).
No patient names, IDs, dates of birth, file names or free text reach this log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from enum import StrEnum
from pathlib import Path


class Event(StrEnum):
    """Audited events."""

    LOGIN = "login"
    UPLOAD = "upload"
    SCORE = "score"
    DOWNLOAD = "download"
    API = "api"


def uid_hash(uid: str | None) -> str | None:
    """First 16 hex digits of the SHA-256 of a UID (None when there is none)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:16] if uid else None


class AuditLog:
    """Append-only JSON-lines audit file (mode 0600), safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def record(self, event: Event, user: str | None, outcome: str, *, study_uid: str | None = None,
               model_version: str | None = None) -> dict[str, str | None]:
        """Append one line and return it."""
        line = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "event": event.value,
            "user": user or "anonymous",
            "study": uid_hash(study_uid),
            "model_version": model_version,
            "outcome": outcome,
        }
        text = json.dumps(line, sort_keys=True) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(text)
        return line

    def lines(self) -> list[dict[str, str | None]]:
        """Every record (for tests and review)."""
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
