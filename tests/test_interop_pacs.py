"""PACS round trips against a real Orthanc with its DICOMweb plugin, and the C-STORE receiver.

The fixture starts Orthanc on loopback ports with a temporary storage folder and configuration, and stops it
by its PID. Tests skip when Orthanc, its DICOMweb plugin or dcmtk's storescu is not installed
(``make system-deps``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from test_interop_support import ORTHANC_AET, OrthancServer, Scored, make_result, truth_rows

from inference.dicom import load_study
from inference.errors import InputError
from interop.dicomweb import (
    StoreError,
    check_store_response,
    find_instances,
    retrieve_instance,
    retrieved_study,
    search_studies,
    store_files,
)
from interop.listen import send_files, start_receiver
from interop.reports import write_reports
from interop.sr import read_sr_measurements

pytest_plugins = ["test_interop_support"]

@pytest.fixture(scope="module")
def uploaded(orthanc: OrthancServer, scored: Scored) -> Scored:
    """The scored study's CT series stored into Orthanc by STOW-RS."""
    stored = store_files(orthanc.dicomweb, sorted(scored.source.iterdir()))
    assert len(stored) == len(list(scored.source.iterdir()))
    return scored


def test_qido_search_filters_by_date_and_modality(orthanc: OrthancServer, uploaded: Scored) -> None:
    uid = uploaded.study.study_instance_uid
    study_date = pydicom.dcmread(next(uploaded.source.iterdir()), stop_before_pixels=True).StudyDate
    day = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:]))
    found = search_studies(orthanc.dicomweb, date_from=day, date_to=day, modality="CT")
    assert uid in {s.study_instance_uid for s in found}
    ref = next(s for s in found if s.study_instance_uid == uid)
    assert "CT" in ref.modalities and ref.study_date == study_date
    assert search_studies(orthanc.dicomweb, date_from=date(1990, 1, 1), date_to=date(1990, 12, 31)) == []
    assert uid not in {s.study_instance_uid for s in search_studies(orthanc.dicomweb, modality="MR")}


def test_wado_retrieve_gives_the_same_volume(orthanc: OrthancServer, uploaded: Scored) -> None:
    uid = uploaded.study.study_instance_uid
    with retrieved_study(orthanc.dicomweb, uid) as folder:
        study = load_study(folder)
        kept = folder
    assert not kept.exists()  # the temporary folder is removed
    assert study.series_instance_uid == uploaded.study.series_instance_uid
    assert study.input_sha256() == uploaded.study.input_sha256()


def test_score_push_sr_and_seg_then_read_the_probability_back(
    orthanc: OrthancServer, uploaded: Scored, tmp_path: Path
) -> None:
    uid = uploaded.study.study_instance_uid
    with retrieved_study(orthanc.dicomweb, uid) as folder:
        study = load_study(folder)
        written = write_reports(uploaded.result, study, folder, tmp_path, formats=("sr", "seg"))
    store_files(orthanc.dicomweb, [written["sr"], written["seg"]])
    (sr_ref,) = find_instances(orthanc.dicomweb, uid, modality="SR")
    assert len(find_instances(orthanc.dicomweb, uid, modality="SEG")) == 1
    back = read_sr_measurements(retrieve_instance(orthanc.dicomweb, uid, *sr_ref, tmp_path / "back.dcm"))
    assert back["probability"] == uploaded.result.probability
    assert back["series_instance_uid"] == uploaded.result.series_instance_uid


def test_store_response_failures_are_reported() -> None:
    sent = Dataset()
    sent.SOPInstanceUID = "1.2.3.4"
    failed = Dataset()
    failed.FailedSOPSequence = [Dataset()]
    failed.FailedSOPSequence[0].FailureReason = 0xA700
    with pytest.raises(StoreError, match="not stored"):
        check_store_response(failed, [sent])
    empty = Dataset()
    empty.ReferencedSOPSequence = []
    with pytest.raises(StoreError, match="missing"):
        check_store_response(empty, [sent])
    with pytest.raises(StoreError, match="no store status"):
        check_store_response(Dataset(), [sent])


