"""``write_reports``: the one entry point that writes a scoring result's reports into a folder.

Called by ``vfrisk predict --out DIR``, by the batch job and by the web app. Each format is written to a
temporary name in ``out_dir`` and renamed into place, so a reader never sees half a file; nothing is written
outside ``out_dir``. Logs name formats, files and UIDs, never the patient.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import InputError
from inference.study import Study
from interop.keyimage import png_bytes, sagittal_image
from interop.source import SourceSeries, patient_header, study_source_series
from vfrisk.result import Result

if TYPE_CHECKING:
    from PIL import Image
    from pydicom.dataset import Dataset

    from interop.seg import BodySegment

log = logging.getLogger(__name__)

FORMATS = ("json", "sr", "seg", "fhir", "pdf", "encapsulated_pdf", "key_image")
FILE_NAMES = {
    "json": "result.json",
    "sr": "sr.dcm",
    "seg": "seg.dcm",
    "fhir": "risk_assessment.fhir.json",
    "pdf": "report.pdf",
    "encapsulated_pdf": "report_pdf.dcm",
    "key_image": "key_image.dcm",
}
"""The file each format is written to, inside ``out_dir``."""
DICOM_FORMATS = ("sr", "seg", "encapsulated_pdf", "key_image")
"""The formats that are DICOM objects of the scored study (what a PACS receives)."""
WRITE_ORDER = ("json", "seg", "sr", "pdf", "encapsulated_pdf", "key_image", "fhir")
"""The SEG before the SR (the SR points at its segments); the FHIR bundle last (it links the SR and the PDF)."""
_NEEDS_SOURCE = {"sr", "seg", "fhir", "pdf", "encapsulated_pdf", "key_image"}


def load_tables() -> None:
    """Give highdicom its table of the DICOM standard's modules read one module at a time, as our objects ask for
    them (:func:`interop.standard_table.use_lazy_table`); where the installed highdicom is not the one that table's
    index was derived from, read its whole table now (it is read on the first DICOM object built anyway), so that
    :func:`kept_out_of_gc` can exempt its million objects from the garbage collector's scans.

    The cyclic garbage collector is paused while the file is parsed: parsing JSON makes no reference cycles,
    but its million new containers would trigger several full collections of the whole process (about 0.2 s)."""
    from interop.standard_table import use_lazy_table, use_memoised_iod_lookup

    use_memoised_iod_lookup()
    if use_lazy_table():  # each module read from the file when first asked for (interop.standard_table)
        return
    try:
        from highdicom._standard_utils import get_module_attribute_map
    except ImportError:  # a later highdicom that moves it: read when first needed, as before
        return
    info = getattr(get_module_attribute_map, "cache_info", None)
    if info is not None and info().currsize:
        return
    paused = gc.isenabled()
    gc.disable()
    try:
        get_module_attribute_map()
    finally:
        if paused:
            gc.enable()


@contextmanager
def kept_out_of_gc() -> Iterator[None]:
    """While the reports are written, the objects that exist already (the study, the scoring, the imported
    modules, highdicom's tables) are not scanned by the cyclic garbage collector (:func:`gc.freeze`); what the
    writers allocate is collected as usual. Building the DICOM objects allocates hundreds of thousands of
    containers, and each full collection would otherwise walk every object of the process again (about 0.4 s
    of the reports of a 512 x 512 x 300 study). Nothing is freed later than before: an object whose count of
    references drops to zero goes at once, frozen or not, and the frozen ones are handed back afterwards
    (:func:`gc.unfreeze`). Concurrent writers only lose the saving, never memory."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release_tables() -> None:
    """Drop highdicom's table of the DICOM standard's modules (read from a 22 MB JSON file on the first DICOM
    object built; 69 MB of Python objects) when no more DICOM objects will be built in this process.

    For a one-shot command (``vfrisk predict --out``): freed here, they cost about 0.02 s; left to the
    interpreter's shutdown, about 0.3 s more. A long-running process (the web app, the batch workers, the listener)
    keeps them: the next report would read the file again. A later highdicom that moves the cache is left alone."""
    try:
        from highdicom._standard_utils import get_module_attribute_map
    except ImportError:
        return
    clear = getattr(get_module_attribute_map, "cache_clear", None)
    if clear is not None:
        clear()


def _datasets(ds: Dataset) -> Iterator[Dataset]:
    """``ds`` and every item of its sequences, at any depth."""
    stack = [ds]
    while stack:
        item = stack.pop()
        yield item
        stack.extend(child for elem in item if elem.VR == "SQ" for child in elem.value)


def save_dicom(ds: Dataset, path: Path) -> None:
    """``ds.save_as(path, enforce_file_format=True)``, the same bytes, with pydicom's ambiguous-VR correction
    run once over the whole object instead of again for each sequence item it writes.

    pydicom corrects the VRs of a dataset whose encoding differs from its original one, and a dataset built in
    memory has none: so it corrects the whole tree, then each item again as it writes it (an item at depth d is
    walked d times; about a tenth of writing a SEG or an SR). Here the tree is corrected once, as pydicom's first
    pass does, and each dataset is then marked as encoded in the file's transfer syntax and its own character set
    (:meth:`~pydicom.dataset.Dataset.set_original_encoding`, meant for this), so the repeats are skipped.
    In Explicit VR Little Endian the sequences are then encoded by
    :func:`interop.dicom_encode.sequences_encoded` (pydicom's bytes, four to five times faster) and copied by
    pydicom as they stand."""
    from pydicom.filewriter import correct_ambiguous_vr

    from interop.dicom_encode import sequences_encoded

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or not syntax.is_transfer_syntax:
        ds.save_as(path, enforce_file_format=True)
        return
    correct_ambiguous_vr(ds, syntax.is_little_endian)
    for item in _datasets(ds):
        item.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian, item._character_set)
    if syntax.is_implicit_VR or not syntax.is_little_endian or syntax.is_deflated:
        ds.save_as(path, enforce_file_format=True)
        return
    with sequences_encoded(ds):  # the same bytes, the sequences encoded in one pass (interop.dicom_encode)
        ds.save_as(path, enforce_file_format=True)


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
    """The per-format writers, sharing the validated result, the study and the source headers, and what the
    earlier writers made (the SEG the SR points at; the DICOM objects and the PDF the FHIR bundle links)."""

    def __init__(self, result: Result, study: Study, source: SourceSeries | None, formats: Iterable[str] = FORMATS):
        self.result, self.study, self.source = result, study, source
        self.formats = set(formats)
        self.made: dict[str, Dataset] = {}
        """The DICOM objects written so far, by format."""
        self._pdf: bytes | None = None
        self._bodies: list[BodySegment] | None = None
        self._sagittal: Image.Image | None = None

    def bodies(self) -> list[BodySegment]:
        """The delineated bodies (the SEG's segments, outlined on the key image), measured once."""
        from interop.seg import body_segments

        if self._bodies is None:
            self._bodies = body_segments(self.result, self.study)
        return self._bodies

    def sagittal(self) -> Image.Image:
        """The sagittal key image (the found levels marked, the delineated bodies outlined), rendered once for the
        PDF and the DICOM key image."""
        if self._sagittal is None:
            bodies = self.bodies() if self.source is not None else ()
            self._sagittal = sagittal_image(self.study, self.result.found_levels(), bodies)
        return self._sagittal

    def json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def _save(self, fmt: str, ds: Dataset | None, path: Path) -> Path | None:
        if ds is None:
            return None
        save_dicom(ds, path)
        self.made[fmt] = ds
        return path

    def sr(self, path: Path) -> Path | None:
        from interop.sr import build_sr

        if self.source is None:
            return None
        return self._save("sr", build_sr(self.result, self.source, self.made.get("seg")), path)

    def seg(self, path: Path) -> Path | None:
        from interop.seg import build_seg

        if self.source is None:
            return None
        return self._save("seg", build_seg(self.result, self.study, self.source, self.bodies()), path)

    def fhir(self, path: Path) -> Path:
        from interop.fhir import FhirLinks, write_fhir

        links = FhirLinks.of(self.source, self.made, self.pdf_bytes() if "pdf" in self.formats else None)
        return write_fhir(self.result, path, links=links)

    def _write_pdf(self, path: Path) -> None:
        from interop.pdf import write_pdf

        png = png_bytes(self.sagittal())
        patient = patient_header(self.source.first) if self.source is not None else {}
        write_pdf(self.result, path, patient=patient, key_image=png, header=(self.study.age, self.study.sex))
        self._pdf = path.read_bytes()

    def pdf_bytes(self) -> bytes:
        """The PDF report, made once (the PDF file and the Encapsulated PDF hold the same document)."""
        if self._pdf is None:
            with tempfile.TemporaryDirectory(prefix="vfrisk-pdf-") as tmp:
                self._write_pdf(Path(tmp) / "report.pdf")
        assert self._pdf is not None
        return self._pdf

    def pdf(self, path: Path) -> Path:
        self._write_pdf(path)
        return path

    def encapsulated_pdf(self, path: Path) -> Path | None:
        from interop.encapsulated import build_encapsulated_pdf

        if self.source is None:
            return None
        return self._save("encapsulated_pdf", build_encapsulated_pdf(self.result, self.source, self.pdf_bytes()),
                          path)

    def key_image(self, path: Path) -> Path | None:
        from interop.keyimage import build_key_image

        if self.source is None:
            return None
        return self._save("key_image", build_key_image(self.result, self.study, self.source, self.bodies(),
                                                       self.sagittal()), path)


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
        formats: any of ``json``, ``sr``, ``seg``, ``fhir``, ``pdf``, ``encapsulated_pdf`` (the PDF as a DICOM
            object of the study), ``key_image`` (the sagittal key image as a DICOM Secondary Capture). They are
            written in :data:`WRITE_ORDER`: the SR points at the SEG's segments when both are written, and the
            FHIR bundle links the SR, the SEG, the DICOM PDF and the PDF written with it.

    Returns:
        format -> path of each file written. ``seg`` is absent when no body was delineated; the DICOM formats
        are absent for a study that was not read from DICOM (NIfTI).

    Raises:
        InputError: ``bad_usage`` for an unknown format; ``source_mismatch`` when ``source`` does not hold
            the scored series.
        ValueError: when ``result`` names another study (a bug upstream).

    """
    chosen = sorted(_check_formats(formats), key=WRITE_ORDER.index)
    _check_study(result, study)
    headers = _source_headers(study, source, result, chosen)
    writers = _Writers(result, study, headers, chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    if headers is not None and set(chosen) & set(DICOM_FORMATS):
        load_tables()  # before the freeze, so that its objects are not scanned either
    written: dict[str, Path] = {}
    with kept_out_of_gc():
        for fmt in chosen:
            path = _atomic(out_dir / FILE_NAMES[fmt], getattr(writers, fmt))
            if path is not None:
                written[fmt] = path
                log.info("wrote %s report %s for series %s", fmt, path.name, result.series_instance_uid)
    return written
