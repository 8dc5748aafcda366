"""``vfrisk score``: plan the rows, skip those already done, score the rest, write the table and the report.

The recipe, stage by stage::

    plan      = read_manifest(...) or discover(...)          # rows, keys, source fingerprints
    todo      = rows not already ok for this model and input  # from the results database
    outcomes  = local or Ray engine over todo                 # each committed to the database on arrival
                                                              # (and the table of the rows done so far
                                                              # rewritten every few seconds)
    table     = manifest columns + results, from the database # written atomically (tmp + rename)
    report    = build_run_report(...)                         # <out>.report.json

The whole run holds ``<out>.lock`` (:mod:`inference.batch.lock`): a second live run on the same output refuses,
naming the first; a run killed with SIGKILL leaves no lock behind, so the next one resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from inference.batch.discover import discover
from inference.batch.lock import output_lock
from inference.batch.report import RunStats, build_run_report
from inference.batch.store import Record, ResultStore, redacted, sqlite_url
from inference.batch.table import RESULT_COLUMNS, LiveTable, atomic_write, table_format, table_rows, write_table
from inference.batch.tasks import Plan, Task, read_manifest
from inference.batch.work import Outcome, Prepared, prepare
from inference.bundle import Bundle, load_bundle
from inference.errors import InputError
from inference.spec import PreprocessSpec

log = logging.getLogger("vfrisk.batch")
ENGINES = ("local", "ray")


class PrepareFn(Protocol):
    """The worker stage (:func:`inference.batch.work.prepare`, or a test's stand-in)."""

    def __call__(self, task: Task, spec: PreprocessSpec, lab_ranges: dict[str, list[float]]) -> Prepared | Outcome:
        """Read, decode, validate and crop one row."""
        ...


@dataclass(frozen=True)
class ScoreOptions:
    """The options of one batch run (``vfrisk score``)."""

    archive: Path
    """Folder the manifest's ``study`` paths are relative to (or that is searched, without a manifest)."""
    manifest: Path | None
    """Manifest CSV (DESIGN.md); None: folder-only mode, labs from ``labs_csv``."""
    out: Path
    """Results table, ``.csv`` or ``.parquet``; also names the job in the database."""
    engine: str = "local"
    """``local`` (worker processes) or ``ray`` (Ray Data, local instance or the cluster in RAY_ADDRESS)."""
    workers: int = 0
    """Decoding processes (local) or maximum scoring actors (ray); 0: one per available core."""
    model: Path | None = None
    """Model bundle folder; None: the bundled default."""
    db: str | None = None
    """SQLAlchemy URL of the results database; None: SQLite file ``<out>.sqlite`` next to the table."""
    labs_csv: Path | None = None
    """Folder-only mode: labs keyed by ``study_instance_uid``."""
    table_every_s: float = 5.0
    """While scoring, rewrite the table with the rows done so far at most this often (seconds)."""


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def database_url(opts: ScoreOptions) -> str:
    """The results database URL; ``postgresql://`` is given the installed psycopg 3 driver."""
    if opts.db is None:
        return sqlite_url(opts.out.with_suffix(".sqlite"))
    url = opts.db
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _check(opts: ScoreOptions) -> None:
    """Usage errors, before any work."""
    if opts.engine not in ENGINES:
        raise InputError("bad_usage", f"--engine must be local or ray, not {opts.engine}")
    table_format(opts.out)
    if not opts.archive.is_dir():
        raise InputError("not_found", f"the archive {opts.archive.name} is not a folder")
    if opts.manifest is None and opts.labs_csv is None:
        raise InputError("bad_usage", "give --manifest, or --labs for the folder-only mode")
    if opts.manifest is not None and opts.labs_csv is not None:
        raise InputError("bad_usage", "--labs is for the folder-only mode: the manifest already holds the labs")
    if opts.workers < 0:
        raise InputError("bad_usage", "--workers must be 0 (all cores) or more")


def make_plan(opts: ScoreOptions) -> Plan:
    """The rows to score, from the manifest or from a walk of the archive."""
    archive = opts.archive.resolve()  # absolute: Ray workers do not share the driver's working directory
    plan = read_manifest(opts.manifest, archive) if opts.manifest else discover(archive, opts.labs_csv)
    clash = [c for c in plan.columns if c in RESULT_COLUMNS]
    if clash:
        raise InputError("bad_manifest", f"the manifest uses result column name(s): {', '.join(clash)}")
    return plan


def is_done(previous: Record | None, task: Task, model: dict[str, str]) -> bool:
    """True when the row is already ok for this model (version and hash) and this input fingerprint."""
    return (previous is not None and previous.status == "ok" and previous.model_version == model["version"]
            and previous.model_sha256 == model["sha256"] and previous.source_fingerprint == task.fingerprint)


def stamp(outcome: Outcome, task: Task, model: dict[str, str]) -> Record:
    """The stored form of an outcome: model identity, input fingerprint and time added."""
    return Record(key=task.key, row_index=task.index, status=outcome.status, probability=outcome.probability,
                  error=outcome.error, series_instance_uid=outcome.series_instance_uid,
                  model_version=model["version"], model_sha256=model["sha256"], input_sha256=outcome.input_sha256,
                  source_fingerprint=task.fingerprint,
                  scored_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))


