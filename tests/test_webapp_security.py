"""webapp.users, webapp.audit, webapp.uploads and webapp.errors: the safe-by-default plumbing."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from inference.errors import InputError
from webapp.audit import AuditLog, Event, uid_hash
from webapp.errors import PublicError, public, redact
from webapp.uploads import UploadLimits, check_upload, delete_uploads, leftovers, private_temp_dir, sweep
from webapp.users import DEMO_USER, UserStore, add_user, check_password, hash_password, list_users, remove_user

PASSWORD = "correct horse battery"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_user_store_hashes_salted_and_private(tmp_path: Path) -> None:
    store = tmp_path / "state" / "users.json"
    add_user(store, "alice", PASSWORD)
    add_user(store, "bob", PASSWORD)
    text = store.read_text()
    assert PASSWORD not in text
    data = json.loads(text)["users"]
    assert data["alice"]["algorithm"] == "scrypt"
    assert data["alice"]["salt"] != data["bob"]["salt"] and data["alice"]["hash"] != data["bob"]["hash"]
    assert mode(store) == 0o600
    assert list_users(store) == ["alice", "bob"]
    users = UserStore.load(store)
    assert users.authenticate("alice", PASSWORD)
    assert not users.authenticate("alice", PASSWORD + "x")
    assert not users.authenticate("mallory", PASSWORD)
    remove_user(store, "bob")
    assert list_users(store) == ["alice"]


@pytest.mark.parametrize(("name", "password", "code"), [
    ("Alice", PASSWORD, "bad_user_name"),
    ("a b", PASSWORD, "bad_user_name"),
    (DEMO_USER, PASSWORD, "bad_user_name"),
    ("carol", "short", "weak_password"),
])
def test_bad_users_are_refused(tmp_path: Path, name: str, password: str, code: str) -> None:
    with pytest.raises(InputError) as err:
        add_user(tmp_path / "u.json", name, password)
    assert err.value.code == code


def test_duplicate_user_needs_replace(tmp_path: Path) -> None:
    store = tmp_path / "u.json"
    add_user(store, "alice", PASSWORD)
    with pytest.raises(InputError, match="already exists"):
        add_user(store, "alice", "another long password")
    add_user(store, "alice", "another long password", replace=True)
    assert UserStore.load(store).authenticate("alice", "another long password")


def test_demo_account_lives_in_memory_only(tmp_path: Path) -> None:
    store = tmp_path / "u.json"
    add_user(store, "alice", PASSWORD)
    before = store.read_text()
    users = UserStore.load(store)
    password = users.add_demo()
    assert len(password) >= 12 and users.authenticate(DEMO_USER, password)
    assert store.read_text() == before
    assert not UserStore.load(store).authenticate(DEMO_USER, password)
    assert UserStore.load(None).records == {}


def test_corrupt_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "u.json"
    store.write_text("[1, 2]")
    with pytest.raises(InputError) as err:
        UserStore.load(store)
    assert err.value.code == "bad_user_store"


def test_password_hash_round_trip() -> None:
    record = hash_password("x" * 20, cost={"n": 2**10, "r": 8, "p": 1})
    assert check_password("x" * 20, record) and not check_password("y" * 20, record)


def test_audit_log_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a" / "audit.log")
    uid = "1.2.826.0.1.3680043.8.498.1"
    line = log.record(Event.SCORE, "alice", "ok", study_uid=uid, model_version="v1")
    assert line["study"] == uid_hash(uid) and len(line["study"] or "") == 16
    assert uid not in log.path.read_text()
    assert set(line) == {"time", "event", "user", "study", "model_version", "outcome"}
    assert mode(log.path) == 0o600
    threads = [threading.Thread(target=log.record, args=(Event.LOGIN, f"u{i}", "ok")) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.lines()
    assert len(lines) == 21 and lines[0]["event"] == "score"
    assert uid_hash(None) is None


def test_upload_limits(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}.dcm"
        f.write_bytes(b"\0" * 1000)
        files.append(f)
    check_upload(files, UploadLimits(max_files=3, max_total_bytes=3000))
    with pytest.raises(InputError) as err:
        check_upload(files, UploadLimits(max_files=2))
    assert err.value.code == "too_many_files"
    with pytest.raises(InputError) as err:
        check_upload(files, UploadLimits(max_total_bytes=2999))
    assert err.value.code == "upload_too_large"
    with pytest.raises(InputError) as err:
        check_upload([], UploadLimits())
    assert err.value.code == "no_upload"
    limits = UploadLimits(max_files=5, max_total_bytes=10, max_voxels=7).ingestion()
    assert (limits.max_files, limits.max_total_bytes, limits.max_voxels) == (5, 10, 7)


def test_private_temp_dir_is_swept_at_start(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    (root / "abc" / "deep").mkdir(parents=True)
    (root / "abc" / "deep" / "left.dcm").write_bytes(b"x")
    (root / "stray.txt").write_text("x")
    out = private_temp_dir(root)
    assert out == root.resolve() and mode(root) == 0o700
    assert list(root.iterdir()) == []
    assert sweep(root) == 0


def test_delete_uploads_stays_inside_the_temp_dir(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    upload = root / "3f2a" / "CT0001.dcm"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    keep = root / "other" / "keep.dcm"
    keep.parent.mkdir()
    keep.write_bytes(b"x")
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"x")
    delete_uploads([upload, outside], root)
    assert not upload.exists() and not upload.parent.exists()
    assert outside.exists() and keep.exists()
    assert leftovers(root) == [keep]


def test_errors_never_show_paths_names_or_tracebacks() -> None:
    uploads = [Path("/tmp/gradio/abc123/DOE_JOHN_1234.dcm")]
    err = public(InputError("decode_failed", "the image in DOE_JOHN_1234.dcm cannot be decoded (bad)"), uploads)
    assert err.code == "decode_failed" and "DOE" not in err.message and "<file>" in err.message
    err = public(InputError("unsafe_archive", "the zip member 'Smith^Jane/IM1' cannot be read"))
    assert "Smith" not in err.message
    err = public(InputError("not_found", "no such file or folder: /srv/data/Smith"))
    assert "/srv" not in err.message and "Smith" not in err.message
    err = public(InputError("insufficient_coverage", "the series covers the head, not the spine"))
    assert "head" not in err.message
    err = public(InputError("not_ct", "the series is MR, not CT"))
    assert err.message == "the series chosen is not CT"
    err = public(RuntimeError("secret /home/x/DOE_JOHN.dcm PatientName=DOE"))
    assert err.code == "internal_error" and "DOE" not in err.message and "/home" not in err.message
    again = PublicError("x", "y")
    assert public(again) is again
    assert redact("file at C:\\data\\a.dcm and ./b.zip") == "file at <path> and <path>"


def test_add_user_cli_uses_the_configured_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from webapp.users import add_user_cli

    monkeypatch.setenv("VFRISK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VFRISK_USERS", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSWORD)
    path = add_user_cli("dana")
    assert path == tmp_path / "home" / "users.json"
    assert UserStore.load(path).authenticate("dana", PASSWORD)
    other = add_user_cli("erin", tmp_path / "x.json", "another long password")
    assert list_users(other) == ["erin"]


def test_config_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from webapp.config import AppConfig

    monkeypatch.setenv("VFRISK_HOME", str(tmp_path))
    monkeypatch.setenv("VFRISK_DEMO_USER", "1")
    monkeypatch.setenv("VFRISK_MAX_UPLOAD_MB", "10")
    monkeypatch.setenv("VFRISK_MAX_FILES", "7")
    cfg = AppConfig.from_env()
    assert cfg.demo_user and cfg.temp_dir == tmp_path / "tmp" and cfg.users_file == tmp_path / "users.json"
    assert cfg.limits.max_files == 7 and cfg.limits.max_total_bytes == 10 * 1024 * 1024
    assert not AppConfig.from_env(demo_user=False).demo_user
    blocked = cfg.blocked_paths()
    assert str(cfg.users_file) in blocked and any(p.endswith("/data") for p in blocked)
    assert cfg.concurrency >= 1 and cfg.queue_size >= cfg.concurrency
