"""Shared fixtures and helpers for the interop tests (no tests here).

Results are built by hand following the result-JSON contract of DESIGN.md, with the per-level values and
positions from the synthetic generator's truth table and a suggestion from the real suggestion engine.
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    measurement, as the engine does; names sure at 0.97 but L2's, uncertain at 0.62) and the suggestion for the
    context.md example."""
    from dataclasses import replace

    from inference.engine import transparent_measurements

    context = copy.deepcopy(CONTEXT_MD_EXAMPLE)
    vertebrae = truth_vertebrae(truth, absent)
    measured = transparent_measurements(study, list(vertebrae))
    vertebrae = tuple(replace(v, measured=measured.get(v.level), name_confidence=0.62 if v.level == "L2" else 0.97,
                              name_uncertain=v.level == "L2") if v.present else v for v in vertebrae)
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


ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_AET = "ORTHANCTEST"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancServer:
    """A private Orthanc: DICOMweb root at ``.dicomweb``, DICOM port ``.dicom_port``."""

    def __init__(self, root: Path, dicom_port: int | None = None) -> None:
        self.http_port, self.dicom_port = free_port(), dicom_port or free_port()
        config = {
            "Name": "vfrisk-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (root / "orthanc.json").write_text(json.dumps(config))
        self.log = (root / "orthanc.log").open("w")
        self.proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited at start")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start within 30 s")

    def get(self, path: str) -> bytes:
        """GET a path of Orthanc's REST API."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            data: bytes = response.read()
        return data

    def get_json(self, path: str) -> Any:
        """GET a path of Orthanc's REST API as JSON."""
        return json.loads(self.get(path))

    def study_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """The instances Orthanc holds for a study: Orthanc id, SOP class, SOP instance UID, series UID."""
        request = urllib.request.Request(f"{self.url}/tools/find", method="POST", data=json.dumps(
            {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            ids = json.loads(response.read())
        out = []
        for orthanc_id in ids:
            tags = self.get_json(f"/instances/{orthanc_id}/simplified-tags")
            out.append({"id": orthanc_id, "sop_class_uid": tags.get("SOPClassUID", ""),
                        "sop_instance_uid": tags.get("SOPInstanceUID", ""),
                        "series_uid": tags.get("SeriesInstanceUID", ""), "modality": tags.get("Modality", "")})
        return out

    def stop(self) -> None:
        self.proc.terminate()  # by PID: only the process this fixture started
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (make system-deps)")
    if not DICOMWEB_PLUGIN.exists():
        pytest.skip("the Orthanc DICOMweb plugin is not installed (make system-deps)")
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


