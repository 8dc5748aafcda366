"""The viewer's image route: one slice of the user's own study as a PNG, straight from memory.

Each study read into a session is registered here under a random token (:class:`ViewStore`); the browser asks
``/vfrisk/view/<token>.png?plane=&i=&ww=&wl=&px=`` for each slice while the user scrolls, and gets the PNG in one
round trip (no event queue, no temporary file). A token answers only the user who uploaded the study; anyone
else, or a token the session has dropped, gets 404. The study stays in memory for its session (the study was read
within the per-study memory budget, ``VFRISK_STUDY_BUDGET_MB``) and is dropped with it: when the user uploads
another study, when the session ends (the tab is closed) or after its time to live.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import numpy as np

from webapp.levels import LevelMark
from webapp.private_files import user_of
from webapp.viewer import DEFAULT_WINDOW, WINDOWS, Plane, View, Window, png_bytes, render, slice_count

log = logging.getLogger("vfrisk.webapp")
PREFIX = "/vfrisk/view/"
"""Path of the image route."""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Viewable(Protocol):
    """What the route draws from: a loaded study (:class:`webapp.service.Loaded`)."""

    @property
    def volume(self) -> np.ndarray:
        """Canonical HU volume."""

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (Z, Y, X) in mm."""

    @property
    def marks(self) -> list[LevelMark]:
        """The level overlay (empty before scoring)."""


@dataclass
class _Entry:
    user: str | None
    study: Viewable


@dataclass
class ViewStore:
    """Token -> (user, study) of the studies held for the viewer."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, study: Viewable, user: str | None) -> str:
        """Register ``study`` for ``user``; return its token."""
        token = secrets.token_urlsafe(18)
        with self.lock:
            self.entries[token] = _Entry(user, study)
        return token

    def drop(self, token: str | None) -> None:
        """Forget a study (its session ended or it was replaced)."""
        if token:
            with self.lock:
                self.entries.pop(token, None)

    def get(self, token: str, user: str | None) -> Viewable | None:
        """The study of ``token`` if it is ``user``'s, else None."""
        with self.lock:
            entry = self.entries.get(token)
        return entry.study if entry is not None and entry.user == user else None

    def __len__(self) -> int:
        """Studies held."""
        return len(self.entries)


def _number(query: Mapping[str, list[str]], name: str, default: float) -> float:
    try:
        value = float(query.get(name, [""])[0])
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def view_of(query: Mapping[str, list[str]], shape: tuple[int, ...]) -> View:
    """The :class:`View` a query asks for; anything missing or malformed takes its default."""
    try:
        plane = Plane(query.get("plane", ["sagittal"])[0])
    except ValueError:
        plane = Plane.SAGITTAL
    preset = WINDOWS[DEFAULT_WINDOW]
    index = int(_number(query, "i", slice_count(shape, plane) // 2))
    window = Window(_number(query, "ww", preset.width), _number(query, "wl", preset.level)).clamped()
    return View(plane, index, window, int(_number(query, "px", 512)))


def slice_png(study: Viewable, query: Mapping[str, list[str]]) -> bytes:
    """The PNG of the slice ``query`` asks for."""
    view = view_of(query, study.volume.shape)
    return png_bytes(render(study.volume, study.spacing_mm, view, study.marks), fast=True)


async def _reply(send: Send, status: int, body: bytes, kind: bytes) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ViewerRoute:
    """ASGI middleware answering the image route (signed-in owner only) and passing everything else on."""

    def __init__(self, app: ASGIApp, store: ViewStore) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``GET /vfrisk/view/<token>.png``; pass any other request to the app."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        token = path[len(PREFIX):].removesuffix(".png")
        study = self.store.get(token, user_of(scope)) if scope["method"] == "GET" else None
        if study is None:
            await _reply(send, 404, b"Not found", b"text/plain; charset=utf-8")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            body = await asyncio.to_thread(slice_png, study, query)
        except Exception as exc:  # a drawing fault must not take the app down; no patient data in the log
            log.error("viewer slice not drawn (%s)", type(exc).__name__)
            await _reply(send, 500, b"Not drawn", b"text/plain; charset=utf-8")
            return
        await _reply(send, 200, body, b"image/png")
