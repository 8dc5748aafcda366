"""Web app settings: where its private state lives, which model it loads, its limits and queue size.

Everything has a safe default; environment variables (``VFRISK_*``) override them so that ``vfrisk serve`` and
tests can point the app elsewhere without code changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from inference.dicom.limits import MIB
from webapp.uploads import UploadLimits

REPO = Path(__file__).resolve().parents[1]


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def limits_from_env() -> UploadLimits:
    """Upload limits, overridden by ``VFRISK_MAX_FILES``, ``VFRISK_MAX_UPLOAD_MB`` and ``VFRISK_MAX_VOXELS``."""
    base = UploadLimits()
    env = os.environ.get
    return UploadLimits(
        max_files=int(env("VFRISK_MAX_FILES") or base.max_files),
        max_total_bytes=int(float(env("VFRISK_MAX_UPLOAD_MB") or base.max_total_bytes / MIB) * MIB),
        max_voxels=int(env("VFRISK_MAX_VOXELS") or base.max_voxels),
    )


@dataclass(frozen=True)
class AppConfig:
    """Settings of one app run."""

    home: Path
    """Private state folder (mode 0700): users file, audit log, temp folder."""
    users_file: Path
    audit_file: Path
    temp_dir: Path
    """``GRADIO_TEMP_DIR``: every upload lands here and is deleted after scoring."""
    bundle: Path | None = None
    """Model bundle folder; None loads the default bundle."""
    demo_user: bool = False
    """Add an in-memory demo account with a random password printed once at start-up."""
    limits: UploadLimits = field(default_factory=UploadLimits)
    concurrency: int = 1
    """Scoring slots: studies read and scored at once (each uses several cores and up to the study memory budget,
    so the app's peak memory is about its baseline plus slots x ``VFRISK_STUDY_BUDGET_MB``)."""
    queue_size: int = 8
    """Requests waiting beyond which new ones are refused."""
    login_backoff_s: float = 1.0
    """First wait after the free sign-in attempts of an account or address (doubling after each further one)."""

    @classmethod
    def from_env(cls, *, demo_user: bool | None = None, bundle: Path | None = None) -> AppConfig:
        """Defaults, overridden by ``VFRISK_HOME``, ``VFRISK_USERS``, ``VFRISK_MODEL``, ``VFRISK_DEMO_USER``,
        ``VFRISK_SCORING_SLOTS``, ``VFRISK_QUEUE_SIZE`` and ``VFRISK_LOGIN_BACKOFF_S``."""
        home = Path(os.environ.get("VFRISK_HOME") or Path.home() / ".vfrisk").expanduser()
        model = bundle or (Path(os.environ["VFRISK_MODEL"]) if os.environ.get("VFRISK_MODEL") else None)
        concurrency = max(1, int(os.environ.get("VFRISK_SCORING_SLOTS") or _cpus() // 4))
        return cls(
            home=home,
            users_file=Path(os.environ.get("VFRISK_USERS") or home / "users.json"),
            audit_file=home / "audit.log",
            temp_dir=home / "tmp",
            bundle=model,
            demo_user=_flag("VFRISK_DEMO_USER") if demo_user is None else demo_user,
            limits=limits_from_env(),
            concurrency=concurrency,
            queue_size=max(1, int(os.environ.get("VFRISK_QUEUE_SIZE") or 8 * concurrency)),
            login_backoff_s=float(os.environ.get("VFRISK_LOGIN_BACKOFF_S") or 1.0),
        )

    def blocked_paths(self) -> list[str]:
        """Folders the web server must never serve: data, models, and the private state (not its temp)."""
        paths = [REPO / "data", REPO / "models", self.users_file, self.audit_file]
        if self.bundle is not None:
            paths.append(self.bundle)
        return [str(p) for p in paths]
