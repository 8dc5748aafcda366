"""DICOM receiver (``vfrisk listen``): a pynetdicom C-STORE SCP that takes what a PACS sends and hands each complete
CT study to a callback, and the C-STORE SCU that sends the results out of a persistent outbox.

**What is accepted.** Every standard storage SOP class (pynetdicom's 170). CT images (CT, Enhanced CT, Legacy
Converted Enhanced CT) in every transfer syntax this installation decodes (uncompressed, RLE, JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K where the decoders are present:
:func:`ct_transfer_syntaxes`); any other object (MR, SR, SEG, dose reports, key objects, our own results routed
back) in any transfer syntax, stored aside under ``_other/`` and recorded by the ``on_other`` callback, never
scored.

**When a study is complete.** When no CT instance of it has arrived for ``stable_seconds`` (the stable-time rule
PACS routers use). CT instances are written to ``<storage>/<Study Instance UID>/<SOP Instance UID>.dcm`` exactly as
received; both names are checked to be DICOM UIDs before they are used in a path. The callback runs in one worker
thread, once per quiet period: instances that arrive after a study was handed over start a new period (whether
that re-scores it is the callback's decision). An exception escaping the callback is logged on one line, with its
type, never with a traceback or the patient's identity.

**Sending.** :class:`Sender` works through :class:`interop.state.StateStore`'s outbox: one association per target
and study, each object C-STOREd, and a failure (target down, association refused, a non-success status) retried
after a growing delay, across restarts.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import UID, AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)
from pynetdicom.transport import ThreadedAssociationServer

from inference.errors import InputError

log = logging.getLogger("vfrisk.listen")
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CT_STORAGE = (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage)
OTHER = "_other"
"""Sub-folder of the storage folder holding the non-CT objects set aside."""
OnStudy = Callable[[str, Path], Any]
"""Callback: ``on_study(study_instance_uid, folder)`` once the study is complete."""
OnOther = Callable[[str, str, str, str], Any]
"""Callback: ``on_other(study_uid, sop_instance_uid, sop_class_uid, modality)`` for a non-CT object set aside."""
OnReceived = Callable[[str], Any]
"""Callback: ``on_received(study_uid)`` when the first CT instance of a quiet period arrives."""
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700
_NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


def _valid_uid(uid: str) -> bool:
    return bool(UID_RE.match(uid)) and len(uid) <= 64


def ct_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes a CT image is accepted in: those whose pixel data this installation decodes (the
    reader decodes through the same pydicom decoders), uncompressed first."""
    from pydicom.pixels import get_decoder

    out = [str(ts) for ts in _NATIVE]
    for ts in AllTransferSyntaxes:
        if str(ts) in out:
            continue
        try:
            available = bool(get_decoder(ts).is_available)
        except (NotImplementedError, ValueError):
            available = False
        if available:
            out.append(str(ts))
    return out


def other_transfer_syntaxes() -> list[str]:
    """Every transfer syntax pydicom knows: a non-CT object is stored aside as received, never decoded."""
    return [str(ImplicitVRLittleEndian), *(str(ts) for ts in AllTransferSyntaxes if ts != ImplicitVRLittleEndian)]


@dataclass
class _Pending:
    """Arrival bookkeeping of the studies being received."""

    last_arrival: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, study: str) -> bool:
        """Note an arrival; True when it opens a new quiet period for the study."""
        with self.lock:
            new = study not in self.last_arrival
            self.last_arrival[study] = time.monotonic()
            return new

    def pop_stable(self, stable_seconds: float) -> list[str]:
        now = time.monotonic()
        with self.lock:
            ready = [s for s, t in self.last_arrival.items() if now - t >= stable_seconds]
            for study in ready:
                del self.last_arrival[study]
        return ready


@dataclass(frozen=True)
class Callbacks:
    """What the receiver calls: ``on_study`` for a complete CT study; optionally ``on_other`` for each non-CT
    object set aside, ``on_received`` when a study starts arriving, and ``on_tick`` every monitor tick (the
    labs watcher)."""

    on_study: OnStudy
    on_other: OnOther | None = None
    on_received: OnReceived | None = None
    on_tick: Callable[[], Any] | None = None


