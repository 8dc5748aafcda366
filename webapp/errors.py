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
