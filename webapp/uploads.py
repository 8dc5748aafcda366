"""Uploads: our own limits on count, bytes and voxels, a private temp folder, deletion after scoring.

Gradio copies every upload under ``GRADIO_TEMP_DIR``; the app points that at a folder of its own (mode
0700), empties it at start-up and deletes each upload once the study has been scored (or refused).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from inference.dicom.limits import MIB, Limits
from inference.errors import InputError


@dataclass(frozen=True)
class UploadLimits:
    """Caps on what one user may upload for one study."""

    max_files: int = 4000
    """Files in one upload (zip members count through the ingestion limits)."""
    max_total_bytes: int = 2048 * MIB
    """Sum of the uploaded file sizes (and of the uncompressed zip members)."""
    max_voxels: int = 400_000_000
    """Voxels of the study volume (1.6 GB of float32)."""

    def ingestion(self) -> Limits:
        """The ingestion limits matching these caps, on top of the operator's (:meth:`Limits.from_env`: the study
        memory budget and the inflate cap)."""
        return Limits.from_env(max_files=self.max_files, max_file_bytes=self.max_total_bytes,
                               max_total_bytes=self.max_total_bytes, max_voxels=self.max_voxels)

    @property
    def gradio_max_file_size(self) -> int:
        """Per-file size limit handed to Gradio's ``launch(max_file_size=...)``."""
        return self.max_total_bytes


def check_upload(paths: list[Path], limits: UploadLimits) -> None:
    """Refuse an empty upload, too many files or too many bytes, before anything is parsed."""
    if not paths:
        raise InputError("no_upload", "no file was uploaded")
    if len(paths) > limits.max_files:
        raise InputError("too_many_files", f"{len(paths)} files uploaded; at most {limits.max_files} are accepted")
    total = sum(p.stat().st_size for p in paths if p.is_file())
    if total > limits.max_total_bytes:
        raise InputError("upload_too_large", f"the upload holds {total / MIB:.0f} MiB; at most "
                         f"{limits.max_total_bytes / MIB:.0f} MiB are accepted")


def private_temp_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) and remove whatever a previous run left in it; return it resolved."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    sweep(path)
    return path.resolve()


def sweep(root: Path) -> int:
    """Delete everything inside ``root`` (not ``root`` itself); return the number of entries removed."""
    n = 0
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        n += 1
    return n


def delete_uploads(paths: list[Path], root: Path) -> None:
    """Delete uploaded files that lie under ``root`` and the per-upload folders Gradio made for them."""
    root = root.resolve()
    for path in paths:
        resolved = path.resolve()
        if root not in resolved.parents:
            continue
        resolved.unlink(missing_ok=True)
        parent = resolved.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def leftovers(root: Path) -> list[Path]:
    """Every file under ``root`` (for tests and the start-up report)."""
    return [p for p in root.rglob("*") if p.is_file()]
