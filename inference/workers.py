"""Start-up of worker processes: they leave Ctrl-C to the parent and exit as soon as it is gone.

A pool's workers outlive a parent killed with SIGKILL (nothing tells them); without this they would go on
decoding or rendering in the background, holding CPUs and writing into a folder nobody reads.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def parent_alive(parent: int) -> bool:
    """True while ``parent`` exists and is not a zombie (killed but not yet reaped: it still has a PID)."""
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{parent}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): existence is all we can tell


def _watch_parent(parent: int) -> None:
    """Exit this process as soon as ``parent`` (the job's main process, whatever started the pool) is gone."""
    while True:
        time.sleep(1.0)
        if not parent_alive(parent):
            os._exit(1)


def init_worker(parent: int) -> None:
    """Pool initializer: ignore SIGINT (the parent handles it) and die with ``parent``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