def local_outcomes(todo: Sequence[Task], bundle: Bundle, workers: int,
                   prepare_fn: PrepareFn = prepare) -> tuple[Iterator[Outcome], Callable[[], int]]:
    """Outcomes of the local engine, and a function giving its pool restarts so far."""
    from inference.batch.local import ResilientPool
    from inference.batch.work import prepare_and_score

    pool = ResilientPool(workers, partial(prepare_and_score, spec=bundle.spec, lab_ranges=bundle.lab_ranges,
                                          bundle=str(bundle.path), prepare_fn=prepare_fn))
    return (_outcome(item) for item in pool.imap(todo)), lambda: pool.restarts


def _outcome(item: Outcome | Prepared) -> Outcome:
    """Local workers score their rows themselves: what comes back is always an outcome."""
    assert isinstance(item, Outcome)
    return item


def _outcomes(opts: ScoreOptions, todo: Sequence[Task], bundle: Bundle,
              prepare_fn: PrepareFn) -> tuple[Iterator[Outcome], Callable[[], int]]:
    workers = opts.workers or default_workers()
    attempt = [t for t in todo if t.problem is None]
    refused = (prepare(t, bundle.spec, {}) for t in todo if t.problem is not None)
    if not attempt:
        return (o for o in refused if isinstance(o, Outcome)), lambda: 0
    restarts: list[Callable[[], int]] = []

    def engine(tasks: Sequence[Task]) -> Iterator[Outcome]:
        if opts.engine == "ray":
            from inference.batch.ray_engine import ray_outcomes

            return ray_outcomes(tasks, bundle, workers)
        scored, count = local_outcomes(tasks, bundle, workers, prepare_fn)
        restarts.append(count)
        return scored

    return _chain(refused, two_pass(attempt, engine)), lambda: sum(count() for count in restarts)


def two_pass(tasks: Sequence[Task], engine: Callable[[Sequence[Task]], Iterator[Outcome]]) -> Iterator[Outcome]:
    """Score ``tasks``; rows whose first crop missed part of the spine of a longer scan are held back (never
    stored, so a killed run redoes them) and scored again on a crop centred where the first pass put the spine;
    the pass that finds more levels is kept. The same rule as :meth:`inference.engine.Engine.locate`, so
    ``vfrisk score`` and ``vfrisk predict`` give the same result for the same study."""
    held: dict[str, Outcome] = {}
    again: list[Task] = []
    by_key = {t.key: t for t in tasks}
    for outcome in engine(tasks):
        if outcome.recentre_at is None:
            yield outcome
        else:
            held[outcome.key] = outcome
            again.append(replace(by_key[outcome.key], z_centre_index=outcome.recentre_at))
    if not again:
        return
    for second in engine(again):
        first = held.pop(second.key)
        better = second.status == "ok" or second.code == "spine_not_covered"
        yield second if better and second.levels_found > first.levels_found else replace(first, recentre_at=None)


def _chain(*parts: Iterator[Outcome | Prepared]) -> Iterator[Outcome]:
    for part in parts:
        for item in part:
            assert isinstance(item, Outcome)
            yield item


