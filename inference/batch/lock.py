"""One live ``vfrisk score`` per output: an exclusive lock that the operating system releases when its holder dies.

The lock is ``flock`` on ``<out>.lock`` next to the table (in the output folder, like the table and its database).
The kernel drops it with the last descriptor of the process, so a run killed with SIGKILL leaves a stale file but
no lock, and the next run simply takes it and resumes. A second run while the first is alive refuses at once with
one line naming the first (its pid, host and start time, which the holder writes into the file). The holder deletes
the file while it still holds the lock; a run that opened the old file in between notices that the path now names
another file (or none) and tries again, so two runs can never both believe they hold it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inference.errors import InputError

ATTEMPTS = 5
"""Times to retry when the lock file is replaced between opening and locking it."""


def lock_path(out: Path) -> Path:
    """The lock file of the output table ``out``."""
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    """What the live holder wrote about itself (one line), or a generic description."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().splitlines()
    except OSError:
        text = []
    return text[0] if text else "another process"


def _still_ours(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open on ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _acquire(path: Path, out: Path) -> int:
    """Open and lock the lock file; refuse when a live run holds it."""
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError("output_locked", f"another vfrisk score run ({holder}) is writing {out.name}; wait "
                             "for it to finish or stop it, then run again to resume") from None
        if _still_ours(fd, path):
            return fd
        os.close(fd)  # the holder deleted (and maybe someone recreated) the file meanwhile: start over
    raise InputError("output_locked", f"the lock on {out.name} keeps changing hands; try again")


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold the lock on the output table ``out`` for the duration of the block; yield the lock file's path.

    Raises:
        InputError: ``output_locked`` when another live run holds it.

    """
    path = lock_path(out)
    fd = _acquire(path, out)
    try:
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {since}\n".encode(), 0)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # still locked: a newcomer that opened it sees the change and retries
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
