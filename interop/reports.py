"""``write_reports``: the one entry point that writes a scoring result's reports into a folder.

Called by ``vfrisk predict --out DIR``, by the batch job and by the web app. Each format is written to a
temporary name in ``out_dir`` and renamed into place, so a reader never sees half a file; nothing is written
outside ``out_dir``. Logs name formats, files and UIDs, never the patient.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from inference.errors import InputError
from inference.study import Study
from interop.source import SourceSeries, patient_header, study_source_series
from vfrisk.result import Result

log = logging.getLogger(__name__)

FORMATS = ("json", "sr", "seg", "fhir", "pdf")
FILE_NAMES = {
    "json": "result.json",
    "sr": "sr.dcm",
    "seg": "seg.dcm",
    "fhir": "risk_assessment.fhir.json",
    "pdf": "report.pdf",
}
"""The file each format is written to, inside ``out_dir``."""
_NEEDS_SOURCE = {"sr", "seg", "fhir", "pdf"}


def _check_formats(formats: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(formats))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise InputError("bad_usage", f"unknown report format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    return chosen


def _check_study(result: Result, study: Study) -> None:
    if (result.study_instance_uid, result.series_instance_uid) != (
        study.study_instance_uid,
        study.series_instance_uid,
    ):
        raise ValueError("the result and the study name different study or series UIDs")


def _atomic(path: Path, write: Callable[[Path], Path | None]) -> Path | None:
    """Run ``write`` on a temporary sibling of ``path`` and rename it into place; None if nothing written."""
    part = path.with_name(f".{path.name}.part")
    try:
        written = write(part)
        if written is None:
            return None
        os.replace(part, path)
        return path
    finally:
        part.unlink(missing_ok=True)


class _Writers:
    """The per-format writers, sharing the validated result, the study and the source headers."""

    def __init__(self, result: Result, study: Study, source: SourceSeries | None):
        self.result, self.study, self.source = result, study, source

    def json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def sr(self, path: Path) -> Path | None:
        from interop.sr import write_sr

        return None if self.source is None else write_sr(self.result, self.source, path)

    def seg(self, path: Path) -> Path | None:
        from interop.seg import write_seg

        return None if self.source is None else write_seg(self.result, self.study, self.source, path)

    def fhir(self, path: Path) -> Path:
        from interop.fhir import write_fhir

        if self.source is None:
            return write_fhir(self.result, path)
        patient_id = str(self.source.first.get("PatientID", "") or "") or None
        return write_fhir(self.result, path, patient_id=patient_id, n_instances=len(self.source.datasets))

    def pdf(self, path: Path) -> Path:
        from interop.keyimage import sagittal_png
        from interop.pdf import write_pdf

        png = sagittal_png(self.study, self.result.vertebrae)
        patient = patient_header(self.source.first) if self.source is not None else {}
        return write_pdf(self.result, path, patient=patient, key_image=png, header=(self.study.age, self.study.sex))


def _source_headers(
    study: Study, source: Path | Sequence[Path], result: Result, formats: list[str]
) -> SourceSeries | None:
    """The scored series' DICOM headers, or None for a non-DICOM study (then SR and SEG are skipped)."""
    if not _NEEDS_SOURCE & set(formats):
        return None
    if study.source_format != "dicom":
        log.info("study read from %s: no DICOM headers, SR and SEG skipped", study.source_format)
        return None
    return study_source_series(study, source)  # the headers the reader parsed, when it kept them


def write_reports(
    result: Result,
    study: Study,
    source: Path | Sequence[Path],
    out_dir: Path,
    formats: Iterable[str] = FORMATS,
) -> dict[str, Path]:
    """Write the reports of one scoring result into ``out_dir`` (created if missing).

    Args:
        result: the typed result (prediction and suggestion) of :mod:`vfrisk.pipeline`.
        study: the :class:`~inference.study.Study` that was scored (for the SEG geometry and the key image).
        source: the input the study was read from (folder, zip, or files); the headers of the scored series
            are read from it for the SR, SEG, FHIR patient reference and PDF header.
        out_dir: the folder to write into; nothing is written elsewhere.
        formats: any of ``json``, ``sr``, ``seg``, ``fhir``, ``pdf``.

    Returns:
        format -> path of each file written. ``seg`` is absent when the model found no level to segment;
        ``sr`` and ``seg`` are absent for a study that was not read from DICOM (NIfTI).

    Raises:
        InputError: ``bad_usage`` for an unknown format; ``source_mismatch`` when ``source`` does not hold
            the scored series.
        ValueError: when ``result`` names another study (a bug upstream).

    """
    chosen = _check_formats(formats)
    _check_study(result, study)
    headers = _source_headers(study, source, result, chosen)
    writers = _Writers(result, study, headers)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in chosen:
        path = _atomic(out_dir / FILE_NAMES[fmt], getattr(writers, fmt))
        if path is not None:
            written[fmt] = path
            log.info("wrote %s report %s for series %s", fmt, path.name, result.series_instance_uid)
    return written
