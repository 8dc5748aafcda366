"""The plumbing the checking commands of ``training/`` share: one-line errors, the table, the JSON copy."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from inference.errors import InputError


def usage_error(message: str) -> NoReturn:
    """Exit 2 with the one line ``error: <message>`` on stderr (the project's bad-input convention)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def one_line_errors(compute: Callable[[], Any]) -> Any:
    """``compute()``, turning a refusal (:class:`InputError`) or an argparse-style ``SystemExit("error: ...")``
    into :func:`usage_error`'s one line; other exits pass through."""
    try:
        return compute()
    except InputError as exc:
        usage_error(exc.one_line())
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        usage_error(exc.code.removeprefix("error: "))


def run_check(compute: Callable[[], dict[str, Any]], show: Callable[[dict[str, Any]], None],
              out: Path | None) -> None:
    """Run a check (errors as one line), print its table with ``show`` and, with ``out``, write its result there
    as JSON."""
    result = one_line_errors(compute)
    show(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
