"""PACS glue for the CLI: ``vfrisk score --dicomweb URL`` and ``vfrisk listen``.

Studies pulled over DICOMweb are staged inside the output's folder (``<out>.dicomweb/studies/<StudyInstanceUID>/``)
and scored by the same batch pipeline and resume rules as a folder archive. A labs row whose study the search did
not return is looked up once by its UID; a study the PACS does not hold is recorded in
``<out>.dicomweb/not_found.csv`` (with when it was searched) and left out of the table, and is not searched again
unless asked (``--retry-not-found``). With ``push`` the DICOM objects of every study scored ``ok`` (SEG, SR,
Encapsulated PDF, key image) are stored back (STOW-RS) once, checking the store response.

``vfrisk listen`` runs the C-STORE receiver (:mod:`interop.listen`) with the intake of :mod:`interop.intake`, the
records of :mod:`interop.state` (``<out>/listen.sqlite``) and the outbox sender.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from inference.errors import InputError

log = logging.getLogger("vfrisk.pacs")
PUSHED_FORMATS = ("seg", "sr", "encapsulated_pdf", "key_image")
"""The DICOM objects stored back to the PACS (the SEG first: the SR points at it)."""
NOT_FOUND = "not_found.csv"
STATE_FILE = "listen.sqlite"


def _labs_by_uid(labs_csv: Path | None) -> dict[str, dict[str, str]]:
    """Rows of the labs CSV keyed by ``study_instance_uid`` (the batch job's reader: a repeated UID or a
    missing column is an input error)."""
    from inference.tables import read_labs_csv

    return {} if labs_csv is None else read_labs_csv(labs_csv)


def _score_folder(folder: Path, row: dict[str, str], engine: Any) -> tuple[Any, Any]:
    """The application pipeline on one staged or received study: (study, typed result)."""
    from inference.labs import LabInput
    from inference.pipeline import score_source
    from vfrisk.pipeline import assess

    scored = score_source(folder, LabInput.from_cells(row), engine)
    return scored.study, assess(scored.prediction)


def stage_studies(url: str, stage: Path, date_from: date | None, date_to: date | None,
                  limit: int | None, also: Sequence[str] = ()) -> list[str]:
    """QIDO-RS search, then WADO-RS retrieve every study not yet staged; returns the study UIDs found. The UIDs
    ``also`` (labs rows the search did not return) are looked up one by one and staged when the PACS holds them."""
    from interop.dicomweb import client, retrieve_study, search_studies

    dw = client(url)
    refs = search_studies(dw, date_from=date_from, date_to=date_to, modality="CT", limit=limit)
    uids = [r.study_instance_uid for r in refs]
    for uid in also:
        if uid not in uids and search_studies(dw, modality=None, extra_filters={"StudyInstanceUID": uid}):
            uids.append(uid)
    done = stage / ".retrieved"
    done.mkdir(parents=True, exist_ok=True)
    for uid in uids:
        if (done / uid).is_file():
            continue
        retrieve_study(dw, uid, stage / "studies" / uid)
        (done / uid).touch()
    return uids


def read_not_found(stage: Path) -> dict[str, str]:
    """Study UID -> when it was searched and not found (``<stage>/not_found.csv``)."""
    path = stage / NOT_FOUND
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fp:
        return {row["study_instance_uid"]: row["searched_at"] for row in csv.DictReader(fp)}


def record_not_found(stage: Path, found: dict[str, str]) -> None:
    """Write the not-found record (atomically)."""
    path = stage / NOT_FOUND
    part = path.with_name(f".{path.name}.part")
    with part.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["study_instance_uid", "searched_at"])
        writer.writerows(sorted(found.items()))
    part.replace(path)


def _labs_for_batch(labs_csv: Path, stage: Path, skip: set[str]) -> Path:
    """A copy of the labs CSV without the rows of ``skip`` (studies the PACS does not hold), for the batch."""
    from inference.tables import UID_COLUMN, read_labs_csv

    rows = read_labs_csv(labs_csv)
    out = stage / "labs.csv"
    header = list(next(iter(rows.values()), {UID_COLUMN: ""}))
    with out.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.DictWriter(fp, fieldnames=header)
        writer.writeheader()
        writer.writerows(r for uid, r in rows.items() if uid not in skip)
    return out


def push_results(url: str, stage: Path, uids: list[str], labs_csv: Path | None, model: Path | None,
                 reports: Path) -> dict[str, int]:
    """Store the DICOM objects (:data:`PUSHED_FORMATS`) of each staged study back to the PACS once (a marker per
    study)."""
    from inference.engine import Engine
    from interop.dicomweb import client, store_files
    from vfrisk.pipeline import write_reports

    engine, dw, labs = Engine(model), client(url), _labs_by_uid(labs_csv)
    pushed = stage / ".pushed"
    pushed.mkdir(parents=True, exist_ok=True)
    counts = {"pushed": 0, "skipped": 0, "refused": 0}
    for uid in uids:
        if (pushed / uid).is_file():
            counts["skipped"] += 1
            continue
        row = labs.get(uid, {})
        folder = stage / "studies" / uid
        try:
            study, result = _score_folder(folder, row, engine)
            files = write_reports(result, study, folder, reports / uid, formats=("json", "pdf", *PUSHED_FORMATS))
        except InputError as exc:
            log.info("study %s not pushed: %s", uid, exc.code)
            counts["refused"] += 1
            continue
        store_files(dw, [files[k] for k in PUSHED_FORMATS if k in files])
        (pushed / uid).touch()
        counts["pushed"] += 1
    return counts


@dataclass(frozen=True)
class Scoring:
    """How studies are scored: bundle, labs, workers, results database and engine."""

    model: Path | None = None
    labs_csv: Path | None = None
    workers: int = 0
    db: str | None = None
    engine: str = "local"


def score_dicomweb(url: str, out: Path, scoring: Scoring, *, date_from: date | None = None,
                   date_to: date | None = None, limit: int | None = None, push: bool = False,
                   retry_not_found: bool = False) -> dict[str, Any]:
    """Pull CT studies from a DICOMweb server, score them like a folder archive, optionally push the DICOM results
    back. Labs rows of studies the PACS does not hold are recorded once (not searched again unless
    ``retry_not_found``) and left out of the table."""
    from inference.batch import score_cli
    from inference.tables import read_labs_csv

    stage = out.parent / f"{out.name}.dicomweb"
    stage.mkdir(parents=True, exist_ok=True)
    known_missing = {} if retry_not_found else read_not_found(stage)
    wanted = [u for u in (read_labs_csv(scoring.labs_csv) if scoring.labs_csv else {}) if u not in known_missing]
    uids = stage_studies(url, stage, date_from, date_to, limit, also=wanted)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    new_missing = {u: now for u in wanted if u not in uids}
    missing = ({} if retry_not_found else read_not_found(stage)) | new_missing
    record_not_found(stage, missing)
    if not uids:
        raise InputError("no_studies", "the DICOMweb search found no CT study")
    labs = _labs_for_batch(scoring.labs_csv, stage, set(missing)) if scoring.labs_csv else None
    summary = score_cli(stage / "studies", None, out, engine=scoring.engine, workers=scoring.workers,
                        model=scoring.model, db=scoring.db, labs_csv=labs)
    summary["dicomweb"] = {"studies": len(uids), "not_found": len(new_missing),
                           "not_found_before": len(missing) - len(new_missing)}
    if push:
        summary["dicomweb"] |= push_results(url, stage, uids, scoring.labs_csv, scoring.model, stage / "reports")
    return summary


@dataclass(frozen=True)
class Listener:
    """Where the C-STORE SCP listens and where results go."""

    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "VFRISK"
    stable_seconds: float = 10.0
    send_to: tuple[str, ...] = ()
    """Send targets, each ``HOST:PORT:AETITLE``: they receive the SEG, SR, Encapsulated PDF and key image."""
    retry_seconds: float = 5.0
    """First delay before a failed send is tried again (doubling, at most 5 minutes)."""


def listen_logging() -> None:
    """One INFO line per study on stderr for ``vfrisk listen``. pynetdicom's own messages are silenced: a failed
    send is reported by the sender on one line, with its retry."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name in ("vfrisk.listen", "vfrisk.pacs"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


