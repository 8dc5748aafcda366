"""The two stages of scoring one row, as pure-ish functions that pass typed results.

``prepare`` runs in a worker process (or a Ray task): read and decode the study, validate the labs, cut the
shared spine crop. ``score`` runs where the ONNX session lives (the same local worker, or a Ray actor). Every
refusal becomes an ``error`` :class:`Outcome` with its reason code; nothing here raises for a bad row.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.batch.tasks import Task
from inference.crop import Crop
from inference.dicom.limits import Limits
from inference.engine import crop_sha256
from inference.errors import InputError
from inference.findings import coverage_levels, find_bodies, recentre_target, require_levels, scanned_mm
from inference.io import load_crop_any
from inference.labs import LabInput, Labs, resolve_labs
from inference.spec import LEVELS, OTHER, PreprocessSpec


def worker_limits() -> Limits:
    """The operator's limits (:meth:`Limits.from_env`), decoding with one thread: the job runs one worker per
    core, so at most (workers x the study memory budget) is held at once."""
    return Limits.from_env(workers=1)


PROBABILITY_DIGITS = 6
"""Significant digits kept in the table, so that engines with other thread counts give the same table."""


@dataclass(frozen=True)
class WorkerStats:
    """Which process did the work, its peak resident memory and the CPU time it has used so far."""

    pid: int
    peak_rss_mb: float
    cpu_s: float = 0.0
    """CPU seconds (user + system, all threads) of the process since it started."""


@dataclass(frozen=True)
class Outcome:
    """The result of one row, before it is stamped with the model and the time."""

    key: str
    status: str
    """``ok`` or ``error``."""
    probability: float | None = None
    error: str = ""
    """One line ``code: message`` for error rows."""
    series_instance_uid: str = ""
    input_sha256: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    worker: WorkerStats | None = None
    levels_found: int = 0
    recentre_at: float | None = None
    """Set on a first-pass outcome that is provisional: the study should be cropped again centred on this slice
    (the rule of :meth:`inference.engine.Engine.locate`), and the pass that finds more levels kept."""

    @property
    def code(self) -> str:
        """The reason code of an error row ('' for ok rows)."""
        return self.error.split(":", 1)[0] if self.error else ""


@dataclass(frozen=True)
class Prepared:
    """A decoded, validated study ready for the model."""

    key: str
    crop: Crop
    labs: Labs
    series_instance_uid: str
    input_sha256: str
    seconds: dict[str, float]
    worker: WorkerStats
    second_pass: bool = False


def worker_stats() -> WorkerStats:
    """The current process id, its peak RSS (Linux reports ``ru_maxrss`` in KiB) and its CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return WorkerStats(os.getpid(), round(usage.ru_maxrss / 1024, 1), round(usage.ru_utime + usage.ru_stime, 3))


def error_outcome(key: str, code: str, message: str, **extra: object) -> Outcome:
    """An error row with a one-line ``code: message``."""
    line = " ".join(f"{code}: {message}".split())
    return Outcome(key=key, status="error", error=line, **extra)  # type: ignore[arg-type]


def _timed(seconds: dict[str, float], name: str, func: Callable[[], object]) -> object:
    t0 = time.perf_counter()
    out = func()
    seconds[name] = time.perf_counter() - t0
    return out


def _prepare(task: Task, spec: PreprocessSpec, lab_ranges: dict[str, list[float]]) -> Prepared:
    seconds: dict[str, float] = {}
    given = LabInput.from_cells(task.labs)
    source = [*task.source] if len(task.source) > 1 else task.source[0]
    study, crop = load_crop_any(source, spec, z_centre_index=task.z_centre_index, limits=worker_limits(),
                                timings=seconds)
    sha = str(_timed(seconds, "hash", lambda: crop_sha256(crop)))  # what the model sees, as in `vfrisk predict`
    try:
        labs = resolve_labs(given, study, lab_ranges)
    except InputError as exc:
        raise _LocatedError(exc, study.series_instance_uid, sha) from exc
    return Prepared(task.key, crop, labs, study.series_instance_uid, sha, seconds, worker_stats(),
                    second_pass=task.z_centre_index is not None)


