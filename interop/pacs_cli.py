"""PACS glue for the CLI: ``vfrisk score --dicomweb URL`` and ``vfrisk listen``.

Studies pulled over DICOMweb are staged inside the output's folder (``<out>.dicomweb/<StudyInstanceUID>/``)
and scored by the same batch pipeline and resume rules as a folder archive; with ``push`` the DICOM SR and SEG
of every study scored ``ok`` are stored back (STOW-RS) once, checking the store response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from inference.errors import InputError

log = logging.getLogger("vfrisk.pacs")


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
                  limit: int | None) -> list[str]:
    """QIDO-RS search, then WADO-RS retrieve every study not yet staged; returns the study UIDs found."""
    from interop.dicomweb import client, retrieve_study, search_studies

    dw = client(url)
    refs = search_studies(dw, date_from=date_from, date_to=date_to, modality="CT", limit=limit)
    done = stage / ".retrieved"
    done.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        uid = ref.study_instance_uid
        if (done / uid).is_file():
            continue
        retrieve_study(dw, uid, stage / "studies" / uid)
        (done / uid).touch()
    return [r.study_instance_uid for r in refs]


def push_results(url: str, stage: Path, uids: list[str], labs_csv: Path | None, model: Path | None,
                 reports: Path) -> dict[str, int]:
    """Store the SR and SEG of each staged study back to the PACS once (a marker per study)."""
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
            files = write_reports(result, study, folder, reports / uid, formats=("json", "sr", "seg"))
        except InputError as exc:
            log.info("study %s not pushed: %s", uid, exc.code)
            counts["refused"] += 1
            continue
        store_files(dw, [p for k, p in files.items() if k in ("sr", "seg")])
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
                   date_to: date | None = None, limit: int | None = None, push: bool = False) -> dict[str, Any]:
    """Pull CT studies from a DICOMweb server, score them like a folder archive, optionally push SR/SEG back."""
    from inference.batch import score_cli

    stage = out.parent / f"{out.name}.dicomweb"
    uids = stage_studies(url, stage, date_from, date_to, limit)
    if not uids:
        raise InputError("no_studies", "the DICOMweb search found no CT study")
    summary = score_cli(stage / "studies", None, out, engine=scoring.engine, workers=scoring.workers,
                        model=scoring.model, db=scoring.db, labs_csv=scoring.labs_csv)
    summary["dicomweb"] = {"studies": len(uids)}
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
    send_to: tuple[str, int, str] | None = None
    """Send the SR back by C-STORE to (host, port, AE title)."""


def listen(storage: Path, out: Path, listener: Listener, model: Path | None, labs_csv: Path | None) -> None:
    """C-STORE SCP: score each study once it is complete; write the reports under ``out`` and optionally send
    the SR back. Refusals are logged with their reason."""
    host, port, ae_title = listener.host, listener.port, listener.ae_title
    stable_seconds, send_to = listener.stable_seconds, listener.send_to
    from inference.engine import Engine
    from interop.listen import send_files, serve_forever
    from vfrisk.pipeline import write_reports

    engine, labs = Engine(model), _labs_by_uid(labs_csv)

    def on_study(uid: str, folder: Path) -> None:
        row = labs.get(uid, {})
        study, result = _score_folder(folder, row, engine)
        files = write_reports(result, study, folder, out / uid)
        log.info("study %s scored: p=%.3f", uid, result.probability)
        if send_to is not None and "sr" in files:
            send_files([files["sr"]], send_to[0], send_to[1], called_ae=send_to[2])

    serve_forever(storage, on_study, host=host, port=port, ae_title=ae_title, stable_seconds=stable_seconds)
