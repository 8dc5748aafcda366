"""Shared fixtures and helpers for the interop tests (no tests here).

Results are built by hand following the result-JSON contract of DESIGN.md, with the per-level values and
positions from the synthetic generator's truth table and a suggestion from the real suggestion engine.
"""

from __future__ import annotations

import base64
import copy
import csv
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from factories import make_prediction, truth_vertebrae
from factories import make_result as make_result_of
from test_clinical_examples import CONTEXT_MD_EXAMPLE

from data.synthetic.cohort import CohortOptions, write_cohort
from inference.dicom import load_study
from inference.study import Study
from vfrisk.result import Result

LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")


@dataclass(frozen=True)
class Scored:
    """One synthetic study with a hand-made result that follows the engine's contract."""

    source: Path
    study: Study
    result: Result
    truth: dict[str, str]


def truth_rows(cohort: Path) -> dict[str, dict[str, str]]:
    with (cohort / "truth.csv").open() as fp:
        return {row["study"]: row for row in csv.DictReader(fp)}


def make_result(study: Study, truth: dict[str, str], *, absent: tuple[str, ...] = ()) -> Result:
    """The result of ``study`` with the truth as findings (each level measured by the real transparent
    measurement, as the engine does) and the suggestion for the context.md example."""
    from dataclasses import replace

    from inference.engine import transparent_measurements

    context = copy.deepcopy(CONTEXT_MD_EXAMPLE)
    vertebrae = truth_vertebrae(truth, absent)
    measured = transparent_measurements(study, list(vertebrae))
    vertebrae = tuple(replace(v, measured=measured.get(v.level)) for v in vertebrae)
    prediction = make_prediction(study, vertebrae=vertebrae)
    return make_result_of(prediction, context)


@pytest.fixture(scope="session")
def interop_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two axial studies at a 96 matrix, no extra series."""
    out = tmp_path_factory.mktemp("interop") / "c"
    write_cohort(out, CohortOptions(n=2, seed=3, matrix=96, workers=1, extras=False))
    return out


@pytest.fixture(scope="session")
def scored(interop_cohort: Path) -> Scored:
    """The first study with L4 reported absent (so one level has no finding)."""
    source = interop_cohort / "studies" / "S00001"
    study = load_study(source)
    truth = truth_rows(interop_cohort)["studies/S00001"]
    return Scored(source, study, make_result(study, truth, absent=("L4",)), truth)


@pytest.fixture(scope="session")
def reports(scored: Scored, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every report of ``scored``, written once."""
    from interop.reports import write_reports

    return write_reports(scored.result, scored.study, scored.source, tmp_path_factory.mktemp("out"))


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a system tool, skipping the test when it is not installed (``make system-deps``)."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed (make system-deps)")
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dicom3tools' dciodvfy reports for ``path`` (warnings are left out)."""
    proc = run_tool("dciodvfy", str(path))
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def pdf_text(path: Path) -> str:
    """The text drawn by a reportlab PDF (its content streams are ASCII85 + Flate encoded)."""
    data = path.read_bytes()
    chunks: list[bytes] = []
    for match in re.finditer(rb"<<(.*?)>>\s*stream\r?\n(.*?)endstream", data, re.S):
        head, body = match.group(1), match.group(2)
        if b"/Subtype /Image" in head:
            continue
        if b"ASCII85Decode" in head:
            body = base64.a85decode(body.strip(), adobe=True)
        if b"FlateDecode" in head:
            body = zlib.decompress(body)
        chunks += re.findall(rb"\((.*?)\) Tj", body)
    return " ".join(c.decode("latin-1").replace("\\(", "(").replace("\\)", ")") for c in chunks)
