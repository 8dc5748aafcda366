"""The kill test: SIGKILL a scoring run at random moments, re-run, and end with the uninterrupted run's table."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_batch_support import read_table, reference_table, shared_archive, without_time

SCORE = ("import json, sys; from pathlib import Path; from inference.batch import score_cli; "
         "a = sys.argv[1:]; print(json.dumps(score_cli(Path(a[0]), Path(a[1]), Path(a[2]), 'local', 2, "
         "Path(a[3]), None, None)))")
KILLS = 4


@pytest.fixture(scope="module")
def batch_archive(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_archive(tiny_run, tmp_path_factory)


def _start(archive: Path, out: Path, bundle: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SCORE, str(archive), str(archive / "manifest.csv"), str(out),
                             str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the scoring process first (the test), then whatever it started (clean-up)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_sigkill_at_random_moments_then_resume_gives_the_same_table(batch_archive: Path, scoring_bundle: Path,
                                                                     tmp_path: Path) -> None:
    reference, _ = reference_table(batch_archive, scoring_bundle)
    out = tmp_path / "killed.csv"
    t0 = time.perf_counter()
    proc = _start(batch_archive, tmp_path / "timing.csv", scoring_bundle)
    proc.communicate(timeout=300)
    duration = time.perf_counter() - t0
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for _ in range(KILLS):
        proc = _start(batch_archive, out, scoring_bundle)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=rng.uniform(0.2, duration))
        _kill_group(proc)
    proc = _start(batch_archive, out, scoring_bundle)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"seed {seed}"
    assert json.loads(stdout)["rows"] == len(reference)  # stdout holds the summary JSON and nothing else
    assert without_time(read_table(out)) == without_time(reference), f"seed {seed}"
    with sqlite3.connect(out.with_suffix(".sqlite")) as db:
        count = db.execute("select count(*) from vfrisk_results where job = ?", (str(out.resolve()),)).fetchone()
    assert count[0] == len(reference), f"seed {seed}"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.startswith(".killed")]