class _LocatedError(Exception):
    """A lab error raised after the study was read: keeps what is known about the series."""

    def __init__(self, error: InputError, series: str, sha: str) -> None:
        super().__init__(error.message)
        self.error, self.series, self.sha = error, series, sha


def prepare(task: Task, spec: PreprocessSpec, lab_ranges: dict[str, list[float]]) -> Prepared | Outcome:
    """Read, decode, validate and crop one row (runs in a worker); an error :class:`Outcome` on refusal."""
    if task.problem is not None:
        return error_outcome(task.key, *task.problem)
    try:
        return _prepare(task, spec, lab_ranges)
    except InputError as exc:
        return error_outcome(task.key, exc.code, exc.message, worker=worker_stats())
    except _LocatedError as exc:
        return error_outcome(task.key, exc.error.code, exc.error.message, series_instance_uid=exc.series,
                             input_sha256=exc.sha, worker=worker_stats())
    except (Exception, RecursionError) as exc:  # a hostile file must cost this row only
        return error_outcome(task.key, "internal_error", f"{type(exc).__name__} while reading the study",
                             worker=worker_stats())


def score(run: Callable[[Crop, Labs], dict[str, np.ndarray]], item: Prepared | Outcome) -> Outcome:
    """The model's probability for a prepared row (``run`` is :meth:`Engine.run`); outcomes pass through."""
    if isinstance(item, Outcome):
        return item
    seconds = dict(item.seconds)
    t0 = time.perf_counter()
    try:
        out = run(item.crop, item.labs)
    except Exception as exc:  # an ONNX Runtime failure on one input costs that row only
        return error_outcome(item.key, "inference_failed", type(exc).__name__, series_instance_uid=
                             item.series_instance_uid, input_sha256=item.input_sha256, worker=item.worker)
    seconds["inference"] = time.perf_counter() - t0
    bodies = find_bodies(out, (*LEVELS, OTHER), scanned_mm(item.crop))
    present, narrow = coverage_levels(LEVELS, bodies, item.crop)  # named by the count, as `vfrisk predict`
    recentre = None if item.second_pass else recentre_target(LEVELS, out, item.crop)
    try:
        require_levels(present, narrow)  # the same anatomy-coverage rule as `vfrisk predict`
    except InputError as exc:
        return error_outcome(item.key, exc.code, exc.message, series_instance_uid=item.series_instance_uid,
                             input_sha256=item.input_sha256, worker=item.worker, levels_found=len(present),
                             recentre_at=recentre)
    probability = float(f"{float(out['probability']):.{PROBABILITY_DIGITS}g}")
    return Outcome(key=item.key, status="ok", probability=probability,
                   series_instance_uid=item.series_instance_uid, input_sha256=item.input_sha256,
                   seconds=seconds, worker=item.worker, levels_found=len(present), recentre_at=recentre)


_ENGINES: dict[str, Any] = {}


def prepare_and_score(task: Task, spec: PreprocessSpec, lab_ranges: dict[str, list[float]], bundle: str,
                      prepare_fn: Callable[..., Prepared | Outcome] = prepare) -> Outcome:
    """Both stages in one local worker, with that process's own single-threaded ONNX Runtime session (loaded
    once): only the small :class:`Outcome` goes back to the parent, never the crop (33 MB at 512 x 512)."""
    from inference.engine import Engine

    item = prepare_fn(task, spec=spec, lab_ranges=lab_ranges)
    if isinstance(item, Outcome):
        return item
    engine = _ENGINES.get(bundle)
    if engine is None:
        engine = _ENGINES.setdefault(bundle, Engine(Path(bundle), threads=1))
    outcome = score(engine.run, item)
    return replace(outcome, worker=worker_stats())  # this process also ran the model: its usage after that
