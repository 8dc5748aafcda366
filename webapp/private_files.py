"""Private uploads and outputs in Gradio's temp folder: who may read what, and when each file is deleted.

Gradio keeps every upload under a folder named by its content hash and serves any file of its temp folder to any
signed-in user who names its path (``/gradio_api/file=...``); two requests carrying the same file share one path,
so the first to finish deletes the other's. :class:`FileRegistry` (this module's state, shared with the service)
and :class:`PrivateFiles` (an ASGI middleware in front of Gradio) change that:

* **Upload**: each file Gradio stored is hard-linked into a fresh private folder (``private/<random>/<name>``),
  recorded with its uploader, and the upload response names that path instead; the shared content-addressed copy
  is deleted as soon as no upload is in flight (another upload may be renaming its copy onto the same name).
* **Serving**: a path inside the temp folder is served only to the user it was sent to in an event's output (a
  result, a viewer image); an upload never is; anything else there is answered 404.
* **Use**: a request claims its uploads for the user who uploaded them (:meth:`FileRegistry.claim`; another user's
  path is refused); the service deletes them when it is done with them, whatever the outcome.
* **Never used**: uploads named by a request the queue refused (queue full) are deleted at once; those still
  unclaimed when their session's event stream ends (a disconnect) are deleted then; the periodic
  :meth:`FileRegistry.sweep` deletes unclaimed uploads after ``unclaimed_ttl_s`` and anything else left in the
  folder after ``leftover_ttl_s`` (Gradio's own leftovers included).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from inference.errors import InputError
from webapp.throttle import CLIENT_ADDRESS

log = logging.getLogger("vfrisk.webapp")
PRIVATE = "private"
"""Sub-folder of the temp folder holding one private folder per uploaded file."""
_PATH_FIELD = re.compile(rb'"path"\s*:\s*"((?:[^"\\]|\\.)*)"')

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Upload:
    """One private upload."""

    user: str
    created: float
    claimed: bool = False
    groups: set[str] = field(default_factory=set)
    """Sessions (or REST event ids) whose requests named it."""


def _inside(path: Path, root: Path) -> bool:
    return root in path.parents


def _remove_empty_parents(path: Path, root: Path) -> None:
    parent = path.parent
    while parent != root and _inside(parent, root):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


class FileRegistry:
    """Uploads (with their uploader and state) and delivered outputs (with their user) under ``root``."""

    def __init__(self, root: Path, *, unclaimed_ttl_s: float = 600.0, leftover_ttl_s: float = 3 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(os.path.realpath(root))
        self.unclaimed_ttl_s, self.leftover_ttl_s, self.clock = unclaimed_ttl_s, leftover_ttl_s, clock
        self.uploads: dict[Path, Upload] = {}
        self.delivered: dict[Path, set[str]] = {}
        self._shared: set[Path] = set()
        self._inflight = 0
        self._lock = threading.RLock()

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The real absolute path (symlinks resolved)."""
        return Path(os.path.realpath(path))

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` (as given or resolved) lies inside the temp folder."""
        return _inside(Path(os.path.abspath(path)), self.root) or _inside(self.resolve(path), self.root)

    # -- uploads -------------------------------------------------------------------------------------------

    def upload_started(self) -> None:
        """An upload request began (Gradio may be renaming files onto shared content-addressed names)."""
        with self._lock:
            self._inflight += 1

    def upload_finished(self) -> None:
        """An upload request ended; with none in flight, the shared copies can go."""
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self._drop_shared()

    def _drop_shared(self) -> None:
        for path in self._shared:
            path.unlink(missing_ok=True)
            _remove_empty_parents(path, self.root)
        self._shared.clear()

    def privatize(self, shared: Path, user: str) -> Path:
        """A private link to the file Gradio stored at ``shared`` for ``user``; the shared name is dropped later."""
        with self._lock:
            shared = self.resolve(shared)
            folder = self.root / PRIVATE / secrets.token_hex(16)
            folder.mkdir(parents=True, mode=0o700)
            private = folder / shared.name
            os.link(shared, private)
            self.uploads[private] = Upload(user, self.clock())
            self._shared.add(shared)
            return private

    def is_upload(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a private upload or under the private folder."""
        real = self.resolve(path)
        return real in self.uploads or _inside(real, self.root / PRIVATE)

    def joined(self, paths: Iterable[str], group: str, user: str | None) -> list[Path]:
        """Note that a request of ``user`` in ``group`` (a session, or a REST event id) named ``paths``; return
        those that are ``user``'s own uploads (naming another user's path gives no hold on it)."""
        with self._lock:
            out = []
            for p in paths:
                real = self.resolve(p)
                upload = self.uploads.get(real)
                if upload is not None and user is not None and upload.user == user:
                    upload.groups.add(group)
                    out.append(real)
            return out

    def claim(self, paths: Iterable[Path], user: str | None) -> None:
        """Take ``paths`` for a request of ``user``: each must be an upload of that user.

        Raises:
            InputError: ``not_found`` for a path that is no upload of this user (never saying whose it is).

        """
        with self._lock:
            for p in paths:
                upload = self.uploads.get(self.resolve(p))
                if upload is None or user is None or upload.user != user:
                    raise InputError("not_found", "the uploaded files could not be found (upload again)")
            for p in paths:
                self.uploads[self.resolve(p)].claimed = True

    def delete(self, paths: Iterable[Path], user: str | None = None) -> None:
        """Delete uploads (and their private folders) and forget them; with ``user``, only that user's."""
        with self._lock:
            for p in paths:
                real = self.resolve(p)
                upload = self.uploads.get(real)
                if upload is None and not _inside(real, self.root / PRIVATE):
                    continue
                if user is not None and (upload is None or upload.user != user):
                    continue
                self.uploads.pop(real, None)
                real.unlink(missing_ok=True)
                _remove_empty_parents(real, self.root)

    def drop_unclaimed(self, paths: Iterable[Path]) -> int:
        """Delete those of ``paths`` no request claimed (the queue refused their request); return how many."""
        with self._lock:
            gone = [p for p in paths if p in self.uploads and not self.uploads[p].claimed]
            self.delete(gone)
            return len(gone)

    def group_ended(self, group: str) -> int:
        """The event stream of ``group`` ended: delete its uploads that no request claimed; return how many."""
        with self._lock:
            gone = [p for p, u in self.uploads.items() if group in u.groups and not u.claimed]
            self.delete(gone)
            return len(gone)

    # -- outputs -------------------------------------------------------------------------------------------

    def deliver(self, path: str, user: str) -> None:
        """``path`` was sent to ``user`` in an event's output: that user (only) may fetch it."""
        with self._lock:
            if not self.contains(path) or self.is_upload(path):
                return
            self.delivered.setdefault(self.resolve(path), set()).add(user)

    def may_read(self, path: str, user: str | None) -> bool:
        """Whether ``user`` may fetch ``path`` (inside the temp folder: only what was sent to them)."""
        if not self.contains(path):
            return True
        if user is None or self.is_upload(path):
            return False
        with self._lock:
            return user in self.delivered.get(self.resolve(path), set())

    # -- sweeping ------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete stale uploads and leftovers; return the number of files removed."""
        with self._lock:
            now = self.clock()
            stale = [p for p, u in self.uploads.items()
                     if now - u.created > (self.leftover_ttl_s if u.claimed else self.unclaimed_ttl_s)]
            self.delete(stale)
            removed = len(stale)
            live = set(self.uploads) | (self._shared if self._inflight else set())
            for path in [p for p in self.root.rglob("*") if p.is_file() or p.is_symlink()]:
                real = self.resolve(path)
                if real in live:
                    continue
                age = now - path.lstat().st_mtime
                in_private = _inside(path, self.root / PRIVATE)
                if age > (self.unclaimed_ttl_s if in_private or path.stat().st_size == 0 else self.leftover_ttl_s):
                    path.unlink(missing_ok=True)
                    _remove_empty_parents(path, self.root)
                    self.delivered.pop(real, None)
                    removed += 1
            self.delivered = {p: u for p, u in self.delivered.items() if p.exists()}
            return removed


def user_of(scope: Scope) -> str | None:
    """The signed-in user of a request, from Gradio's session cookie (None when not signed in)."""
    app = scope.get("app")
    tokens = getattr(app, "tokens", None)
    cookie_id = getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(raw)
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if name in jar and jar[name].value in tokens:
            return str(tokens[jar[name].value])
    return None


def with_secure(cookie: bytes) -> bytes:
    """A ``Set-Cookie`` value with the ``Secure`` attribute (added unless present)."""
    attributes = {part.strip().lower() for part in cookie.split(b";")[1:]}
    return cookie if b"secure" in attributes else cookie + b"; Secure"


def file_paths(data: Any) -> list[str]:
    """Every ``path`` of a file object in a request's JSON data."""
    out: list[str] = []
    if isinstance(data, dict):
        if isinstance(data.get("path"), str):
            out.append(data["path"])
        for value in data.values():
            out += file_paths(value)
    elif isinstance(data, list):
        for value in data:
            out += file_paths(value)
    return out


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None beyond ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PrivateFiles:
    """The ASGI middleware: private uploads, owner-only outputs, signed-in heartbeats, the login's client address
    and a ``Secure`` flag on every session cookie sent over HTTPS."""

    JOIN_LIMIT = 8 * 1024 * 1024
    """Largest request body of an event (the data names files; it never carries them)."""
    SCAN_LIMIT = 16 * 1024 * 1024
    """Longest unfinished message kept while scanning an event stream for the files it sends."""

    def __init__(self, app: ASGIApp, registry: FileRegistry, prefix: str = "/gradio_api") -> None:
        self.app, self.registry, self.prefix = app, registry, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request to its guard."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method, p = scope["path"], scope["method"], self.prefix
        if path.rstrip("/") == "/login":
            await self._login(scope, receive, send)
        elif path.startswith((f"{p}/file=", f"{p}/file/")):
            await self._file(scope, receive, send)
        elif path == f"{p}/upload" and method == "POST":
            await self._upload(scope, receive, send)
        elif method == "POST" and (path == f"{p}/queue/join" or path.startswith(f"{p}/call/")):
            await self._join(scope, receive, send)
        elif path.startswith(f"{p}/heartbeat/") and user_of(scope) is None:
            await _plain(send, 401, "Not authenticated")
        elif path.startswith(p):
            await self._outputs(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        token = CLIENT_ADDRESS.set(str(client[0]) if client else "unknown")
        https = scope.get("scheme") == "https"

        async def secure(message: Message) -> None:
            if https and message["type"] == "http.response.start":
                message["headers"] = [(k, with_secure(v) if k == b"set-cookie" else v)
                                      for k, v in message.get("headers", [])]
            await send(message)

        try:
            await self.app(scope, receive, secure)
        finally:
            CLIENT_ADDRESS.reset(token)

    async def _file(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        target = path.split("file=", 1)[1] if "file=" in path else path.split("/file/", 1)[1]
        if not target.startswith(("http://", "https://")) and not self.registry.may_read(target, user_of(scope)):
            await _plain(send, 404, "File not found")
            return
        await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = user_of(scope)
        start: Message | None = None
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                body.extend(message.get("body", b""))

        self.registry.upload_started()
        finished = False
        try:
            await self.app(scope, receive, capture)
            out = bytes(body)
            if start is not None and start["status"] == 200 and user is not None:
                out = self._privatize(out, user)
            finished = True
            self.registry.upload_finished()  # before answering: the shared copies are gone when the client hears
        finally:
            if not finished:
                self.registry.upload_finished()
        if start is None:
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    def _privatize(self, body: bytes, user: str) -> bytes:
        try:
            paths = json.loads(body)
        except ValueError:
            return body
        if not isinstance(paths, list):
            return body
        out = []
        for p in paths:
            if isinstance(p, str) and self.registry.contains(p) and Path(p).is_file():
                out.append(str(self.registry.privatize(Path(p), user)))
            else:
                out.append(p)
        return json.dumps(out).encode()

    async def _join(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self.JOIN_LIMIT)
        if body is None:
            await _plain(send, 413, "Request too large")
            return
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        named = file_paths(data.get("data") if isinstance(data, dict) else None)
        session = data.get("session_hash") if isinstance(data, dict) else None
        group = str(session) if session else f"call-{secrets.token_hex(8)}"
        user = user_of(scope)
        uploads = self.registry.joined(named, group, user)
        status = 0
        reply = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            else:
                reply.extend(message.get("body", b"")[:4096])
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), watch)
        finally:
            if status != 200:
                gone = self.registry.drop_unclaimed(uploads)
                if gone:
                    log.info("deleted %d upload(s) of a refused request (HTTP %s)", gone, status or "none")
            elif not session:  # a REST call: its event id names its stream
                with contextlib.suppress(ValueError, AttributeError):
                    event = json.loads(bytes(reply)).get("event_id")
                    if event:
                        self.registry.joined([str(p) for p in uploads], f"event-{event}", user)

    async def _outputs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass through; note every file an event stream or JSON answer sends (to its user) and, when the stream
        of a session ends, drop that session's unclaimed uploads."""
        user = user_of(scope)
        scanning = False
        pending = b""

        async def scan(message: Message) -> None:
            nonlocal scanning, pending
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                scanning = user is not None and (b"event-stream" in kind or b"json" in kind)
            elif scanning:
                pending += message.get("body", b"")
                cut = len(pending) if not message.get("more_body") else pending.rfind(b"\n") + 1
                for match in _PATH_FIELD.finditer(pending[:cut]):
                    with contextlib.suppress(ValueError):
                        self.registry.deliver(json.loads(b'"' + match.group(1) + b'"'), user)  # type: ignore[arg-type]
                pending = pending[cut:][-self.SCAN_LIMIT:]
            await send(message)

        try:
            await self.app(scope, receive, scan)
        finally:
            for group in self._stream_groups(scope):
                gone = self.registry.group_ended(group)
                if gone:
                    log.info("deleted %d unclaimed upload(s) when an event stream ended", gone)

    def _stream_groups(self, scope: Scope) -> list[str]:
        """The upload groups whose event stream this request is: a session's queue stream or a REST event's."""
        path = scope["path"]
        if path.rstrip("/") == f"{self.prefix}/queue/data":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return [query["session_hash"][0]] if query.get("session_hash") else []
        if path.startswith(f"{self.prefix}/call/") and scope["method"] == "GET":
            return [f"event-{path.rstrip('/').rsplit('/', 1)[-1]}"]
        return []
