"""Sign-in throttling: a growing wait per account and per address after a few failures, and bounded hash work.

Each attempt is counted, before its password is checked, against the account name (known or not) and the client
address; a key that used up its free attempts makes the next attempt wait ``base x 2^k`` seconds (k the attempts
beyond the free ones), capped. An attempt that comes before its keys allow it is refused at once (HTTP 429 with
``Retry-After``) without hashing and without counting, so hammering does not stretch the wait: only real failed
checks do. No wait exceeds its cap, so nothing is ever locked for good, and counts are forgotten after a quiet
spell.

A success clears the account's count and makes the (account, address) pair trusted. An attempt from a trusted
pair, someone who signed in to that account from that address before, is counted against that pair alone, with the
account's policy: guesses at a radiologist's password from elsewhere, or at other accounts from the same shared
address, do not delay the radiologist's own sign-in; guesses at it from that same address are slowed as any.

Password checks run in a small thread pool with a bounded queue (:class:`BoundedHasher`): scrypt releases the GIL,
so the event loop and other users' requests keep going while a guessing run is hashed; beyond the queue, attempts
are refused as busy without hashing.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("vfrisk_client_address", default="unknown")
"""The address of the client whose sign-in is being checked (set by the web middleware for the login route)."""


@dataclass(frozen=True)
class Policy:
    """When a key starts to wait, and how long."""

    free: int
    """Attempts without any wait (the next one waits ``base_s``)."""
    base_s: float
    """First wait; each further attempt doubles it."""
    cap_s: float
    """Longest wait (never a lockout)."""
    forget_s: float = 900.0
    """A key quiet this long starts afresh."""

    def wait(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` counted attempts."""
        if attempts < self.free:
            return 0.0
        return min(self.base_s * 2.0 ** (attempts - self.free), self.cap_s)


ACCOUNT = Policy(free=3, base_s=1.0, cap_s=60.0)
"""Per account: three attempts, then 1, 2, 4 ... 60 s."""
ADDRESS = Policy(free=10, base_s=1.0, cap_s=300.0)
"""Per address: more free attempts (several people may share one address), then 1, 2, 4 ... 300 s."""


@dataclass
class _Key:
    attempts: int = 0
    next_allowed: float = 0.0
    touched: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may be checked now; when not, how long to wait and which key refused it."""

    allowed: bool
    retry_after_s: float = 0.0
    reason: str = ""
    """``account``, ``address`` or ``pair`` for a refusal."""


class LoginThrottle:
    """The per-account and per-address counters (in memory, thread-safe, at most ``max_keys`` kept)."""

    def __init__(self, account: Policy = ACCOUNT, address: Policy = ADDRESS, *, max_keys: int = 10_000,
                 trust_s: float = 30 * 86400.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.policies = {"account": account, "address": address, "pair": account}
        self.max_keys, self.trust_s, self.clock = max_keys, trust_s, clock
        self._keys: OrderedDict[tuple[str, str], _Key] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, kind: str, value: str, now: float) -> _Key:
        k = (kind, value)
        state = self._keys.get(k)
        if state is None or now - state.touched > self.policies[kind].forget_s:
            state = _Key(touched=now)
            self._keys[k] = state
        self._keys.move_to_end(k)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return state

    def _is_trusted(self, account: str, address: str, now: float) -> bool:
        since = self._trusted.get((account, address))
        return since is not None and now - since <= self.trust_s

    def _kinds(self, account: str, address: str, now: float) -> list[tuple[str, str]]:
        """The keys an attempt counts against: its pair when trusted, else its account and its address."""
        if self._is_trusted(account, address, now):
            return [("pair", f"{account}\x00{address}")]
        return [("account", account), ("address", address)]

    def admit(self, account: str, address: str) -> Verdict:
        """Decide an attempt before its password is checked; an admitted attempt is counted (as a failure until
        :meth:`succeeded` says otherwise)."""
        with self._lock:
            now = self.clock()
            keys = [(kind, self._key(kind, value, now)) for kind, value in self._kinds(account, address, now)]
            for kind, state in keys:
                if now < state.next_allowed:
                    return Verdict(False, state.next_allowed - now, kind)
            for kind, state in keys:
                state.attempts += 1
                state.touched = now
                state.next_allowed = max(state.next_allowed, now + self.policies[kind].wait(state.attempts))
            return Verdict(True)

    def _undo(self, kind: str, value: str) -> None:
        state = self._keys.get((kind, value))
        if state is not None:
            state.attempts = max(state.attempts - 1, 0)
            state.next_allowed = state.touched + self.policies[kind].wait(state.attempts)

    def succeeded(self, account: str, address: str) -> None:
        """The admitted attempt was right: clear the account (and pair), take this attempt back from the address,
        trust the pair."""
        with self._lock:
            now = self.clock()
            self._keys.pop(("account", account), None)
            self._keys.pop(("pair", f"{account}\x00{address}"), None)
            self._undo("address", address)
            self._trusted[(account, address)] = now
            self._trusted.move_to_end((account, address))
            while len(self._trusted) > self.max_keys:
                self._trusted.popitem(last=False)

    def cancel(self, account: str, address: str) -> None:
        """Take back an admitted attempt whose password was never checked (the hash queue was full)."""
        with self._lock:
            for kind, value in self._kinds(account, address, self.clock()):
                self._undo(kind, value)

    def attempts(self, kind: str, value: str) -> int:
        """Counted attempts of a key (for the audit line and tests)."""
        with self._lock:
            state = self._keys.get((kind, value))
            return state.attempts if state is not None else 0


def retry_after_header(seconds: float) -> str:
    """An HTTP ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class BoundedHasher:
    """Password checks in ``workers`` threads with at most ``max_waiting`` more queued; the rest are busy."""

    def __init__(self, check: Callable[[str, str], bool], workers: int = 1, max_waiting: int = 8) -> None:
        self.check = check
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vfrisk-login")
        self._slots = threading.BoundedSemaphore(workers + max_waiting)

    async def verify(self, name: str, password: str) -> bool | None:
        """Whether the password matches; None when too many checks are already running or queued."""
        if not self._slots.acquire(blocking=False):
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.check, name, password)
        finally:
            self._slots.release()