class Receiver:
    """A running C-STORE SCP; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, storage_dir: Path, callbacks: Callbacks, *, host: str, port: int, ae_title: str,
                 stable_seconds: float) -> None:
        self.storage_dir = storage_dir
        self.callbacks = callbacks
        self.stable_seconds = stable_seconds
        self._pending = _Pending()
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfrisk-listen")
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = 0
        ct, other = ct_transfer_syntaxes(), other_transfer_syntaxes()
        ct_classes = {str(c) for c in CT_STORAGE}
        for context in AllStoragePresentationContexts:
            uid = str(context.abstract_syntax)
            self._ae.add_supported_context(uid, ct if uid in ct_classes else other)
        handlers: list[Any] = [(evt.EVT_C_STORE, self._handle_store)]
        self._server: ThreadedAssociationServer = self._ae.start_server(  # type: ignore[assignment]
            (host, port), block=False, evt_handlers=handlers
        )
        self.port = int(self._server.server_address[1])
        self._monitor = threading.Thread(target=self._watch, name="vfrisk-listen-monitor", daemon=True)
        self._monitor.start()
        log.info("C-STORE SCP %s listening on %s:%d (CT in %d transfer syntaxes; other objects set aside)",
                 ae_title, host, self.port, len(ct))

    def _handle_store(self, event: evt.Event) -> int:
        request: Any = event.request
        sop_class = str(request.AffectedSOPClassUID)
        try:
            data = event.encoded_dataset(include_meta=True)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception as exc:  # a dataset pydicom cannot parse: refuse it, on one line
            log.warning("refused an instance that could not be read (%s)", type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        study, sop = str(ds.get("StudyInstanceUID", "")), str(request.AffectedSOPInstanceUID)
        if not (_valid_uid(study) and _valid_uid(sop)):
            log.warning("refused an instance without valid Study/SOP Instance UIDs")
            return STATUS_CANNOT_UNDERSTAND
        is_ct = sop_class in {str(c) for c in CT_STORAGE}
        folder = self.storage_dir / study if is_ct else self.storage_dir / OTHER / study
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder / f"{sop}.dcm", data)
        except OSError as exc:
            log.error("could not store an instance of study %s (%s)", study, exc.strerror or type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        if not is_ct:
            if self.callbacks.on_other is not None:
                self.callbacks.on_other(study, sop, sop_class, str(ds.get("Modality", "") or ""))
            return STATUS_SUCCESS
        if self._pending.touch(study) and self.callbacks.on_received is not None:
            self.callbacks.on_received(study)
        return STATUS_SUCCESS

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.stable_seconds / 4)):
            for study in self._pending.pop_stable(self.stable_seconds):
                self.submit(study)
            if self.callbacks.on_tick is not None:
                _quietly(self.callbacks.on_tick, "the periodic check")

    def submit(self, study: str) -> None:
        """Hand a study over to the callback (in the worker thread), as if it had just become complete."""
        if _valid_uid(study) and (self.storage_dir / study).is_dir():
            self._workers.submit(self._hand_over, study)

    def _hand_over(self, study: str) -> None:
        def run() -> None:
            try:
                self.callbacks.on_study(study, self.storage_dir / study)
            except InputError as err:
                log.warning("study %s refused: %s", study, err.one_line())

        _quietly(run, f"study {study}")

    def stop(self) -> None:
        """Stop accepting associations, then let the callbacks already started finish."""
        self._stop.set()
        self._server.shutdown()
        self._monitor.join(timeout=5)
        self._workers.shutdown(wait=True)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write the instance (file meta and dataset exactly as received) under a temporary name, then rename it."""
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    part.replace(path)


def _quietly(func: Callable[[], Any], what: str) -> None:
    """Run ``func``; an exception is logged on one line (its type and message), never with a traceback."""
    try:
        func()
    except Exception as exc:
        log.error("%s failed: %s: %s", what, type(exc).__name__, " ".join(str(exc).split())[:300])


def start_receiver(
    storage_dir: Path,
    on_study: OnStudy | Callbacks,
    *,
    host: str = "127.0.0.1",
    port: int = 11112,
    ae_title: str = "VFRISK",
    stable_seconds: float = 10.0,
) -> Receiver:
    """Start a C-STORE SCP in background threads and return it (port 0 picks a free port: see ``.port``).

    Args:
        storage_dir: where received instances are written, one folder per study (non-CT under ``_other/``).
        on_study: called as ``on_study(study_instance_uid, folder)`` once the study has been quiet for
            ``stable_seconds``; or :class:`Callbacks` for the other events too.
        host: the address to listen on (loopback by default).
        port: the port to listen on; 0 picks a free one.
        ae_title: the AE title to answer to.
        stable_seconds: the stable-time rule.

    """
    storage_dir.mkdir(parents=True, exist_ok=True)
    callbacks = on_study if isinstance(on_study, Callbacks) else Callbacks(on_study)
    return Receiver(storage_dir, callbacks, host=host, port=port, ae_title=ae_title, stable_seconds=stable_seconds)


