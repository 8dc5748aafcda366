"""Memoised conversion of small raw element values: the files of a series repeat most of their header.

pydicom converts each raw element the first time it is read (about 20 microseconds: VR dispatch, decoding,
validation). A 300-file series converts the same Rows, BitsStored, RescaleSlope, TransferSyntaxUID... 300
times. :func:`cached_raw_element_value` wraps pydicom's own ``raw_element_value`` hook: the same raw bytes
with the same VR, tag, encoding and byte order give the same value, so an immutable result (numbers, strings,
UIDs) is reused. Mutable values (multi-valued elements, person names, sequences) and private tags are always
converted afresh, so no dataset can change another's value.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any

from pydicom import hooks as pydicom_hooks
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

MAX_VALUE_BYTES = 64
"""Only values this short are cached (the repeated header fields; never pixel data or long text)."""
MAX_ENTRIES = 8192
"""The cache is emptied when it reaches this size (unique values such as SOPInstanceUID pass through it)."""
_IMMUTABLE = (int, float, str, bytes)
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
"""VRs whose decoding depends on the dataset's Specific Character Set."""
_cache: dict[tuple[Any, ...], tuple[str, Any]] = {}
_values: dict[tuple[Any, ...], Any] = {}
_tags: dict[str, int | None] = {}


def cached_raw_element_value(raw: RawDataElement, data: dict[str, Any], *,
                             encoding: str | MutableSequence[str] | None = None, ds: Any = None,
                             **kwargs: Any) -> None:
    """The ``raw_element_value`` hook of pydicom, memoised for short immutable values (same signature)."""
    value = raw.value
    if not isinstance(value, bytes) or len(value) > MAX_VALUE_BYTES or raw.tag.is_private or kwargs:
        pydicom_hooks.raw_element_value(raw, data, encoding=encoding, ds=ds, **kwargs)
        return
    enc = tuple(encoding) if isinstance(encoding, MutableSequence) else encoding
    key = (raw.tag, data["VR"], value, raw.is_little_endian, raw.is_implicit_VR, enc)
    hit = _cache.get(key)
    if hit is not None:
        data["VR"], data["value"] = hit
        return
    pydicom_hooks.raw_element_value(raw, data, encoding=encoding, ds=ds)
    if isinstance(data["value"], _IMMUTABLE) or data["value"] is None:
        if len(_cache) >= MAX_ENTRIES:
            _cache.clear()
        _cache[key] = (data["VR"], data["value"])


def install() -> None:
    """Make pydicom use the memoised conversion (idempotent; transparent to every other reader)."""
    pydicom_hooks.hooks.register_callback("raw_element_value", cached_raw_element_value)


def header_value(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)`` for the per-file header fields read in bulk, about 10x cheaper.

    A raw element with a short value of a VR that does not depend on the character set is converted once per
    distinct value (by pydicom) and the dataset is left as it is; anything else goes through ``ds.get``.
    Exceptions are pydicom's own.
    """
    tag = _tags.get(keyword, -1)
    if tag == -1:
        tag = _tags.setdefault(keyword, tag_for_keyword(keyword))
    if tag is None:
        return ds.get(keyword, default)
    elem = ds.get_item(tag)
    if elem is None:
        return default
    value, vr = elem.value, elem.VR
    if not (isinstance(elem, RawDataElement) and isinstance(value, bytes) and len(value) <= MAX_VALUE_BYTES
            and vr is not None and vr not in ("UN", "SQ") and vr not in _CHARSET_VRS):
        return ds.get(keyword, default)
    key = (tag, vr, value, elem.is_little_endian)
    if key in _values:
        return _values[key]
    out = convert_raw_data_element(elem, ds=ds).value
    if isinstance(out, _IMMUTABLE) or out is None:
        if len(_values) >= MAX_ENTRIES:
            _values.clear()
        _values[key] = out
    return out
