"""DICOMweb client for PACS work: QIDO-RS search, WADO-RS retrieve into a folder, STOW-RS store with the
response checked. Built on dicomweb-client.

Typical use (what ``vfrisk score --dicomweb URL [--push]`` does)::

    for ref in search_studies(url, date_from=date(2024, 1, 1), modality="CT"):
        with retrieved_study(url, ref.study_instance_uid) as folder:
            ...  # load_study(folder), score, write_reports(..., source=folder, ...)
            store_files(url, [out / "sr.dcm", out / "seg.dcm"])  # raises StoreError unless all stored

Nothing here logs patient names or IDs: studies are named by their Study Instance UID.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SUCCESS_STATUS_TAGS = ("FailedSOPSequence", "ReferencedSOPSequence")
PAGE = 100
"""QIDO-RS page size; pages are requested with ``offset`` until one comes back short."""
MAX_RESULTS = 100_000


class StoreError(Exception):
    """A STOW-RS store that did not store every instance (or got no usable response)."""


@dataclass(frozen=True)
class StudyRef:
    """One study found by QIDO-RS (no patient identity is kept)."""

    study_instance_uid: str
    study_date: str
    modalities: tuple[str, ...]
    n_instances: int | None


def client(url: str, *, timeout: float = 60.0, headers: dict[str, str] | None = None) -> DICOMwebClient:
    """A DICOMweb client for the service root ``url`` (for example ``http://pacs:8042/dicom-web``)."""
    return DICOMwebClient(url=url.rstrip("/"), timeout=timeout, headers=headers)


def _date_range(date_from: date | None, date_to: date | None) -> str | None:
    if date_from is None and date_to is None:
        return None
    lo = date_from.strftime("%Y%m%d") if date_from else ""
    hi = date_to.strftime("%Y%m%d") if date_to else ""
    return f"{lo}-{hi}"


def _value(item: dict[str, Any], tag: str) -> list[Any]:
    values = item.get(tag, {}).get("Value", [])
    return values if isinstance(values, list) else []


def _study_ref(item: dict[str, Any]) -> StudyRef | None:
    uid = next(iter(_value(item, "0020000D")), "")
    if not isinstance(uid, str) or not UID_RE.match(uid):
        return None
    count = next(iter(_value(item, "00201208")), None)
    return StudyRef(
        study_instance_uid=uid,
        study_date=str(next(iter(_value(item, "00080020")), "")),
        modalities=tuple(str(m) for m in _value(item, "00080061")),
        n_instances=int(count) if count is not None else None,
    )


def search_studies(
    url: str | DICOMwebClient,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    modality: str | None = "CT",
    limit: int | None = None,
    extra_filters: dict[str, str] | None = None,
) -> list[StudyRef]:
    """QIDO-RS: the studies with a study date in ``[date_from, date_to]`` (either end open) holding
    ``modality`` (None: any). ``extra_filters`` adds QIDO attribute filters (keyword -> value).
    """
    dw = url if isinstance(url, DICOMwebClient) else client(url)
    filters: dict[str, str] = dict(extra_filters or {})
    dates = _date_range(date_from, date_to)
    if dates:
        filters["StudyDate"] = dates
    if modality:
        filters["ModalitiesInStudy"] = modality
    fields = ["StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"]
    refs: dict[str, StudyRef] = {}
    for offset in range(0, MAX_RESULTS, PAGE):
        page = dw.search_for_studies(search_filters=filters, fields=fields, limit=PAGE, offset=offset)
        new = [ref for ref in (_study_ref(item) for item in page) if ref and ref.study_instance_uid not in refs]
        refs.update((ref.study_instance_uid, ref) for ref in new)
        if len(page) < PAGE or not new or (limit is not None and len(refs) >= limit):
            break  # last page, or a server that ignores the offset
    found = list(refs.values())[:limit]
    log.info("QIDO-RS found %d studies (filters %s)", len(found), sorted(filters))
    return found


def _safe_uid(uid: str) -> str:
    if not UID_RE.match(uid) or len(uid) > 64:
        raise ValueError(f"not a DICOM UID: {uid!r}")
    return uid


def retrieve_study(url: str | DICOMwebClient, study_instance_uid: str, dest: Path) -> list[Path]:
    """WADO-RS: write every instance of the study into ``dest`` (created) as ``<SOP Instance UID>.dcm``.

    Instances whose SOP Instance UID is not a valid UID are skipped (never used to build a path).
    """
    dw = url if isinstance(url, DICOMwebClient) else client(url)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in dw.iter_study(_safe_uid(study_instance_uid)):
        sop = str(ds.get("SOPInstanceUID", ""))
        if not UID_RE.match(sop):
            log.warning("skipped an instance without a valid SOP Instance UID")
            continue
        path = dest / f"{sop}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    log.info("WADO-RS retrieved %d instances of study %s", len(paths), study_instance_uid)
    return paths


@contextmanager
def retrieved_study(url: str | DICOMwebClient, study_instance_uid: str) -> Iterator[Path]:
    """Retrieve a study into a private temporary folder, removed when the block exits."""
    folder = Path(tempfile.mkdtemp(prefix="vfrisk-wado-"))
    try:
        retrieve_study(url, study_instance_uid, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_store_response(response: Dataset | None, datasets: Sequence[Dataset]) -> list[str]:
    """Check a STOW-RS response; return the stored SOP Instance UIDs or raise :class:`StoreError`.

    Every sent instance must appear in the Referenced SOP Sequence and none in the Failed SOP Sequence.
    """
    if response is None or not any(tag in response for tag in SUCCESS_STATUS_TAGS):
        raise StoreError("the STOW-RS response holds no store status")
    failed = response.get("FailedSOPSequence", [])
    if failed:
        reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
        raise StoreError(f"{len(failed)} instance(s) not stored (failure reasons {', '.join(reasons)})")
    stored = [str(item.ReferencedSOPInstanceUID) for item in response.get("ReferencedSOPSequence", [])]
    missing = {str(ds.SOPInstanceUID) for ds in datasets} - set(stored)
    if missing:
        raise StoreError(f"{len(missing)} instance(s) missing from the store response")
    return stored


def store_datasets(url: str | DICOMwebClient, datasets: Sequence[Dataset]) -> list[str]:
    """STOW-RS: store ``datasets`` (one study); return their SOP Instance UIDs once the response confirms."""
    if not datasets:
        return []
    studies = {str(ds.StudyInstanceUID) for ds in datasets}
    if len(studies) != 1:
        raise ValueError("store one study at a time")
    dw = url if isinstance(url, DICOMwebClient) else client(url)
    response = dw.store_instances(list(datasets), study_instance_uid=studies.pop())
    stored = check_store_response(response, datasets)
    log.info("STOW-RS stored %d instance(s)", len(stored))
    return stored


def store_files(url: str | DICOMwebClient, paths: Sequence[Path]) -> list[str]:
    """STOW-RS: store the DICOM files ``paths`` (for example the SR and SEG written by ``write_reports``)."""
    return store_datasets(url, [pydicom.dcmread(p) for p in paths])


def find_instances(
    url: str | DICOMwebClient, study_instance_uid: str, *, modality: str | None = None
) -> list[tuple[str, str]]:
    """QIDO-RS: ``(series UID, SOP instance UID)`` of the study's instances, optionally of one modality."""
    dw = url if isinstance(url, DICOMwebClient) else client(url)
    filters = {"Modality": modality} if modality else None
    found = dw.search_for_instances(study_instance_uid=_safe_uid(study_instance_uid), search_filters=filters)
    out = []
    for item in found:
        series = next(iter(_value(item, "0020000E")), "")
        sop = next(iter(_value(item, "00080018")), "")
        if UID_RE.match(str(series)) and UID_RE.match(str(sop)):
            out.append((str(series), str(sop)))
    return out


def retrieve_instance(url: str | DICOMwebClient, study: str, series: str, sop: str, path: Path) -> Path:
    """WADO-RS: write one instance to ``path``."""
    dw = url if isinstance(url, DICOMwebClient) else client(url)
    ds = dw.retrieve_instance(_safe_uid(study), _safe_uid(series), _safe_uid(sop))
    ds.save_as(path, enforce_file_format=True)
    return path