# -- sending -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A C-STORE destination."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """``HOST:PORT:AETITLE``; ``ValueError`` otherwise."""
        parts = text.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[0] or not parts[2]:
            raise ValueError("a send target is HOST:PORT:AETITLE")
        return cls(parts[0], int(parts[1]), parts[2])

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.ae_title}"


class SendError(ConnectionError):
    """A C-STORE send that did not store everything (target down, association refused, a failure status)."""


def send_files(paths: Sequence[Path], host: str, port: int, *, called_ae: str, calling_ae: str = "VFRISK") -> int:
    """C-STORE SCU: send DICOM files (the SR, SEG, PDF, key image) to ``host:port``; return how many were stored.

    Raises :class:`SendError` (a ``ConnectionError``) when the target cannot be reached or the association is
    not established, and when an instance is not stored (non-success status), naming the status.
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    if not datasets:
        return 0
    ae = AE(ae_title=calling_ae)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets
                           if str(ds.SOPClassUID) == sop_class} | {str(ExplicitVRLittleEndian)})
        ae.add_requested_context(sop_class, syntaxes)
    try:
        assoc = ae.associate(host, port, ae_title=called_ae)
    except OSError as exc:
        raise SendError(f"cannot reach {called_ae} at {host}:{port}: {exc.strerror or type(exc).__name__}") from exc
    if not assoc.is_established:
        raise SendError(f"association with {called_ae} at {host}:{port} was not established")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else -1
            if code != STATUS_SUCCESS:
                raise SendError(f"C-STORE of one instance returned status 0x{code & 0xFFFF:04X}")
    finally:
        assoc.release()
    return len(datasets)


class Sender:
    """Works through the outbox of a :class:`~interop.state.StateStore` in a background thread.

    Due sends are grouped by target and study (one association each); a failure is logged on one line and the
    group retried after ``retry_seconds`` times 2 to the number of failed attempts, at most ``max_retry_seconds``.
    """

    def __init__(self, store: Any, *, calling_ae: str = "VFRISK", poll_seconds: float = 1.0,
                 retry_seconds: float = 5.0, max_retry_seconds: float = 300.0) -> None:
        self.store = store
        self.calling_ae = calling_ae
        self.poll_seconds, self.retry_seconds, self.max_retry_seconds = poll_seconds, retry_seconds, max_retry_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vfrisk-send", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (new objects were queued)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            _quietly(self.send_due, "sending")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def send_due(self) -> int:
        """Send what is due now; return how many objects were stored."""
        groups: dict[tuple[str, str], list[Any]] = {}
        for item in self.store.due():
            groups.setdefault((item.target, item.study_uid), []).append(item)
        stored = 0
        for (target_text, study), items in groups.items():
            if self._stop.is_set():
                break
            stored += self._send_group(Target.parse(target_text), study, items)
        return stored

    def _send_group(self, target: Target, study: str, items: Iterable[Any]) -> int:
        items = list(items)
        ids = [i.id for i in items]
        present = [i for i in items if i.path.is_file()]
        try:
            if len(present) != len(items):
                raise SendError("a queued file is missing")
            n = send_files([i.path for i in present], target.host, target.port, called_ae=target.ae_title,
                           calling_ae=self.calling_ae)
        except (OSError, ValueError) as exc:  # SendError is a ConnectionError
            attempts = max(i.attempts for i in items) + 1
            wait = min(self.max_retry_seconds, self.retry_seconds * 2 ** (attempts - 1))
            self.store.failed(ids, str(exc), wait)
            log.warning("study %s: %d object(s) not sent to %s (%s); retry in %.1f s (attempt %d)",
                        study, len(items), target.ae_title, " ".join(str(exc).split()), wait, attempts)
            return 0
        self.store.sent(ids)
        log.info("study %s: %d object(s) sent to %s", study, n, target.ae_title)
        return n

    def stop(self) -> None:
        """Stop after the current group."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)


def describe_sop_class(uid: str) -> str:
    """The SOP class's name, for records and logs."""
    name = UID(uid).name
    return name if name and name != uid else uid
