"""The local engine: reading, decoding, cropping and ONNX inference in worker processes (one single-threaded
ONNX Runtime session per worker, so only small outcomes travel back to the parent).

Workers are started by a fork server (a clean process, never a fork of the parent's ONNX Runtime threads). A
worker killed by the OS breaks a :class:`~concurrent.futures.ProcessPoolExecutor`; :class:`ResilientPool` then
starts a fresh pool and runs the rows that were in flight again one at a time, so the row that kills a worker
alone is the only one that becomes an error row (``worker_crashed``). Workers exit on their own when the parent
dies (a watchdog thread polls it), so a killed run leaves no orphan decoding in the background.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from inference.batch.tasks import Task
from inference.batch.work import Outcome, Prepared, error_outcome
from inference.workers import init_worker

Prepare = Callable[[Task], Prepared | Outcome]
CRASH_MESSAGE = "the worker process died while reading this study (killed by the operating system?)"


class ResilientPool:
    """A process pool whose broken workers cost only the row they were reading."""

    def __init__(self, workers: int, prepare: Prepare) -> None:
        self.workers = max(1, workers)
        self.prepare = prepare
        self.restarts = 0
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["inference.batch.work"])

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=init_worker,
                                   initargs=(os.getpid(),))

    def imap(self, tasks: Iterable[Task]) -> Iterator[Prepared | Outcome]:
        """Prepare every task; results come in completion order, exactly one per task."""
        pending: deque[Task] = deque(tasks)
        suspects: deque[Task] = deque()
        inflight: dict[Future[Prepared | Outcome], tuple[Task, bool]] = {}
        pool = self._new_pool()
        try:
            while pending or suspects or inflight:
                pool = self._fill(pool, pending, suspects, inflight)
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = yield from self._collect(done, inflight, suspects)
                if broken:
                    yield from self._drain_broken(inflight, suspects)
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._new_pool()
                    self.restarts += 1
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _fill(self, pool: ProcessPoolExecutor, pending: deque[Task], suspects: deque[Task],
              inflight: dict[Future[Prepared | Outcome], tuple[Task, bool]]) -> ProcessPoolExecutor:
        """Submit work: suspects one at a time and alone, otherwise up to two rows per worker."""
        while True:
            if suspects:
                if inflight:
                    return pool
                task, alone = suspects.popleft(), True
            elif pending and len(inflight) < 2 * self.workers:
                task, alone = pending.popleft(), False
            else:
                return pool
            try:
                inflight[pool.submit(self.prepare, task)] = (task, alone)
            except BrokenProcessPool:
                (suspects if alone else pending).appendleft(task)
                pool.shutdown(wait=False, cancel_futures=True)
                pool = self._new_pool()

    def _collect(self, done: set[Future[Prepared | Outcome]],
                 inflight: dict[Future[Prepared | Outcome], tuple[Task, bool]],
                 suspects: deque[Task]) -> Generator[Prepared | Outcome, None, bool]:
        """Yield finished results; rows lost to a broken pool become suspects. Return True when it broke."""
        broken = False
        for fut in done:
            task, alone = inflight.pop(fut)
            outcome, broke = self._result(fut, task, alone)
            broken = broken or broke
            if outcome is None:
                suspects.append(task)
            else:
                yield outcome
        return broken

    def _drain_broken(self, inflight: dict[Future[Prepared | Outcome], tuple[Task, bool]],
                      suspects: deque[Task]) -> Iterator[Prepared | Outcome]:
        """After a break, every other row in flight is either finished or a suspect to run again alone."""
        for fut, (task, alone) in list(inflight.items()):
            wait([fut])
            outcome, _ = self._result(fut, task, alone)
            if outcome is None:
                suspects.append(task)
            else:
                yield outcome
        inflight.clear()

    @staticmethod
    def _result(fut: Future[Prepared | Outcome], task: Task,
                alone: bool) -> tuple[Prepared | Outcome | None, bool]:
        """(result, pool broke): None for a row to retry alone; a crash row when it broke a pool alone."""
        try:
            return fut.result(), False
        except BrokenProcessPool:
            return (error_outcome(task.key, "worker_crashed", CRASH_MESSAGE) if alone else None), True
        except Exception as exc:  # e.g. a result that cannot be unpickled: this row only
            return error_outcome(task.key, "internal_error", f"{type(exc).__name__} in a worker"), False
