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
from typing import Any

import pytest
from test_clinical_examples import CONTEXT_MD_EXAMPLE

from clinical.engine import suggest
from data.synthetic.cohort import CohortOptions, write_cohort
from inference.dicom import load_study
from inference.study import Study

LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
DISCLAIMER = "Decision support for clinicians; not a diagnosis. vfrisk is research software."


@dataclass(frozen=True)
class Scored:
    """One synthetic study with a hand-made result that follows the engine's contract."""

    source: Path
    study: Study
    result: dict[str, Any]
    truth: dict[str, str]


def truth_rows(cohort: Path) -> dict[str, dict[str, str]]:
    with (cohort / "truth.csv").open() as fp:
        return {row["study"]: row for row in csv.DictReader(fp)}


def make_result(study: Study, truth: dict[str, str], *, absent: tuple[str, ...] = ()) -> dict[str, Any]:
    """A result dict exactly in the shape the engine returns."""
    context = copy.deepcopy(CONTEXT_MD_EXAMPLE)
    context["model"] = {"p_vertebral_fracture_6m": 0.137}
    suggestion = suggest(context)
    vertebrae = []
    for level in LEVELS:
        present = level not in absent
        vertebrae.append(
            {
                "level": level,
                "present": present,
                "genant_grade": int(truth[f"{level}_grade"]) if present else None,
                "height_ratio": float(truth[f"{level}_height_ratio"]) if present else None,
                "trabecular_hu": float(truth[f"{level}_hu"]) if present else None,
                "z_mm": float(truth[f"{level}_z_mm"]) if present else None,
            }
        )
    return {
        "probability": 0.137,
        "interval": [0.09, 0.19],
        "model": {"name": "vfrisk-test", "version": "0.0.1-test", "sha256": "ab" * 32},
        "study_instance_uid": study.study_instance_uid,
        "series_instance_uid": study.series_instance_uid,
        "input": {
            "slices": int(study.volume.shape[0]),
            "spacing_mm": list(study.spacing_mm),
            "orientation": study.orientation,
            "sha256": study.input_sha256(),
        },
        "labs": {"ntx_nmol_bce_per_mmol_cr": 52.0, "bmd_tscore": -2.6, "age": 74, "sex": "F"},
        "vertebrae": vertebrae,
        "warnings": list(study.warnings),
        "disclaimer": DISCLAIMER,
        "suggestion": suggestion,
        "risk_category": suggestion["risk_category"],
    }


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
