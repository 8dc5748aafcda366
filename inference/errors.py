"""User-facing errors: a stable reason code and a one-line message.

Every refusal that reaches a user (CLI, batch table, web app) is a :class:`InputError`. The CLI prints
``error: <message>`` and exits 2; anything else is a bug and exits 1.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input or bad usage, with a stable machine-readable ``code`` and a one-line ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """Return ``"<code>: <message>"`` on one line, for tables and logs."""
        return f"{self.code}: {self.message}"