class Service:
    """The running listener: receiver, intake, records and sender (see :func:`start_listener`)."""

    def __init__(self, receiver: Any, intake: Any, store: Any, sender: Any) -> None:
        self.receiver, self.intake, self.store, self.sender = receiver, intake, store, sender

    @property
    def port(self) -> int:
        """The DICOM port listened on."""
        return int(self.receiver.port)

    def stop(self) -> None:
        """Stop receiving, finish the study being scored, stop sending, close the records."""
        self.receiver.stop()
        self.sender.stop()
        self.store.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_listener(storage: Path, out: Path, listener: Listener, model: Path | None,
                   labs_csv: Path | None, engine: Any = None) -> Service:
    """Start the listener in background threads: studies received are scored once, the results queued for the
    send targets (retried until stored, across restarts), the labs file watched. Studies left ``received`` by a
    previous run and studies waiting for labs that are now there are handed over at once."""
    from inference.engine import Engine
    from interop.intake import LabsWatch, StudyIntake
    from interop.listen import Callbacks, Sender, Target, start_receiver
    from interop.state import StateStore

    try:
        targets = [Target.parse(t) for t in listener.send_to]
    except ValueError as exc:
        raise InputError("bad_usage", f"--send-to: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    store = StateStore(out / STATE_FILE)
    sender = Sender(store, calling_ae=listener.ae_title, retry_seconds=listener.retry_seconds)
    intake = StudyIntake(engine or Engine(model), store, LabsWatch(labs_csv), out, targets, wake=sender.wake)
    callbacks = Callbacks(on_study=intake.process, on_other=intake.other, on_received=intake.received,
                          on_tick=intake.check_labs)
    receiver = start_receiver(storage, callbacks, host=listener.host, port=listener.port,
                              ae_title=listener.ae_title, stable_seconds=listener.stable_seconds)
    intake.resubmit = receiver.submit
    for uid in intake.pending():
        receiver.submit(uid)
    intake.check_labs()
    return Service(receiver, intake, store, sender)


def listen(storage: Path, out: Path, listener: Listener, model: Path | None, labs_csv: Path | None) -> None:
    """``vfrisk listen``: run :func:`start_listener` until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    listen_logging()
    service = start_listener(storage, out, listener, model, labs_csv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


def _interrupt(*_: object) -> None:
    """SIGTERM stops the listener like Ctrl-C (the study being scored finishes, the records are closed)."""
    raise KeyboardInterrupt


def listen_status(out: Path) -> dict[str, Any]:
    """``vfrisk listen --status``: the record of every study and the outbox, as JSON."""
    from interop.state import StateStore

    path = out / STATE_FILE
    if not path.is_file():
        raise InputError("not_found", f"no listener records in {out.name} ({STATE_FILE})")
    store = StateStore(path)
    try:
        studies = [{"study_instance_uid": r.study_uid, "status": r.status, "reason": r.reason,
                    "probability": r.probability, "risk_category": r.risk_category, "times_scored": r.times_scored,
                    "series_instance_uid": r.key.series_uid if r.key else None,
                    "model_version": r.key.model_version if r.key else None,
                    "set_aside": len(store.set_aside_of(r.study_uid)),
                    "updated_at": dt.datetime.fromtimestamp(r.updated_at, dt.UTC).isoformat(timespec="seconds")}
                   for r in store.studies()]
        return {"studies": studies, "outbox": store.outbox()}
    finally:
        store.close()
