"""DICOM receiver (``vfrisk listen``): a pynetdicom C-STORE SCP that gathers CT studies and hands each one to
a callback once it is complete, plus a C-STORE SCU to send the SR back.

A study counts as complete when no instance of it has arrived for ``stable_seconds`` (the stable-time rule
PACS routers use). Instances are written to ``<storage_dir>/<Study Instance UID>/<SOP Instance UID>.dcm``;
both names are checked to be DICOM UIDs before they are used in a path. The callback runs in a worker thread,
once per quiet period: instances that arrive after a study was handed over start a new period and the study
is handed over again. An :class:`~inference.errors.InputError` raised by the callback is logged as a refusal
with its reason; any other exception is logged with its traceback. Nothing here logs patient identity.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)
from pynetdicom.transport import ThreadedAssociationServer

from inference.errors import InputError

log = logging.getLogger(__name__)
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CT_STORAGE = (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage)
OnStudy = Callable[[str, Path], Any]
"""Callback: ``on_study(study_instance_uid, folder)``."""
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700


def _valid_uid(uid: str) -> bool:
    return bool(UID_RE.match(uid)) and len(uid) <= 64


@dataclass
class _Pending:
    """Arrival bookkeeping of the studies being received."""

    last_arrival: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, study: str) -> None:
        with self.lock:
            self.last_arrival[study] = time.monotonic()

    def pop_stable(self, stable_seconds: float) -> list[str]:
        now = time.monotonic()
        with self.lock:
            ready = [s for s, t in self.last_arrival.items() if now - t >= stable_seconds]
            for study in ready:
                del self.last_arrival[study]
        return ready


class Receiver:
    """A running C-STORE SCP; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(
        self, storage_dir: Path, on_study: OnStudy, *, host: str, port: int, ae_title: str, stable_seconds: float
    ) -> None:
        self.storage_dir = storage_dir
        self.on_study = on_study
        self.stable_seconds = stable_seconds
        self._pending = _Pending()
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfrisk-listen")
        self._ae = AE(ae_title=ae_title)
        for sop_class in CT_STORAGE:
            self._ae.add_supported_context(sop_class)
        handlers: list[Any] = [(evt.EVT_C_STORE, self._handle_store)]
        self._server: ThreadedAssociationServer = self._ae.start_server(  # type: ignore[assignment]
            (host, port), block=False, evt_handlers=handlers
        )
        self.port = int(self._server.server_address[1])
        self._monitor = threading.Thread(target=self._watch, name="vfrisk-listen-monitor", daemon=True)
        self._monitor.start()
        log.info("C-STORE SCP %s listening on %s:%d", ae_title, host, self.port)

    def _handle_store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
        if not (_valid_uid(study) and _valid_uid(sop)):
            log.warning("refused an instance without valid Study/SOP Instance UIDs")
            return STATUS_CANNOT_UNDERSTAND
        folder = self.storage_dir / study
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / f"{sop}.dcm", enforce_file_format=True)
        except OSError:
            log.exception("could not store an instance of study %s", study)
            return STATUS_OUT_OF_RESOURCES
        self._pending.touch(study)
        return STATUS_SUCCESS

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.stable_seconds / 4)):
            for study in self._pending.pop_stable(self.stable_seconds):
                self._workers.submit(self._hand_over, study)

    def _hand_over(self, study: str) -> None:
        try:
            self.on_study(study, self.storage_dir / study)
            log.info("study %s handed over", study)
        except InputError as err:
            log.warning("study %s refused: %s", study, err.one_line())
        except Exception:
            log.exception("study %s failed", study)

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


def start_receiver(
    storage_dir: Path,
    on_study: OnStudy,
    *,
    host: str = "127.0.0.1",
    port: int = 11112,
    ae_title: str = "VFRISK",
    stable_seconds: float = 10.0,
) -> Receiver:
    """Start a C-STORE SCP in background threads and return it (port 0 picks a free port: see ``.port``).

    Args:
        storage_dir: where received instances are written, one folder per study.
        on_study: called as ``on_study(study_instance_uid, folder)`` once the study has been quiet for
            ``stable_seconds``; typically it scores the folder and writes or sends the SR.
        host: the address to listen on (loopback by default).
        port: the port to listen on; 0 picks a free one.
        ae_title: the AE title to answer to.
        stable_seconds: the stable-time rule.

    """
    storage_dir.mkdir(parents=True, exist_ok=True)
    return Receiver(storage_dir, on_study, host=host, port=port, ae_title=ae_title, stable_seconds=stable_seconds)


def serve_forever(storage_dir: Path, on_study: OnStudy, **options: Any) -> None:
    """Run :func:`start_receiver` until interrupted (Ctrl-C): the blocking form for ``vfrisk listen``."""
    receiver = start_receiver(storage_dir, on_study, **options)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()


def send_files(paths: Sequence[Path], host: str, port: int, *, called_ae: str, calling_ae: str = "VFRISK") -> int:
    """C-STORE SCU: send DICOM files (for example the SR) to ``host:port``; return how many were stored.

    Raises ``ConnectionError`` when the association is refused, ``RuntimeError`` when an instance is not
    stored (non-success status).
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise ConnectionError(f"association with {called_ae} at {host}:{port} was not established")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else -1
            if code != STATUS_SUCCESS:
                raise RuntimeError(f"C-STORE of one instance returned status 0x{code & 0xFFFF:04X}")
    finally:
        assoc.release()
    return len(datasets)