def _score_rows(opts: ScoreOptions, todo: Sequence[Task], bundle: Bundle, store: ResultStore,
                prepare_fn: PrepareFn, live: LiveTable) -> tuple[RunStats, int]:
    """Score ``todo``, committing each row as it arrives (and to the ``live`` table); a progress bar with rate
    and ETA on stderr."""
    from tqdm import tqdm

    by_key = {t.key: t for t in todo}
    stats = RunStats()
    outcomes, restarts = _outcomes(opts, todo, bundle, prepare_fn)
    with tqdm(total=len(todo), desc="score", unit="study", file=sys.stderr, mininterval=1.0,
              disable=not todo) as bar:
        for outcome in outcomes:
            task = by_key[outcome.key]
            record = stamp(outcome, task, bundle.identity)
            store.put(record)
            live.add(record)
            stats.add(outcome)
            log.info("row %d series %s: %s", task.index, outcome.series_instance_uid or "-",
                     outcome.code or "ok")
            bar.update(1)
    return stats, restarts()


def _final_records(plan: Plan, store: ResultStore) -> list[Record]:
    """Every row's stored result, in manifest order (a missing row is a bug, never a silent gap)."""
    stored = store.load()
    missing = [t.index for t in plan.tasks if t.key not in stored]
    if missing:
        raise RuntimeError(f"{len(missing)} row(s) have no result after the run (first: row {missing[0]})")
    return [stored[t.key] for t in plan.tasks]


def run_score(opts: ScoreOptions, prepare_fn: PrepareFn = prepare) -> dict[str, Any]:
    """Run a batch job end to end, holding the output's lock; return the summary (the run report's headline).

    Raises:
        InputError: ``output_locked`` when another live run writes the same output, besides the usage errors.

    """
    t0 = time.perf_counter()
    _check(opts)
    plan = make_plan(opts)
    bundle = load_bundle(opts.model)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(opts.out):
        return _run_locked(opts, plan, bundle, prepare_fn, t0)


def _run_locked(opts: ScoreOptions, plan: Plan, bundle: Bundle, prepare_fn: PrepareFn, t0: float) -> dict[str, Any]:
    """The run itself, once the output is ours."""
    timings = {"plan": time.perf_counter() - t0}
    url = database_url(opts)
    store = ResultStore(url, str(opts.out.resolve()))
    try:
        previous = store.load()
        todo = [t for t in plan.tasks if not is_done(previous.get(t.key), t, bundle.identity)]
        pending = {t.key for t in todo}
        live = LiveTable(opts.out, plan.columns, [(t.key, t.values) for t in plan.tasks],
                         {k: r for k, r in previous.items() if k not in pending}, opts.table_every_s)
        live.write()  # from the start, a readable table of what is done
        t1 = time.perf_counter()
        stats, restarts = _score_rows(opts, todo, bundle, store, prepare_fn, live)
        timings["score"] = time.perf_counter() - t1
        records = _final_records(plan, store)
    finally:
        store.close()
    t2 = time.perf_counter()
    write_table(opts.out, plan.columns, table_rows([t.values for t in plan.tasks], records))
    timings["write_table"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    options = {k: str(v) if v is not None else None for k, v in asdict(opts).items()} | {"db": redacted(url)}
    report = build_run_report(options=options, model=bundle.identity, records=records, stats=stats,
                              skipped=len(plan.tasks) - len(todo), timings=timings, restarts=restarts)
    report_path = opts.out.with_suffix(".report.json")
    atomic_write(report_path, (json.dumps(report, indent=2) + "\n").encode())
    return summary(report, opts.out, report_path)


def summary(report: dict[str, Any], out: Path, report_path: Path) -> dict[str, Any]:
    """The JSON the CLI prints: where things are and what happened."""
    return {"table": str(out), "database": report["options"]["db"], "report": str(report_path),
            "model": report["model"], "rows": report["rows"], "counts": report["counts"],
            "reasons": report["reasons"], "this_run": report["this_run"],
            "seconds": round(report["timings_s"]["total"], 2)}


def score_cli(archive: Path, manifest: Path | None, out: Path, engine: str = "local", workers: int = 0,
              model: Path | None = None, db: str | None = None, labs_csv: Path | None = None) -> dict[str, Any]:
    """``vfrisk score``: batch-score an archive, resumably; return the summary JSON to print."""
    return run_score(ScoreOptions(archive=archive, manifest=manifest, out=out, engine=engine, workers=workers,
                                  model=model, db=db, labs_csv=labs_csv))
