"""What a user may see of an error: a reason code and a sanitized one-line message.

Never a traceback, a file path, a file name or a header value: ingestion messages that can quote file names,
zip member names or header text are redacted here; anything that is not an :class:`InputError` becomes an
internal error with an incident reference (the details stay in the server log, without patient data).
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

from inference.errors import InputError

log = logging.getLogger("vfrisk.webapp")

FIXED = {
    "not_ct": "the series chosen is not CT",
    "no_image_series": "no DICOM image series that can be scored was found",
    "not_found": "the uploaded files could not be found (upload again)",
}
"""Codes whose messages may quote header text or paths: shown with a fixed message instead."""
_PATTERNS = (
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<name>"),
    (re.compile(r"\S*[/\\]\S*"), "<path>"),
    (re.compile(r"\b[\w.+-]+\.(?:dcm|dicom|ima|img|zip|json|bin|raw|dat|tar|gz)\b", re.IGNORECASE), "<file>"),
    (re.compile(r"covers the [\w ]+?, not the spine"), "covers another body part, not the spine"),
)


LEADS = {
    "no_upload": "No study loaded: upload the CT first (DICOM files, a zip, a folder, or one NIfTI file)",
    "not_dicom": "No DICOM image and no NIfTI volume was found in the upload",
    "unreadable": "The upload could not be read",
    "decode_failed": "The images could not be decoded",
    "truncated": "The upload is incomplete",
    "unsafe_archive": "The zip file was refused",
    "too_large": "The study is too large to read here",
    "upload_too_large": "The upload is too large",
    "too_many_files": "The upload holds too many files",
    "no_image_series": "No CT image series that can be scored was found",
    "localizer_only": "Only scout (localizer) images were found, no CT series",
    "not_ct": "The series is not CT",
    "not_a_volume": "The NIfTI file is not a 3-D CT volume",
    "missing_geometry": "The images lack the position information needed to rebuild the volume",
    "mixed_orientation": "The series mixes slice orientations",
    "mixed_geometry": "The series mixes image sizes or pixel spacings",
    "uneven_spacing": "The slices are unevenly spaced",
    "missing_slices": "Slices are missing from the series",
    "duplicate_positions": "Several slices share one position",
    "gantry_tilt": "The gantry tilt cannot be corrected",
    "missing_rescale": "The images carry no Hounsfield scaling",
    "too_few_slices": "The scan has too few slices",
    "insufficient_coverage": "The scan does not cover enough of the spine",
    "spine_not_covered": "Too little of the thoracolumbar spine was found to score the scan",
    "missing_lab": "A required value is missing",
    "bad_lab": "A value is not a number",
    "lab_out_of_range": "A value is outside its valid range",
    "invalid_context": "Clinical context",
    "invalid_json": "Clinical context",
    "bad_usage": "The upload cannot be used as it is",
    "not_found": "The upload is no longer available",
    "internal_error": "Something went wrong",
}
"""The first words of each refusal, as a radiologist would say them; the details follow in the same line."""
LEAD_ONLY = frozenset({"no_upload", "not_found"})
"""Refusals whose details add nothing to the lead."""


class PublicError(Exception):
    """An error fit to show to the user: ``code: message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def redact(message: str, names: list[str] | None = None) -> str:
    """Remove quoted strings, paths, file names and the given names from a message."""
    for name in sorted(names or [], key=len, reverse=True):
        if len(name) >= 3:
            message = message.replace(name, "<file>")
    for pattern, repl in _PATTERNS:
        message = pattern.sub(repl, message)
    return " ".join(message.split())


def public(exc: BaseException, uploads: list[Path] | None = None) -> PublicError:
    """The user-facing form of any exception raised while handling a request."""
    if isinstance(exc, PublicError):
        return exc
    if isinstance(exc, InputError):
        names = [p.name for p in uploads or []] + [str(p) for p in uploads or []]
        return PublicError(exc.code, FIXED.get(exc.code) or redact(exc.message, names))
    ref = secrets.token_hex(4)
    log.error("internal error %s: %s", ref, type(exc).__name__)
    return PublicError("internal_error", f"the study could not be processed (incident {ref}); "
                       "the administrator can find it in the server log")


def say(err: PublicError) -> str:
    """One line for the page: the radiologist's words for the refusal, then its details (no command-line flags,
    no dangling punctuation), then the reason code for the administrator."""
    detail = " ".join(err.message.split()).strip(" :;,")
    detail = re.sub(r"(?<![\w-])--?[a-z][\w-]*", "", detail).strip(" :;,")
    lead = LEADS.get(err.code, "")
    if err.code in LEAD_ONLY:
        detail = ""
    if detail and lead and detail.lower().rstrip(".") not in lead.lower():
        text = f"{lead}: {detail}"
    else:
        text = lead or detail or "The request could not be completed"
    text = text[0].upper() + text[1:]
    return f"{text.rstrip('.')}. (reason: {err.code})"
