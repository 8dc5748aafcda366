"""The run report of a batch job, built by a pure function from what the run counted and timed."""

from __future__ import annotations

import platform
import resource
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from inference.batch.store import Record
from inference.batch.work import Outcome

LIBRARIES = ("vfrisk", "numpy", "pydicom", "onnxruntime", "sqlalchemy", "pyarrow", "ray")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries a batch run depends on."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass
class RunStats:
    """What this run did, accumulated row by row."""

    stage_seconds: Counter[str] = field(default_factory=Counter)
    scored: int = 0
    peak_rss_mb: dict[int, float] = field(default_factory=dict)
    """Peak resident memory of each worker process (by pid) seen in this run."""
    cpu_s: dict[int, float] = field(default_factory=dict)
    """CPU seconds each worker process (by pid) had used at its last row seen in this run."""

    def add(self, outcome: Outcome) -> None:
        """Count one row scored in this run."""
        self.scored += 1
        self.stage_seconds.update(outcome.seconds)
        if outcome.worker is not None:
            pid = outcome.worker.pid
            self.peak_rss_mb[pid] = max(self.peak_rss_mb.get(pid, 0.0), outcome.worker.peak_rss_mb)
            self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), outcome.worker.cpu_s)


def parent_peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build_run_report(*, options: dict[str, Any], model: dict[str, str], records: list[Record], stats: RunStats,
                     skipped: int, timings: dict[str, float], restarts: int) -> dict[str, Any]:
    """Versions, options, model identity, counts by status and reason code, timings, peak memory."""
    by_status = Counter(r.status for r in records)
    reasons = Counter(r.error.split(":", 1)[0] for r in records if r.status == "error")
    n = max(stats.scored, 1)
    return {
        "versions": library_versions(),
        "options": options,
        "model": model,
        "rows": len(records),
        "counts": {"ok": by_status.get("ok", 0), "error": by_status.get("error", 0)},
        "reasons": dict(sorted(reasons.items())),
        "this_run": {"scored": stats.scored, "skipped_already_ok": skipped, "pool_restarts": restarts},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "mean_stage_s": {k: round(v / n, 4) for k, v in sorted(stats.stage_seconds.items())},
        "studies_per_minute": round(60 * stats.scored / timings["score"], 1) if timings.get("score") else None,
        "peak_rss_mb": {"parent": parent_peak_rss_mb(),
                        "workers": [stats.peak_rss_mb[pid] for pid in sorted(stats.peak_rss_mb)]},
        "worker_cpu_s": [stats.cpu_s[pid] for pid in sorted(stats.cpu_s)],
    }
