"""The web app's user store: salted scrypt password hashes in a JSON file readable by its owner only.

Created and edited from the command line (``vfrisk users add NAME``); the app only reads it. Optionally a
demo account lives in memory for one run (``vfrisk serve --demo-user``), never in the file.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import InputError

NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 12
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
"""scrypt cost (about 16 MiB and 50 ms per check)."""
DEMO_USER = "demo"


def hash_password(password: str, salt: bytes | None = None, cost: dict[str, int] | None = None) -> dict[str, Any]:
    """A salted scrypt hash record of ``password``."""
    salt = salt or secrets.token_bytes(16)
    cost = cost or SCRYPT
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **cost)
    return {"algorithm": "scrypt", "salt": salt.hex(), "hash": digest.hex(), **cost}


def check_password(password: str, record: dict[str, Any]) -> bool:
    """Whether ``password`` matches the hash record (constant-time comparison)."""
    cost = {k: int(record[k]) for k in ("n", "r", "p")}
    again = hash_password(password, bytes.fromhex(record["salt"]), cost)
    return hmac.compare_digest(again["hash"], record["hash"])


_DUMMY = hash_password(secrets.token_urlsafe(16), b"\0" * 16)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": 1, "users": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError("bad_user_store", f"{path.name} is not a vfrisk user store") from exc
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise InputError("bad_user_store", f"{path.name} is not a vfrisk user store")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomic write, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def validate_new(name: str, password: str) -> None:
    """Refuse a malformed user name or a short password."""
    if not NAME_RE.match(name):
        raise InputError("bad_user_name", "user names are 2-32 characters: lower-case letters, digits, _ . -")
    if name == DEMO_USER:
        raise InputError("bad_user_name", f"'{DEMO_USER}' is reserved for the in-memory demo account")
    if len(password) < MIN_PASSWORD:
        raise InputError("weak_password", f"passwords need at least {MIN_PASSWORD} characters")


def add_user(path: Path, name: str, password: str, *, replace: bool = False) -> None:
    """Add (or with ``replace``, reset) a user in the store at ``path``, creating it if needed."""
    validate_new(name, password)
    data = _read(path)
    if name in data["users"] and not replace:
        raise InputError("user_exists", f"user {name} already exists (use --replace to reset the password)")
    record = hash_password(password)
    record["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data["users"][name] = record
    _write(path, data)


def remove_user(path: Path, name: str) -> None:
    """Remove a user from the store."""
    data = _read(path)
    if name not in data["users"]:
        raise InputError("no_such_user", f"no user {name}")
    del data["users"][name]
    _write(path, data)


def list_users(path: Path) -> list[str]:
    """User names in the store."""
    return sorted(_read(path)["users"])


def prompt_password(prompt: str = "Password: ") -> str:
    """Ask for a password twice on the terminal (never echoed)."""
    first = getpass.getpass(prompt)
    if first != getpass.getpass("Again: "):
        raise InputError("password_mismatch", "the two passwords differ")
    return first


@dataclass
class UserStore:
    """Users the app accepts: the file's, plus an optional in-memory demo account."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> UserStore:
        """Read the store (missing file: no users)."""
        return cls(dict(_read(path)["users"]) if path is not None else {})

    def add_demo(self) -> str:
        """Create the demo account with a fresh random password and return that password."""
        password = secrets.token_urlsafe(12)
        self.records[DEMO_USER] = hash_password(password)
        return password

    def authenticate(self, name: str, password: str) -> bool:
        """Whether the name and password match; unknown names cost the same time as known ones."""
        record = self.records.get(name)
        ok = check_password(password, record or _DUMMY)
        return ok and record is not None

    def __len__(self) -> int:
        return len(self.records)


def add_user_cli(name: str, users_file: Path | None = None, password: str | None = None, *,
                 replace: bool = False) -> Path:
    """``vfrisk users add NAME``: add a user to the app's store (prompting twice for the password unless
    given); return the store's path. ``users_file`` defaults to ``$VFRISK_USERS`` or ``~/.vfrisk/users.json``."""
    from webapp.config import AppConfig

    path = users_file or AppConfig.from_env().users_file
    add_user(path, name, password if password is not None else prompt_password(), replace=replace)
    return path
