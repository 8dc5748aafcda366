"""``--engine ray``: the same two stages on Ray Data (optional extra ``vfrisk[ray]``).

Reading, decoding and cropping run as Ray tasks (``prepare``); scoring runs in an actor pool where each actor
holds one ONNX Runtime session (``score``). Rows travel as pickled :class:`Task`/:class:`Prepared`/
:class:`Outcome` objects, one row per block, and reach the driver as they finish: the driver commits each to
the results database exactly as the local engine does, so resuming works the same way.

Tasks and actors ask for half a CPU each: with whole CPUs, actors holding every core of a small machine leave
no room for the tasks that feed them and Ray Data waits forever. A row whose task keeps crashing (Ray retries
it) costs that row only: its block is allowed to fail (``max_errored_blocks``) and the row becomes an
``error`` row (``worker_crashed``).

The driver joins the cluster in ``RAY_ADDRESS`` when it is set (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others, each with vfrisk installed), else it starts a local instance.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from inference.batch.local import CRASH_MESSAGE
from inference.batch.tasks import Task
from inference.batch.work import Outcome, error_outcome, prepare, score
from inference.bundle import Bundle
from inference.spec import PreprocessSpec

CPUS_PER_TASK = 0.5
CPUS_PER_ACTOR = 0.25
ACTOR_THREADS = 1
"""ONNX Runtime threads per actor (actors scale out; one thread each keeps them from fighting over cores)."""


def _prepare_row(row: dict[str, Any], spec: PreprocessSpec, lab_ranges: dict[str, list[float]]) -> dict[str, Any]:
    """Ray task: one pickled Task in, one pickled Prepared or Outcome out."""
    task: Task = pickle.loads(row["task"])
    return {"key": task.key, "item": pickle.dumps(prepare(task, spec, lab_ranges))}


class _Scorer:
    """Ray actor: one ONNX Runtime session, loaded once."""

    def __init__(self, bundle: str) -> None:
        from inference.engine import Engine

        self.engine = Engine(Path(bundle), threads=ACTOR_THREADS)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """Score one prepared row."""
        outcome = score(self.engine.run, pickle.loads(row["item"]))
        return {"key": row["key"], "outcome": pickle.dumps(outcome)}


def _init_ray() -> bool:
    """Connect to RAY_ADDRESS or start a local instance; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    return True


def _dataset(todo: Sequence[Task], bundle: Bundle, lab_ranges: dict[str, list[float]], workers: int) -> Any:
    """The pipeline: items -> prepare tasks -> scoring actors."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = len(todo)
    ctx.enable_progress_bars = False
    items = [{"task": pickle.dumps(t)} for t in todo]
    ds: Any = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(_prepare_row, fn_kwargs={"spec": bundle.spec, "lab_ranges": lab_ranges}, num_cpus=CPUS_PER_TASK)
    return ds.map(_Scorer, fn_constructor_kwargs={"bundle": str(bundle.path)}, num_cpus=CPUS_PER_ACTOR,
                  concurrency=(1, max(1, workers)))


def ray_outcomes(todo: Sequence[Task], bundle: Bundle, workers: int) -> Iterator[Outcome]:
    """Outcomes of every task, as Ray Data finishes them; rows lost to crashes come last as error rows."""
    import ray

    lab_ranges = bundle.lab_ranges
    started = _init_ray()
    seen: set[str] = set()
    try:
        for row in _dataset(todo, bundle, lab_ranges, workers).iter_rows():
            outcome: Outcome = pickle.loads(row["outcome"])
            seen.add(outcome.key)
            yield outcome
    finally:
        if started:
            ray.shutdown()
    for task in todo:
        if task.key not in seen:
            yield error_outcome(task.key, "worker_crashed", CRASH_MESSAGE)
