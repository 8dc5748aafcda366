"""Issue 24, item 7: a batch run locks its output (released by the OS when it dies), writes the table as it goes,
and words its error rows as the CLI does.

The lock test runs a real ``run_score`` in a subprocess with a slow stand-in worker stage (no decoding, no model
run), so it takes seconds: a second run on the same output refuses naming the first's pid, the first is killed
with SIGKILL, its table of finished rows is readable, and a third run resumes and completes.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.batch import ScoreOptions, run_score
from inference.batch.lock import lock_path, output_lock
from inference.batch.tasks import Task
from inference.batch.work import Outcome
from inference.errors import InputError
from inference.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[1]
ROWS = 12
ROW_SECONDS = 0.4


def slow_prepare(task: Task, spec: PreprocessSpec, lab_ranges: dict[str, list[float]]) -> Outcome:
    """Stand-in worker stage: every row takes ROW_SECONDS and scores 0.5."""
    time.sleep(ROW_SECONDS)
    return Outcome(key=task.key, status="ok", probability=0.5, series_instance_uid="1.2.3", input_sha256="0" * 64)


RUN = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
       "from inference.batch import ScoreOptions, run_score; from test_hardening_batch import slow_prepare; "
       "a = Path(sys.argv[2]); run_score(ScoreOptions(archive=a, manifest=a / 'manifest.csv', out=Path(sys.argv[3]), "
       "workers=1, table_every_s=0.0), prepare_fn=slow_prepare)")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    lines = ["study,ntx,bmd_tscore,age,sex"]
    for i in range(ROWS):
        (root / "studies" / f"s{i:02d}").mkdir(parents=True)
        lines.append(f"studies/s{i:02d},20,-1,60,F")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _wait_for_rows(out: Path, proc: subprocess.Popen[bytes], n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first run ended early"
        with contextlib.suppress(FileNotFoundError):
            if len(_rows(out)) >= n:
                return
        time.sleep(0.1)
    raise AssertionError("the first run wrote no rows")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(300)
def test_second_run_refused_then_kill_leaves_a_table_and_resume_completes(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.csv"
    first = subprocess.Popen([sys.executable, "-c", RUN, str(REPO / "tests"), str(archive), str(out)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_rows(out, first, 2)
        opts = ScoreOptions(archive=archive, manifest=archive / "manifest.csv", out=out, workers=1)
        with pytest.raises(InputError) as info:
            run_score(opts, prepare_fn=slow_prepare)
        assert info.value.code == "output_locked" and f"pid {first.pid} " in info.value.message
        cli = subprocess.run([sys.executable, "-m", "vfrisk.cli", "score", str(archive), "--manifest",
                              str(archive / "manifest.csv"), "--out", str(out)], cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=False)
        assert cli.returncode == 2
        assert cli.stderr.splitlines() == [f"error: {info.value.message}"]
        assert first.poll() is None  # the refused runs did not disturb the first
    finally:
        _kill_group(first)
    assert lock_path(out).exists()  # a stale file, but no lock: the kernel dropped it with the process
    done = _rows(out)
    assert 2 <= len(done) < ROWS and {r["status"] for r in done} == {"ok"}
    assert [r["study"] for r in done] == sorted(r["study"] for r in done)  # manifest order, finished rows only
    summary = run_score(ScoreOptions(archive=archive, manifest=archive / "manifest.csv", out=out, workers=1,
                                     table_every_s=0.0), prepare_fn=slow_prepare)
    assert summary["this_run"]["skipped_already_ok"] >= len(done)
    assert len(_rows(out)) == ROWS and not lock_path(out).exists()
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_lock_is_exclusive_and_reentrant_after_release(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with output_lock(out) as path:
        assert f"pid {os.getpid()} " in path.read_text()
        with pytest.raises(InputError) as info, output_lock(out):
            pass
        assert info.value.code == "output_locked"
    assert not lock_path(out).exists()
    with output_lock(out):
        pass


def test_error_rows_use_the_cli_words(tiny_cohort: Path, tmp_path: Path) -> None:
    """A decode failure reads the same in the table as on the CLI's error line, without a file name."""
    study = tmp_path / "archive" / "studies" / "trunc"
    shutil.copytree(tiny_cohort / "studies" / "S00000", study)
    files = sorted(p for p in study.rglob("*") if p.is_file())
    victim = files[len(files) // 2]
    victim.write_bytes(victim.read_bytes()[:-100])
    manifest = tmp_path / "archive" / "manifest.csv"
    manifest.write_text("study,ntx,bmd_tscore,age,sex\nstudies/trunc,20,-1,60,F\n")
    out = tmp_path / "r.csv"
    run_score(ScoreOptions(archive=tmp_path / "archive", manifest=manifest, out=out, workers=1))
    row = _rows(out)[0]
    cli = subprocess.run([sys.executable, "-m", "vfrisk.cli", "predict", str(study), "--ntx", "20",
                          "--bmd-tscore", "-1", "--age", "60", "--sex", "F"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, check=False)
    assert cli.returncode == 2 and len(cli.stderr.splitlines()) == 1
    code, message = row["error"].split(": ", 1)
    assert code == "decode_failed" and cli.stderr.strip() == f"error: {message}"
    assert victim.name not in message and "slice" in message
