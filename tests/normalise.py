"""Report files reduced to what must not change between two equivalent runs: generated UIDs and UUIDs become
placeholders numbered in order of first appearance, dates and times a fixed token (no tests here).

Two report folders written from the same result must normalise to the same values, whatever path wrote them.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?$")
_PDF_VOLATILE = re.compile(rb"/(CreationDate|ModDate) \(D:[^)]*\)|/ID\s*\n?\[<[0-9a-f]+><[0-9a-f]+>\]")
_OID = re.compile(r"^urn:oid:([0-2](\.\d+)+)$")
_BARE_UID = re.compile(r"^[0-2](\.\d+){4,}$")
ENCAPSULATED_DOCUMENT = 0x00420011


class Placeholders:
    """Generated identifiers -> ``<kind n>``, numbered in order of first appearance (shared by one folder)."""

    def __init__(self, keep: set[str]) -> None:
        self.keep = keep
        self.seen: dict[str, str] = {}

    def __call__(self, value: str, kind: str) -> str:
        """``value`` itself when it is kept (a source UID, a registered UID), else its placeholder."""
        if value in self.keep or value in UID_dictionary:
            return value
        return self.seen.setdefault(value, f"<{kind} {len(self.seen)}>")


def source_uids(folder: Path) -> set[str]:
    """Every UID value in the DICOM files under ``folder`` (the references a report must keep as they are)."""
    out: set[str] = set()
    for path in folder.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            out |= {str(v) for e in ds.iterall() if e.VR == "UI" for v in _values(e.value)}
    return out


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]


def dicom(path: Path, names: Placeholders) -> list[Any]:
    """Every element of a DICOM file, recursively, with generated UIDs and dates/times replaced."""
    ds = pydicom.dcmread(path)
    return [_meta(ds.file_meta, names), _walk(ds, names)]


def _meta(meta: Dataset, names: Placeholders) -> list[Any]:
    """The file meta group without its length (generated UIDs differ in length)."""
    return [(int(e.tag), names(str(e.value), "uid") if e.VR == "UI" else repr(e.value)) for e in meta
            if e.tag != 0x00020000]


def _walk(ds: Dataset, names: Placeholders) -> list[Any]:
    out: list[Any] = []
    for elem in ds:
        if elem.VR == "SQ":
            out.append((int(elem.tag), [_walk(item, names) for item in elem.value]))
        elif elem.VR in ("DA", "DT", "TM"):
            out.append((int(elem.tag), "<date/time>"))
        elif elem.VR == "UI":
            out.append((int(elem.tag), [names(str(v), "uid") for v in _values(elem.value)]))
        elif int(elem.tag) == ENCAPSULATED_DOCUMENT:  # the PDF report inside an Encapsulated PDF
            out.append((int(elem.tag), elem.VR, pdf_bytes(bytes(elem.value))))
        else:
            out.append((int(elem.tag), elem.VR, repr(elem.value)))
    return out


def json_file(path: Path, names: Placeholders) -> Any:
    """A JSON report with UUIDs and ISO dates/times replaced."""
    return _json(json.loads(path.read_text()), names)


def _json(value: Any, names: Placeholders) -> Any:
    if isinstance(value, dict):
        if value.get("contentType") == "application/pdf" and isinstance(value.get("data"), str):
            pdf_data = pdf_bytes(base64.b64decode(value["data"]))  # a PDF in a FHIR attachment: its dates,
            value = {**value, "data": pdf_data.decode("latin-1"), "hash": "<hash>", "size": "<size>"}  # hash, size
        return {k: _json(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v, names) for v in value]
    if isinstance(value, str):
        if _ISO_TIME.match(value):
            return "<date/time>"
        oid = _OID.match(value)
        if oid:
            return f"urn:oid:{names(oid.group(1), 'uid')}"
        if _BARE_UID.match(value):  # a DICOM UID written as a FHIR id (ImagingStudy series and instances)
            return names(value, "uid")
        return _UUID.sub(lambda m: names(m.group(0), "uuid"), value)
    return value


def pdf(path: Path) -> bytes:
    """A reportlab PDF without its creation/modification dates and its document ID (a hash of them)."""
    return pdf_bytes(path.read_bytes())


def pdf_bytes(data: bytes) -> bytes:
    """:func:`pdf` of the bytes themselves (a PDF embedded in a DICOM or FHIR report)."""
    return _PDF_VOLATILE.sub(b"<volatile>", data)


def report_folder(folder: Path, source: Path) -> dict[str, Any]:
    """Every report file of ``folder`` normalised, by file name (``source``: the study's DICOM folder)."""
    names = Placeholders(source_uids(source))
    out: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".dcm":
            out[path.name] = dicom(path, names)
        elif path.suffix == ".json":
            out[path.name] = json_file(path, names)
        elif path.suffix == ".pdf":
            out[path.name] = pdf(path)
        else:
            out[path.name] = path.read_bytes()
    return out
