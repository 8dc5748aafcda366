"""Under CI=true an environment skip (missing ../shared, Debian tool or bundled file) fails; other skips stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = '''
import pytest

def test_tool_missing():
    pytest.skip("dciodvfy is not installed (make system-deps)")

def test_corpus_missing():
    pytest.skip("../shared/dicom-corpus is not present")

def test_other_reason():
    pytest.skip("only on Tuesdays")
'''


def run_probe(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "conftest.py").write_text("from ci_skips import pytest_runtest_makereport  # noqa: F401\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(HERE)}
    if ci is not None:
        env["CI"] = ci
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    return res.stdout.strip().splitlines()[-1]


def test_environment_skips_fail_under_ci(tmp_path: Path) -> None:
    assert run_probe(tmp_path, "true").startswith("2 failed, 1 skipped")


def test_environment_skips_skip_elsewhere(tmp_path: Path) -> None:
    assert run_probe(tmp_path, None).startswith("3 skipped")
