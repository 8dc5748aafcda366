"""What the listener does with a complete study: score it once, record why not, wait for its labs, queue its results.

A study is scored at most once per :class:`~interop.state.ScoringKey` (scored series, model version and hash, hash
of the canonical input volume, hash of its labs row): sending it again changes nothing; new instances, a changed
labs row or another model score it again, and the results of the earlier scoring still waiting in the outbox are
superseded. Each outcome is one status record and one INFO log line naming the study by its UID:

* ``scored``: the reports are written under ``<out>/<Study Instance UID>/`` and the DICOM objects (SEG, SR,
  Encapsulated PDF, key image) queued for every send target;
* ``waiting_for_labs``: the labs source has no row for the study, or its row lacks a value or holds a bad one;
  the study is handed over again when its row appears or changes (:class:`LabsWatch`);
* ``refused``: the study cannot be scored (the reason is the reader's or the engine's, in their words).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inference.errors import InputError
from interop.listen import Target, describe_sop_class
from interop.state import ScoringKey, StateStore

log = logging.getLogger("vfrisk.listen")
LAB_ERRORS = ("missing_lab", "bad_lab", "lab_out_of_range", "bad_labs")
"""Refusals that better labs can lift: the study waits for its labs instead of being refused."""


def labs_hash(row: Mapping[str, str]) -> str:
    """Hash of a labs row (the values the model reads, blank ones included), independent of column order."""
    from inference.tables import LAB_COLUMNS

    values = {c: str(row.get(c, "") or "").strip() for c in LAB_COLUMNS}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


class LabsWatch:
    """The labs CSV (keyed by StudyInstanceUID), read again whenever the file changes (size or modification time).

    A file that cannot be read or parsed keeps the rows read before, with one WARNING line.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._rows: dict[str, dict[str, str]] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def row(self, study_uid: str) -> dict[str, str] | None:
        """The labs row of the study, or None."""
        with self._lock:
            return self._rows.get(study_uid)

    def missing_reason(self) -> str:
        """Why a study has no labs, in words (no CLI flag: the reader is an integrator or a log)."""
        if self.path is None:
            return "no labs source is configured for the listener"
        return f"no row for this study in the labs file {self.path.name}"

    def poll(self) -> set[str]:
        """Read the file again if it changed; return the UIDs whose row appeared, changed or went away."""
        if self.path is None:
            return set()
        try:
            st = self.path.stat()
        except OSError:
            return set()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return set()
        from inference.tables import read_labs_csv

        try:
            rows = read_labs_csv(self.path)
        except (InputError, OSError, ValueError) as exc:
            self._stamp = stamp
            log.warning("labs file %s not read (%s); keeping the %d rows read before", self.path.name,
                        exc.one_line() if isinstance(exc, InputError) else type(exc).__name__, len(self._rows))
            return set()
        with self._lock:
            old = self._rows
            self._rows, self._stamp = rows, stamp
        changed = {u for u in set(old) | set(rows)
                   if (u in old) != (u in rows) or (u in rows and labs_hash(old[u]) != labs_hash(rows[u]))}
        log.info("labs file %s read: %d rows, %d changed", self.path.name, len(rows), len(changed))
        return changed


