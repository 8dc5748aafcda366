"""The Contrast/Bolus module of the header (DICOM PS3.3 C.7.6.4), read as written; what it means for the scan is
decided in :mod:`inference.contrast`."""

from __future__ import annotations

import math

from pydicom.dataset import Dataset

from inference.dicom.parse import _get, _item
from inference.study import ContrastTags


def _text(ds: Dataset | None, keyword: str) -> str | None:
    """The element's text, stripped; None when absent, empty or unreadable."""
    if ds is None:
        return None
    text = str(_get(ds, keyword, "") or "").strip()
    return text or None


def contrast_tags(ds: Dataset) -> ContrastTags:
    """Agent (ContrastBolusAgent, else the code meaning of ContrastBolusAgentSequence's first item), route,
    start time and volume of the series' first header; each None when absent, empty or malformed."""
    volume = None
    try:
        value = _get(ds, "ContrastBolusVolume")
        volume = float(value) if value is not None else None
    except (TypeError, ValueError):
        volume = None
    if volume is not None and not math.isfinite(volume):
        volume = None
    agent = _text(ds, "ContrastBolusAgent") or _text(_item(ds, "ContrastBolusAgentSequence"), "CodeMeaning")
    return ContrastTags(agent=agent, route=_text(ds, "ContrastBolusRoute"),
                        start_time=_text(ds, "ContrastBolusStartTime"), volume_ml=volume)
