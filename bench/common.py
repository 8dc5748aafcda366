"""What every benchmark in ``bench/`` shares: the machine line, interleaved timing, child processes with their own
peak memory, tables, and the benchmark studies kept between runs.

The rules the benchmarks follow: both sides of every ratio are timed the same way (the same number of rounds,
warm or cold alike, run in turn within each round, the order alternating from round to round), the figure is the
median, and a difference in the work the two sides do is said next to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VFRISK_BENCH_DATA", REPO / ".bench-data"))
"""Where the benchmark studies are kept between runs (made once; ``VFRISK_BENCH_DATA`` moves it)."""


def cpu_model() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line on where the figures come from: cores this process may use, CPU, load, Python."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: {cores} cores ({cpu_model()}), load average {load} at start, Python "
            f"{platform.python_version()}; shared machine: absolute times are noisy, ratios come from runs "
            "interleaved in the same rounds")


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


@dataclass(frozen=True)
class Rounds:
    """Seconds of each side in each round: wall clock, and this process's CPU time (user + system, all its
    threads; what a side's child processes use is not in it)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def interleaved(sides: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1) -> Rounds:
    """Each side ``rounds`` times, the sides run in turn within each round (the order reversed every other round
    so neither side always runs first); ``warmup`` untimed rounds first, alike for all."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    out = Rounds({name: [] for name in names}, {name: [] for name in names})
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            sides[name]()
            out.wall[name].append(time.perf_counter() - t0)
            out.cpu[name].append(time.process_time() - c0)
    return out


@dataclass(frozen=True)
class ProcessRun:
    """One child process: wall seconds, CPU seconds (user + system) and its own peak resident memory."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: bytes


_HWM = ("import atexit, os, sys\n"
        "def _hwm(path=os.environ.pop('VFRISK_BENCH_HWM')):\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    open(path, 'w').write(line.split()[1])\n"
        "atexit.register(_hwm)\n")
"""Run first in a child: at exit it writes its peak resident memory (VmHWM, KiB) to ``$VFRISK_BENCH_HWM``. The
kernel's ``ru_maxrss`` of a child starts from its parent's size at the fork, so it cannot be used here."""


def run_python(code: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
               cwd: Path = REPO) -> ProcessRun:
    """Run ``python -c code args`` to its end (``cwd`` first on the path); wall and CPU seconds of that child
    alone (``wait4``) and its own peak resident memory."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="vfrisk-hwm-") as hwm:
        child_env = {**(env if env is not None else os.environ), "VFRISK_BENCH_HWM": hwm.name}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _HWM + code, *args], cwd=cwd, env=child_env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        text = Path(hwm.name).read_text().strip()
    peak = int(text) / 1024 if text else float("nan")
    return ProcessRun(wall, usage.ru_utime + usage.ru_stime, peak, proc.returncode, stdout)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send this process's standard error (file descriptor 2: progress bars, Ray's log lines) to /dev/null
    for the block; an exception still reaches the caller."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what the README quotes, as printed)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median s (min-max)`` of seconds."""
    return f"{median(values):.{digits}f} s ({min(values):.{digits}f}-{max(values):.{digits}f})"


def kept(name: str, params: Mapping[str, object], make: Callable[[Path], None]) -> Path:
    """The folder ``DATA/name``, made by ``make`` unless it was already made with the same ``params``."""
    folder = DATA / name
    stamp = folder / ".params.json"
    want = json.dumps(params, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    make(folder)
    stamp.write_text(want)
    print(f"(made {folder} in {time.perf_counter() - t0:.0f} s; kept for the next run)", flush=True)
    return folder


def fixed_study(matrix: int, slices: int, syntax: str = "explicit", index: int = 0) -> Path:
    """A synthetic axial study of ``matrix`` x ``matrix`` x ``slices`` 1 mm slices in ``syntax``, kept in DATA."""
    from data.synthetic.cohort import write_fixed_study

    name = f"study-{matrix}x{slices}-{syntax}-{index}"
    params = {"matrix": matrix, "slices": slices, "syntax": syntax, "index": index, "seed": 7, "version": 1}
    return kept(name, params, lambda folder: write_fixed_study(folder / "s", 7, index, matrix=matrix,
                                                               n_slices=slices, syntax=syntax)) / "s"


VFRISK = "from vfrisk.cli import main; main()"
"""The ``vfrisk`` console script's own code (``run_python(VFRISK, args)`` runs this working tree's)."""


def study_arguments(description: str, rounds: int) -> argparse.Namespace:
    """The command line of a benchmark on one fixed study: ``--matrix`` (512), ``--slices`` (300), ``--rounds``
    and ``--quick`` (a smoke run: a 128 x 128 x 200 study, one round)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--quick", action="store_true", help="a smoke run: a 128 x 128 x 200 study, one round")
    args = ap.parse_args()
    if args.quick:
        args.matrix, args.slices, args.rounds = 128, 200, 1
    return args
