"""Issue 24, items 3-6, the pure parts: the sign-in throttle (a fake clock) and the private-file registry."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from inference.errors import InputError
from webapp.private_files import PRIVATE, FileRegistry, file_paths
from webapp.throttle import ACCOUNT, ADDRESS, BoundedHasher, LoginThrottle, Policy, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guess_until_refused(throttle: LoginThrottle, clock: Clock, account: str, address: str) -> float:
    """Fail as fast as allowed; return the wait of the first refusal."""
    for _ in range(100):
        verdict = throttle.admit(account, address)
        if not verdict.allowed:
            return verdict.retry_after_s
    raise AssertionError("never refused")


def test_backoff_grows_after_a_few_failures_and_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(Policy(free=3, base_s=1.0, cap_s=8.0), ADDRESS, clock=clock)
    assert all(throttle.admit("alice", "10.0.0.9").allowed for _ in range(3))  # three free attempts
    waits = []
    for _ in range(6):
        wait = _guess_until_refused(throttle, clock, "alice", "10.0.0.9")
        waits.append(wait)
        clock.now += wait
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, then capped: never a lockout
    assert throttle.attempts("account", "alice") == 8  # 3 free + one after each of the first 5 waits


def test_refused_attempts_are_not_counted_and_success_clears_the_account() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(3):
        throttle.admit("bob", "10.0.0.1")
    for _ in range(50):  # hammering while refused does not stretch the wait
        assert not throttle.admit("bob", "10.0.0.1").allowed
    assert throttle.attempts("account", "bob") == 3
    clock.now += 1.0
    assert throttle.admit("bob", "10.0.0.1").allowed
    throttle.succeeded("bob", "10.0.0.1")
    assert throttle.attempts("account", "bob") == 0 and throttle.admit("bob", "10.0.0.1").allowed


def test_other_accounts_and_addresses_are_not_slowed() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(ADDRESS.free - 1):  # an attacker fails on alice from one address...
        throttle.admit("alice", "10.6.6.6")
    assert not throttle.admit("alice", "10.6.6.6").allowed
    assert throttle.admit("bob", "10.6.6.6").allowed  # ...bob on the same address is not slowed (yet)
    assert throttle.admit("carol", "10.0.0.2").allowed


def test_a_trusted_workstation_is_not_delayed_by_guessing_elsewhere() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    assert throttle.admit("alice", "10.0.0.5").allowed
    throttle.succeeded("alice", "10.0.0.5")  # alice's own workstation
    assert throttle.admit("bob", "10.0.0.5").allowed
    throttle.succeeded("bob", "10.0.0.5")  # a colleague on the same address
    for address in ("10.6.6.1", "10.6.6.2", "10.6.6.3", "10.6.6.4"):  # guesses at alice from elsewhere
        throttle.admit("alice", address)
    for i in range(ADDRESS.free + 2):  # and at other accounts from the shared address
        throttle.admit(f"guess{i}", "10.0.0.5")
    assert not throttle.admit("alice", "10.6.6.9").allowed  # the account waits for strangers...
    assert not throttle.admit("carol", "10.0.0.5").allowed  # ...and the address for untrusted attempts...
    assert throttle.admit("alice", "10.0.0.5").allowed  # ...not for the workstations that signed in before
    assert throttle.admit("bob", "10.0.0.5").allowed


def test_guessing_from_a_trusted_address_is_slowed_too() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    throttle.admit("alice", "10.0.0.5")
    throttle.succeeded("alice", "10.0.0.5")
    allowed = sum(throttle.admit("alice", "10.0.0.5").allowed for _ in range(20))
    assert allowed == ACCOUNT.free  # the pair has the account's policy
    throttle.cancel("alice", "10.0.0.5")
    assert throttle.attempts("pair", "alice\x0010.0.0.5") == ACCOUNT.free - 1


def test_distributed_guessing_is_slowed_by_the_account_key() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    allowed = sum(throttle.admit("alice", f"10.9.{i}.1").allowed for i in range(100))
    assert allowed == ACCOUNT.free


def test_key_table_is_bounded() -> None:
    throttle = LoginThrottle(max_keys=50, clock=Clock())
    for i in range(500):
        throttle.admit(f"u{i}", f"a{i}")
    assert len(throttle._keys) <= 50


def test_retry_after_is_whole_seconds() -> None:
    assert [retry_after_header(x) for x in (0.0, 0.2, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]


def test_hash_work_is_bounded() -> None:
    gate = threading.Event()

    def slow(name: str, password: str) -> bool:
        gate.wait(5)
        return password == "right"

    hasher = BoundedHasher(slow, workers=1, max_waiting=2)

    async def burst() -> list[bool | None]:
        tasks = [asyncio.create_task(hasher.verify("a", "wrong")) for _ in range(6)]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(burst())
    assert results.count(None) == 3 and results.count(False) == 3  # 1 hashing + 2 queued; the rest refused


# --- the private-file registry ----------------------------------------------------------------------------


def _uploaded(root: Path, name: str = "CT1.dcm", data: bytes = b"x" * 100) -> Path:
    """A file where Gradio stores an upload: a folder named by its content hash."""
    folder = root / ("f" * 64)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_each_request_gets_its_own_private_copy(tmp_path: Path) -> None:
    files = FileRegistry(tmp_path)
    files.upload_started()
    files.upload_started()
    shared = _uploaded(tmp_path)
    a = files.privatize(shared, "alice")
    b = files.privatize(shared, "bob")  # the same content uploaded twice: one shared name, two private paths
    assert a != b and a.read_bytes() == b.read_bytes() and a.parent.parent == tmp_path.resolve() / PRIVATE
    files.upload_finished()
    assert shared.exists()  # another upload is still in flight: the shared name may be renamed onto
    files.upload_finished()
    assert not shared.exists() and not shared.parent.exists()
    files.claim([a], "alice")
    files.delete([a], user="alice")
    assert not a.exists() and b.exists()  # the first to finish does not take the other's file


def test_uploads_are_claimed_by_their_owner_only(tmp_path: Path) -> None:
    files = FileRegistry(tmp_path)
    files.upload_started()
    mine = files.privatize(_uploaded(tmp_path), "alice")
    files.upload_finished()
    with pytest.raises(InputError) as info:
        files.claim([mine], "mallory")
    assert info.value.code == "not_found" and "alice" not in info.value.message
    files.delete([mine], user="mallory")  # a stranger's request cannot delete it either
    assert mine.exists()
    assert files.joined([str(mine)], "mallory-session", "mallory") == []
    assert files.group_ended("mallory-session") == 0 and mine.exists()
    with pytest.raises(InputError):
        files.claim([tmp_path / "elsewhere.dcm"], "alice")
    files.claim([mine], "alice")


def test_nothing_uploaded_is_readable_and_outputs_only_by_their_user(tmp_path: Path) -> None:
    files = FileRegistry(tmp_path)
    files.upload_started()
    upload = files.privatize(_uploaded(tmp_path), "alice")
    files.upload_finished()
    out = tmp_path / ("e" * 64) / "image.png"
    out.parent.mkdir()
    out.write_bytes(b"png")
    files.deliver(str(out), "alice")
    files.deliver(str(upload), "alice")  # an upload is never made readable, even to its owner
    assert files.may_read(str(out), "alice") and not files.may_read(str(out), "bob")
    assert not files.may_read(str(out), None)
    assert not files.may_read(str(upload), "alice") and not files.may_read(str(upload), "bob")
    sneaky = f"{tmp_path}/{'e' * 64}/../{'e' * 64}/image.png"
    assert not files.may_read(sneaky, "bob") and not files.may_read("/" + str(out), "bob")
    link = tmp_path.parent / "link-to-temp"
    link.symlink_to(tmp_path)
    assert not files.may_read(str(link / ("e" * 64) / "image.png"), "bob")
    assert files.may_read("/etc/hostname", "bob")  # outside the temp folder: Gradio's own rules apply


def test_refused_and_abandoned_requests_lose_their_uploads(tmp_path: Path) -> None:
    files = FileRegistry(tmp_path)
    files.upload_started()
    a = files.privatize(_uploaded(tmp_path, "a.dcm", b"a"), "alice")
    b = files.privatize(_uploaded(tmp_path, "b.dcm", b"b"), "alice")
    c = files.privatize(_uploaded(tmp_path, "c.dcm", b"c"), "alice")
    files.upload_finished()
    assert files.drop_unclaimed(files.joined([str(a)], "s1", "alice")) == 1 and not a.exists()  # queue full
    files.joined([str(b), str(c)], "s2", "alice")
    files.claim([c], "alice")
    assert files.group_ended("s2") == 1  # disconnect: the unclaimed one goes, the claimed one is the service's
    assert not b.exists() and c.exists()


def test_sweep_removes_stale_uploads_and_leftovers(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = time.time()
    files = FileRegistry(tmp_path, unclaimed_ttl_s=60, leftover_ttl_s=600, clock=clock)
    files.upload_started()
    fresh = files.privatize(_uploaded(tmp_path, "a.dcm", b"a"), "alice")
    files.upload_finished()
    stub = tmp_path / "tmpabc123"
    stub.write_bytes(b"")
    report = tmp_path / "reports" / "r1" / "result.json"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    assert files.sweep() == 0  # everything is young
    old = clock.now - 120
    os.utime(stub, (old, old))
    clock.now += 120  # the upload is now 2 minutes old and unclaimed; the report is not old enough
    assert files.sweep() == 2
    assert not fresh.exists() and not stub.exists() and report.exists()
    old = clock.now - 700
    os.utime(report, (old, old))
    assert files.sweep() == 1 and not report.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_file_paths_of_request_data() -> None:
    data = [[{"path": "/t/a.dcm", "meta": {"_type": "gradio.FileData"}}, {"path": "/t/b.dcm"}], 40, None,
            {"nested": [{"path": "/t/c.dcm"}]}]
    assert file_paths(data) == ["/t/a.dcm", "/t/b.dcm", "/t/c.dcm"]
