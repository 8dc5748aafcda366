"""The web app's request handling without the UI: load an upload, score it, render views, write downloads.

Every public method records an audit line, deletes the uploads it was given once they are no longer needed,
and raises only :class:`~webapp.errors.PublicError`. A study read for the page is held in the user's session
(and registered with the viewer's image route, :mod:`webapp.views`) after its uploads are deleted, until the
session drops it (:meth:`Service.forget`).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference.labs import LabInput
from inference.study import Study
from vfrisk.result import Result
from webapp.audit import AuditLog, Event
from webapp.context_form import ContextForm
from webapp.errors import public
from webapp.levels import LevelMark, level_marks
from webapp.private_files import FileRegistry
from webapp.uploads import UploadLimits, check_upload, delete_uploads
from webapp.viewer import NORMAL_AXIS, WINDOWS, Plane, View, Window, render
from webapp.views import ViewStore

log = logging.getLogger("vfrisk.webapp")
REPORTS = "reports"
"""Sub-folder of the temp folder holding the per-session report folders."""
API_REPORTS_TTL_S = 600.0
"""How long the report files of an API call are kept for the client to fetch (``VFRISK_API_REPORTS_TTL_S``)."""


__all__ = ["LabInput", "Loaded", "Service"]


@dataclass
class Loaded:
    """A study read from an upload, held in the user's session (the uploads are deleted after scoring)."""

    study: Study
    uploads: list[Path]
    centre: tuple[int, int, int]
    """(z, y, x) voxel index of the spine crop centre: the default slices."""
    user: str | None = None
    """Who uploaded it (only their own uploads are ever deleted on their behalf)."""
    result: Result | None = None
    marks: list[LevelMark] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    n_files: int = 0
    """Files uploaded."""
    series: list[dict[str, Any]] = field(default_factory=list)
    """The series found (DICOM), each with whether it was chosen or why it was set aside."""
    token: str | None = None
    """The study's key on the viewer's image route."""
    version: int = 0
    """Bumped whenever the overlay changes (after each scoring), so that the page redraws."""

    @property
    def volume(self) -> np.ndarray:
        """The canonical HU volume (for the viewer)."""
        return self.study.volume

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (Z, Y, X) in mm (for the viewer)."""
        return self.study.spacing_mm


def as_paths(files: Any) -> list[Path]:
    """Gradio file values (paths, or objects with ``.name`` / ``path``) as paths."""
    items = files if isinstance(files, list | tuple) else [files] if files else []
    out = []
    for f in items:
        if isinstance(f, str | os.PathLike):
            out.append(Path(f))
        else:
            out.append(Path(str(f.get("path") if isinstance(f, dict) else f.name)))
    return out


class Service:
    """The engine, the limits, the temp folder and the audit log, behind the UI and the API."""

    def __init__(self, engine: Any, audit: AuditLog, temp_dir: Path, limits: UploadLimits | None = None,
                 files: FileRegistry | None = None) -> None:
        """``files``: the registry of private uploads (the web app's); without it, uploads are plain paths under
        ``temp_dir`` (tests, scripts)."""
        self.engine = engine
        self.audit = audit
        self.temp_dir = temp_dir
        self.limits = limits or UploadLimits()
        self.files = files
        self.views = ViewStore()
        self._sessions: dict[str, Loaded] = {}
        """The study each open page (Gradio session) holds, to drop it when the page is closed."""
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._api_reports: dict[Path, float] = {}
        """Report folders of API calls and when they were written (deleted by :meth:`expire_api_reports`)."""
        self.api_reports_ttl_s = float(os.environ.get("VFRISK_API_REPORTS_TTL_S", API_REPORTS_TTL_S))

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Count the studies being read or scored at once (logged: the scoring slots in use)."""
        with self._busy_lock:
            self._busy += 1
            log.info("scoring slots in use: %d", self._busy)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _delete(self, uploads: list[Path], user: str | None) -> None:
        """Delete uploads: with the registry, only ``user``'s own (a request naming someone else's path must not
        delete it)."""
        if self.files is not None:
            self.files.delete(uploads, user=user)
        else:
            delete_uploads(uploads, self.temp_dir)

    @property
    def model_version(self) -> str:
        """Version of the loaded model bundle."""
        return str(self.engine.bundle.identity["version"])

    @contextmanager
    def _guard(self, event: Event, user: str | None, uploads: list[Path], study: Study | None = None,
               *, delete: bool, keep_on_error: bool = False) -> Iterator[None]:
        """Audit a failure, turn any exception into a PublicError, and delete the uploads: on success when
        ``delete``, on failure unless ``keep_on_error`` (a study already read stays scorable in the session)."""
        uid = study.study_instance_uid if study is not None else None
        try:
            yield
        except Exception as exc:
            err = public(exc, uploads)
            self.audit.record(event, user, err.code, study_uid=uid, model_version=self.model_version)
            if not keep_on_error:
                self._delete(uploads, user)
            raise err from None
        if delete:
            self._delete(uploads, user)

    def load(self, files: Any, user: str | None, *, view: bool = False) -> Loaded:
        """Claim the uploads for ``user`` (each must be theirs), check the upload limits and read the study: DICOM
        (files, a zip, a folder) or one NIfTI file, under the same limits (uploads kept until scoring). With
        ``view``, list the series found and register the study with the viewer's image route."""
        from inference.pipeline import read_study

        paths = as_paths(files)
        with self._slot(), self._guard(Event.UPLOAD, user, paths, delete=False):
            if self.files is not None:
                self.files.claim(paths, user)
            check_upload(paths, self.limits)
            study = read_study(paths, self.limits.ingestion())
            loaded = Loaded(study, paths, self._centre(study), user, n_files=len(paths))
            if view:
                loaded.series = self._series(paths, study)
                loaded.token = self.views.add(loaded, user)
        self.audit.record(Event.UPLOAD, user, "ok", study_uid=study.study_instance_uid,
                          model_version=self.model_version)
        return loaded

    def _series(self, paths: list[Path], study: Study) -> list[dict[str, Any]]:
        """The series found in a DICOM upload (headers only) for the upload summary; none for NIfTI, or when the
        listing fails (the study itself was read)."""
        from inference.dicom import inspect_study

        if study.source_format != "dicom":
            return []
        try:
            return list(inspect_study(paths, limits=self.limits.ingestion())["series"])
        except Exception as exc:  # the summary is an extra: the study was read and can be scored
            log.info("series list not made (%s)", type(exc).__name__)
            return []

    def _centre(self, study: Study) -> tuple[int, int, int]:
        crop = self.engine.crop(study)
        shape = study.volume.shape
        return tuple(  # type: ignore[return-value]
            int(min(max(crop.start_index[a] + crop.image.shape[a] // 2, 0), shape[a] - 1)) for a in range(3))

    def score(self, loaded: Loaded, labs: LabInput, form: ContextForm | None, user: str | None,
              *, event: Event = Event.SCORE, reports: bool = False) -> Result:
        """Validate the labs and context, score, write the reports when asked, delete the uploads.

        Reports (JSON, and SR/SEG/FHIR/PDF with the interop layer) are written while the source files still
        exist, into a fresh private folder under the temp folder (``loaded.reports``). A refusal in the UI keeps
        the uploads so that the user can correct the labs and score again; the API deletes them in any case.
        """
        from inference.pipeline import score_study
        from vfrisk.pipeline import assess

        keep = event == Event.SCORE
        with self._slot(), self._guard(event, user, loaded.uploads, loaded.study, delete=True, keep_on_error=keep):
            context = form.to_context() if form is not None else None
            result = assess(score_study(loaded.study, labs, self.engine), context)
            loaded.result = result
            loaded.marks = level_marks(result.vertebrae, loaded.study.affine, loaded.study.volume.shape,
                                       loaded.study.spacing_mm, _column(loaded.study, result))
            loaded.version += 1
            loaded.reports = self._reports(loaded) if reports else []
        loaded.uploads = []
        self.audit.record(event, user, "ok", study_uid=loaded.study.study_instance_uid,
                          model_version=self.model_version)
        return result

    def _reports(self, loaded: Loaded) -> list[Path]:
        """Write the reports of the scored study into a fresh private folder; return the files, JSON first."""
        from vfrisk.pipeline import write_reports

        assert loaded.result is not None
        out = self.temp_dir / REPORTS / secrets.token_hex(8)
        out.mkdir(parents=True, mode=0o700)
        written: dict[str, Path] = {}
        try:
            if loaded.uploads:
                written = write_reports(loaded.result, loaded.study, list(loaded.uploads), out)
        except Exception as exc:  # the reports are extras: the JSON result must still reach the user
            log.error("reports not written (%s); JSON only", type(exc).__name__)
        files = sorted(written.values(), key=lambda p: p.suffix != ".json")
        if not files or files[0].suffix != ".json":
            files.insert(0, write_reports(loaded.result, loaded.study, [], out, formats=("json",))["json"])
        return files

    def attach(self, session: str | None, loaded: Loaded) -> None:
        """Note that the page of ``session`` holds ``loaded`` (dropped by :meth:`end` when the page closes)."""
        if session:
            with self._busy_lock:
                self._sessions[session] = loaded

    def end(self, session: str | None) -> None:
        """The page of ``session`` was closed: forget its study now (Gradio keeps a closed session's state for up
        to an hour)."""
        with self._busy_lock:
            loaded = self._sessions.pop(session or "", None)
        self.forget(loaded)

    def forget(self, loaded: Loaded | None) -> None:
        """Delete what a session left: its uploads, its reports folder, its study on the viewer's route, and the
        volume itself (the memory is freed even while Gradio still holds the session's state)."""
        if loaded is None:
            return
        self.views.drop(loaded.token)
        with self._busy_lock:
            for key in [k for k, v in self._sessions.items() if v is loaded]:
                del self._sessions[key]
        if loaded.study.volume.size:
            loaded.study = replace(loaded.study, volume=np.empty((0, 0, 0), np.float32))
            loaded.marks = []
        self._delete(loaded.uploads, loaded.user)
        for folder in {p.parent for p in loaded.reports}:
            if (self.temp_dir / REPORTS) in folder.resolve().parents:
                shutil.rmtree(folder, ignore_errors=True)
        loaded.uploads, loaded.reports = [], []

    def downloaded(self, loaded: Loaded | None, user: str | None) -> None:
        """Audit a download of the reports."""
        uid = loaded.study.study_instance_uid if loaded is not None else None
        self.audit.record(Event.DOWNLOAD, user, "ok", study_uid=uid, model_version=self.model_version)

    def predict(self, files: Any, labs: LabInput, form: ContextForm | None, user: str | None) -> Result:
        """The API: read, score, delete the uploads, return the result JSON."""
        loaded = self.load(files, user)
        return self.score(loaded, labs, form, user, event=Event.API)

    def predict_with_reports(self, files: Any, labs: LabInput, form: ContextForm | None,
                             user: str | None) -> tuple[Result, list[Path]]:
        """The API with the report files: read, score, write the reports (JSON first; SR, SEG, FHIR, PDF, the
        Encapsulated PDF and the key image for a DICOM study), delete the uploads. The files stay
        :attr:`api_reports_ttl_s` seconds for the client to fetch them, then :meth:`expire_api_reports` deletes
        them."""
        loaded = self.load(files, user)
        result = self.score(loaded, labs, form, user, event=Event.API, reports=True)
        with self._busy_lock:
            for folder in {p.parent for p in loaded.reports}:
                self._api_reports[folder] = time.monotonic()
        return result, list(loaded.reports)

    def expire_api_reports(self, now: float | None = None) -> int:
        """Delete the report folders of API calls older than :attr:`api_reports_ttl_s`; return how many."""
        now = time.monotonic() if now is None else now
        with self._busy_lock:
            old = [f for f, t in self._api_reports.items() if now - t > self.api_reports_ttl_s]
            for folder in old:
                del self._api_reports[folder]
        for folder in old:
            if (self.temp_dir / REPORTS) in folder.resolve().parents:
                shutil.rmtree(folder, ignore_errors=True)
        return len(old)

    def image(self, loaded: Loaded, plane: str, window: str | Window, index: int | None,
              long_side: int = 512) -> Image.Image:
        """One reformat of the loaded study (a window preset by name, or any window) with the level overlay once
        it is scored; ``index`` None is the slice through the spine's centre."""
        p = Plane(plane)
        default = loaded.centre[NORMAL_AXIS[p]]
        chosen = WINDOWS[window] if isinstance(window, str) else window
        view = View(p, default if index is None else int(index), chosen, long_side)
        return render(loaded.study.volume, loaded.study.spacing_mm, view, loaded.marks)


def _column(study: Study, result: Result) -> tuple[float, float] | None:
    """The spine column point (j, i) that places the body regions (``interop.spine``, the same as the key image's
    level marks); None without the interop layer or when nothing was found."""
    if not result.found_levels():
        return None
    try:
        from interop.spine import spine_column
    except ImportError:
        return None
    try:
        return spine_column(study)
    except ValueError:
        return None