class StudyIntake:
    """Scores complete studies for the listener and keeps their records (see the module docstring)."""

    def __init__(self, engine: Any, store: StateStore, labs: LabsWatch, out: Path, targets: Sequence[Target],
                 wake: Callable[[], Any] | None = None) -> None:
        self.engine, self.store, self.labs, self.out = engine, store, labs, out
        self.targets = [str(t) for t in targets]
        self.wake = wake
        self.resubmit: Callable[[str], Any] | None = None
        """Hands a study to the receiver's worker again (set by the listener once the receiver runs)."""
        self._announced: set[str] = set()

    def _model(self) -> tuple[str, str]:
        identity = self.engine.bundle.identity
        return str(identity["version"]), str(identity.get("sha256", ""))

    def received(self, study_uid: str) -> None:
        """The first CT instance of a quiet period arrived."""
        self.store.received(study_uid)

    def other(self, study_uid: str, sop_uid: str, sop_class: str, modality: str) -> None:
        """A non-CT object was stored aside: recorded, never scored (one INFO line per study)."""
        self.store.set_aside(study_uid, sop_uid, sop_class, modality)
        if study_uid not in self._announced:
            self._announced.add(study_uid)
            log.info("study %s: %s object set aside (not a CT image; never scored)", study_uid,
                     describe_sop_class(sop_class))

    def process(self, study_uid: str, folder: Path) -> str:
        """Handle one complete study; return its status (``scored``, ``unchanged``, ``waiting_for_labs``,
        ``refused``)."""
        from inference.pipeline import read_study

        try:
            study = read_study(folder)
        except InputError as exc:
            return self._refuse(study_uid, exc)
        row = self.labs.row(study_uid)
        if row is None:
            return self._wait(study_uid, self.labs.missing_reason())
        version, sha = self._model()
        key = ScoringKey(study.series_instance_uid, version, sha, study.input_sha256(), labs_hash(row))
        record = self.store.study(study_uid)
        if record is not None and record.status == "scored" and record.key == key:
            log.info("study %s unchanged (same series, model, images and labs): not scored again", study_uid)
            return "unchanged"
        return self._score(study_uid, study, folder, row, key)

    def _score(self, study_uid: str, study: Any, folder: Path, row: Mapping[str, str], key: ScoringKey) -> str:
        from inference.labs import LabInput
        from inference.pipeline import score_study
        from vfrisk.pipeline import assess, write_reports

        try:
            result = assess(score_study(study, LabInput.from_cells(row), self.engine))
        except InputError as exc:
            if exc.code in LAB_ERRORS:
                return self._wait(study_uid, exc.one_line())
            return self._refuse(study_uid, exc)
        out = self.out / study_uid
        files = write_reports(result, study, folder, out)
        items = [(files[f], _sop_uid(files[f])) for f in ("seg", "sr", "encapsulated_pdf", "key_image") if f in files]
        self.store.scored(study_uid, key, result.probability, result.risk_category, out)
        queued = self.store.enqueue(study_uid, items, self.targets)
        if queued and self.wake is not None:
            self.wake()
        where = f"{len(items)} object(s) queued for {', '.join(self.targets)}" if self.targets else "nothing to send"
        log.info("study %s scored: p=%.3f, %s risk, series %s, %s", study_uid, result.probability,
                 result.risk_category.replace("_", " "), study.series_instance_uid, where)
        return "scored"

    def _refuse(self, study_uid: str, exc: InputError) -> str:
        self.store.set_status(study_uid, "refused", exc.one_line())
        log.info("study %s refused: %s", study_uid, exc.one_line())
        return "refused"

    def _wait(self, study_uid: str, reason: str) -> str:
        self.store.set_status(study_uid, "waiting_for_labs", reason)
        log.info("study %s waiting for labs: %s", study_uid, reason)
        return "waiting_for_labs"

    def check_labs(self) -> list[str]:
        """Read the labs source again if it changed and hand over again each study it affects: one waiting for
        its labs whose row is now there or changed, one scored under another labs row. Returns their UIDs."""
        again = []
        for uid in sorted(self.labs.poll()):
            record = self.store.study(uid)
            row = self.labs.row(uid)
            if record is None or row is None:
                continue
            waiting = record.status == "waiting_for_labs"
            stale = record.status == "scored" and record.key is not None and record.key.labs_sha256 != labs_hash(row)
            if (waiting or stale) and self.resubmit is not None:
                self.resubmit(uid)
                again.append(uid)
        return again

    def pending(self) -> list[str]:
        """Studies received but never handled (the listener stopped first): handed over again at start-up."""
        return [r.study_uid for r in self.store.studies("received")]


def _sop_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
