"""A pytest hook, imported by ``conftest.py``: under CI (``CI=true``) a test that skips because this machine lacks
``../shared``, a Debian tool or a bundled file fails instead, so a green CI proves the real-data and real-client
tests ran. On a newcomer's machine the same tests skip cleanly."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

ENVIRONMENT_SKIPS = re.compile(
    r"make system-deps|is not installed|not present|no corpus|dicom-corpus|\.\./shared|real-spine|no default "
    r"bundle|no postgres user|without runuser|test files are not installed|could not import", re.IGNORECASE)
"""Skip reasons that mean "this machine lacks ../shared, a Debian tool or a bundled file": fine on a newcomer's
machine, a failure in CI, which installs all of them (``make system-deps``) and has ../shared."""


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where no test may skip for a missing tool or data folder."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, turn a skip for a missing ../shared folder, Debian tool or bundled file into a failure."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if ENVIRONMENT_SKIPS.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every tool and data folder must be present: {reason}"