def test_storescu_to_listen_scores_and_sends_the_sr_to_orthanc(
    orthanc: OrthancServer, interop_cohort: Path, tmp_path: Path
) -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed (make system-deps)")
    source = interop_cohort / "studies" / "S00000"
    truth = truth_rows(interop_cohort)["studies/S00000"]
    done: list[str] = []
    finished = threading.Event()

    def on_study(study_uid: str, folder: Path) -> None:
        study = load_study(folder)
        written = write_reports(make_result(study, truth), study, folder, tmp_path / "out", formats=("sr",))
        send_files([written["sr"]], "127.0.0.1", orthanc.dicom_port, called_ae=ORTHANC_AET)
        done.append(study_uid)
        finished.set()

    with start_receiver(tmp_path / "in", on_study, port=0, stable_seconds=1.0) as receiver:
        files = sorted(str(p) for p in source.iterdir())
        proc = subprocess.run(
            ["storescu", "-aec", "VFRISK", "127.0.0.1", str(receiver.port), *files],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert finished.wait(60), "the study was not handed over"
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    assert done == [uid]
    assert len(list((tmp_path / "in" / uid).iterdir())) == len(files)
    (sr_ref,) = find_instances(orthanc.dicomweb, uid, modality="SR")
    back = read_sr_measurements(retrieve_instance(orthanc.dicomweb, uid, *sr_ref, tmp_path / "sr.dcm"))
    assert back["probability"] == 0.137


def test_receiver_logs_refusals_with_their_reason(
    tmp_path: Path, scored: Scored, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(study_uid: str, folder: Path) -> None:
        raise InputError("too_few_slices", "the series has 3 slices")

    with start_receiver(tmp_path, refuse, port=0, stable_seconds=0.5) as receiver:
        first = sorted(scored.source.iterdir())[:3]
        send_files(first, "127.0.0.1", receiver.port, called_ae="VFRISK")
        deadline = time.monotonic() + 10
        while "refused" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "refused: too_few_slices: the series has 3 slices" in caplog.text
    assert "SYNTH" not in caplog.text


def test_cli_score_dicomweb_scores_resumes_and_pushes(orthanc: OrthancServer, uploaded: Scored,
                                                      tmp_path: Path) -> None:
    """``vfrisk score --dicomweb URL --push`` with the bundled model: the table, then the SEG, SR, PDF and key
    image in the PACS, once; a labs row whose study the PACS does not hold is recorded once, left out of the
    table, and searched again only with ``--retry-not-found``."""
    import sys

    from inference.bundle import default_bundle

    if not (default_bundle() / "model.onnx").is_file():
        pytest.skip("no default bundle")
    uid = uploaded.study.study_instance_uid
    absent = "1.2.826.0.1.3680043.10.511.999.1"
    labs = tmp_path / "labs.csv"
    labs.write_text(f"study_instance_uid,ntx,bmd_tscore,age,sex\n{uid},58,-2.7,74,F\n{absent},40,-2.0,70,F\n")
    out = tmp_path / "results.csv"
    cmd = [sys.executable, "-m", "vfrisk.cli", "score", "--dicomweb", orthanc.dicomweb, "--labs", str(labs),
           "--out", str(out), "--workers", "1", "--push"]
    held_before = {i["sop_instance_uid"] for i in orthanc.study_instances(uid)}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads(first.stdout)
    assert summary["dicomweb"]["studies"] >= 1 and summary["dicomweb"]["pushed"] >= 1
    assert summary["dicomweb"]["not_found"] == 1
    rows = out.read_text().splitlines()
    assert any(uid in r and ",ok," in r for r in rows), rows
    assert not any(absent in r for r in rows)  # not a table row: recorded aside
    not_found = tmp_path / "results.csv.dicomweb" / "not_found.csv"
    recorded = not_found.read_text()
    assert absent in recorded
    pushed = [i for i in orthanc.study_instances(uid) if i["sop_instance_uid"] not in held_before]
    assert sorted(i["modality"] for i in pushed) == ["DOC", "OT", "SEG", "SR"], pushed
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    repeat = json.loads(again.stdout)["dicomweb"]
    assert repeat["pushed"] == 0  # pushed once only
    assert (repeat["not_found"], repeat["not_found_before"]) == (0, 1)  # not searched again
    assert not_found.read_text() == recorded
    assert len(orthanc.study_instances(uid)) == len(held_before) + 4
    retry = subprocess.run([*cmd, "--retry-not-found"], capture_output=True, text=True, timeout=600, check=False)
    assert retry.returncode == 0 and json.loads(retry.stdout)["dicomweb"]["not_found"] == 1
    assert (tmp_path / "results.csv.dicomweb" / "studies" / uid).is_dir()  # staged inside the output's folder
