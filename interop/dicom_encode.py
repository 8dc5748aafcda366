"""Encode the sequences of the DICOM objects we build (SEG, SR, key image, Encapsulated PDF) faster than pydicom's
generic writer, to the same bytes.

pydicom writes each element through a chain of generic steps (a fresh buffer per element, the character set
converted per element, the VR's writer looked up, a length patched in per item), which costs about 0.1 s for
each of the SEG (176 frames of per-frame functional groups) and the SR of a 512 x 512 x 300 study: a tenth of the
whole report writing. :func:`encode_sequences` encodes the value of every top-level sequence of a dataset built in
memory in one pass (Explicit VR Little Endian, pydicom's choices: items of defined length unless marked undefined,
sequences of defined length unless marked undefined, text padded with a space and UIDs with a NUL, retired group
lengths left out), and hands pydicom each sequence as one raw element to copy. Whatever this encoder does not
handle itself (a person name, a date given as an object, text outside ASCII, an attribute tag, an element read
from a file) is written by pydicom's own ``write_data_element``, element by element, so the bytes are pydicom's
in every case; ``tests/test_interop_encode.py`` compares them with pydicom's on every report object.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

_LONG = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))
"""VRs with a reserved field and a 4-byte length in Explicit VR."""
_ASCII = frozenset(("AE", "AS", "CS", "UR"))
_TEXT = frozenset(("LO", "LT", "SH", "ST", "UC", "UT"))
"""Text in the dataset's character set: encoded here only when it is ASCII (the same bytes in every set)."""
_NUMBER_STRING = frozenset(("DS", "IS"))
_DATES = frozenset(("DA", "DT", "TM"))
_BINARY = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_BYTES = frozenset(("OB", "OD", "OF", "OL", "OV", "OW"))
_LUT_DESCRIPTORS = frozenset((0x00281101, 0x00281102, 0x00281103, 0x00283002))
"""US or SS descriptors whose first value pydicom always writes unsigned: left to pydicom."""
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
"""An item's tag; its 4-byte length follows."""
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_UNDEFINED = 0xFFFFFFFF


def _header(tag: int, vr: str, length: int) -> bytes:
    """Tag, VR and length of one Explicit VR Little Endian element."""
    if vr in _LONG:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _pydicom(elem: DataElement | RawDataElement, encodings: Any) -> bytes:
    """One element as pydicom writes it."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


def _strings(value: Any) -> list[Any] | None:
    """The values of a single- or multi-valued element, or None when it holds something else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return None


def _text_value(elem: DataElement) -> bytes | None:
    """The bytes pydicom writes for a string-valued element, or None to leave it to pydicom."""
    vr, value = elem.VR, elem.value
    if vr in _NUMBER_STRING:
        values = _strings(value)
        if values is None:
            values = [value]
        text = "\\".join(getattr(v, "original_string", None) or str(v) for v in values)
    else:
        values = _strings(value)
        if values is None or not all(isinstance(v, str) for v in values):
            return None
        text = "\\".join(values)
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def _binary_value(elem: DataElement) -> bytes | None:
    """The packed numbers of a binary-valued element (None for the descriptors pydicom treats specially)."""
    if int(elem.tag) in _LUT_DESCRIPTORS:
        return None
    value, fmt = elem.value, _BINARY[elem.VR]
    try:
        if isinstance(value, MultiValue | list | tuple):
            return struct.pack(f"<{len(value)}{fmt}", *value)
        return struct.pack(f"<{fmt}", value)
    except struct.error:  # out of range or not a number: pydicom says what is wrong
        return None


def _value(elem: DataElement, encodings: Any) -> bytes | None:
    """The encoded value of ``elem``, or None when pydicom must write the element."""
    vr = elem.VR
    if vr == "SQ":
        return _sequence(elem, encodings)
    if elem.is_empty:
        return b""
    if vr in _DATES and not isinstance(elem.value, str):
        return None
    if vr == "UI" or vr in _ASCII or vr in _TEXT or vr in _NUMBER_STRING or vr in _DATES:
        return _text_value(elem)
    if vr in _BINARY:
        return _binary_value(elem)
    if vr in _BYTES and isinstance(elem.value, bytes):
        raw = elem.value
        return raw + b"\0" if len(raw) % 2 else raw
    return None


def _sequence(elem: DataElement, encodings: Any) -> bytes:
    """The items of a sequence element, each with its item tag and length (and delimiter when undefined)."""
    parts = []
    for item in elem.value:
        body = encode_dataset(item, encodings)
        if getattr(item, "is_undefined_length_sequence_item", False):
            parts += [_ITEM, struct.pack("<L", _UNDEFINED), body, _ITEM_END]
        else:
            parts += [_ITEM, struct.pack("<L", len(body)), body]
    return b"".join(parts)


def _element(elem: DataElement | RawDataElement, encodings: Any) -> bytes:
    """One whole element (header and value) as pydicom would write it."""
    if isinstance(elem, RawDataElement) or elem.is_buffered or not elem.VR or len(elem.VR) != 2:
        return _pydicom(elem, encodings)
    value = _value(elem, encodings)
    if value is None:
        return _pydicom(elem, encodings)
    vr = elem.VR
    if vr not in _LONG and len(value) > 0xFFFF:  # pydicom turns it into UN, with a warning
        return _pydicom(elem, encodings)
    if vr == "SQ" and elem.is_undefined_length:
        return _header(int(elem.tag), vr, _UNDEFINED) + value + _SEQUENCE_END
    if elem.is_undefined_length:  # encapsulated pixel data and the like
        return _pydicom(elem, encodings)
    return _header(int(elem.tag), vr, len(value)) + value


def encode_dataset(ds: Dataset, parent_encodings: Any = None) -> bytes:
    """The elements of ``ds`` in tag order, Explicit VR Little Endian, as pydicom's ``write_dataset`` writes them
    (retired group lengths left out; the dataset's own character set, else its parent's, for its text)."""
    encodings = ds.get("SpecificCharacterSet", parent_encodings)
    parts = []
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue
        parts.append(_element(ds.get_item(tag), encodings))
    return b"".join(parts)


@contextmanager
def sequences_encoded(ds: Dataset) -> Iterator[None]:
    """While inside, each top-level sequence of ``ds`` (Explicit VR Little Endian) stands as one raw element of
    the bytes pydicom would write for its value, so that pydicom copies them; the elements are put back after.
    Resolve the ambiguous VRs first and mark the dataset with its encoding, as
    :func:`interop.reports.save_dicom` does (pydicom would otherwise parse the raw sequences again to do it)."""
    encodings = ds.get("SpecificCharacterSet")
    saved: dict[BaseTag, DataElement] = {}
    try:
        for tag in list(ds.keys()):
            elem = ds.get_item(tag)
            if isinstance(elem, DataElement) and elem.VR == "SQ" and not elem.is_undefined_length:
                value = _sequence(elem, encodings)
                saved[tag] = elem
                ds._dict[tag] = RawDataElement(tag, "SQ", len(value), value, 0, False, True)
        yield
    finally:
        for tag, elem in saved.items():
            ds._dict[tag] = elem
