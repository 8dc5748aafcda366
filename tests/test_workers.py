"""Pool workers exit when the main process dies, even when it is left a zombie."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from inference.workers import parent_alive


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_parent_alive_tells_a_zombie_from_a_live_process() -> None:
    assert parent_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and parent_alive(child.pid):  # exits, stays a zombie until waited for
        time.sleep(0.05)
    assert not parent_alive(child.pid)
    child.wait()
    assert not parent_alive(child.pid)


def test_synth_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL `vfrisk synth` while its pool renders: its workers are gone within seconds."""
    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "vfrisk.cli", "synth", "--out", str(out), "--n", "40",
                             "--seed", "3", "--matrix", "96", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:  # both pool workers started
        time.sleep(0.2)
        workers = [c for c in _children(proc.pid) if b"spawn" in _cmdline(c)]
    assert workers, "the pool should be running"
    proc.send_signal(signal.SIGKILL)  # not waited for: the parent stays a zombie, as under a killed shell
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() and parent_alive(w) for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and parent_alive(w)]
    proc.wait()
    assert not alive
