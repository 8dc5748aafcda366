"""``vfrisk listen`` against real clients: dcmtk's storescu sends RLE, JPEG-LS and JPEG 2000 CT studies and an MR
image; each CT study is scored once with the bundled model, re-sending changes nothing, a study waits for its labs
until its row appears, and a send target that is down at first (a real Orthanc, started later, the listener
restarted in between) receives the SEG, SR, Encapsulated PDF and key image of every study, in that study, once.

Also: what the SCP accepts at association, the records (SQLite) and the labs watcher on their own."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage, MRImageStorage  # type: ignore[attr-defined]
from test_interop_support import ORTHANC, ORTHANC_AET, OrthancServer, free_port

from interop.intake import LabsWatch, labs_hash
from interop.listen import OTHER, ct_transfer_syntaxes, start_receiver
from interop.pacs_cli import Listener, listen_status, start_listener
from interop.state import ScoringKey, StateStore

pytest_plugins = ["test_interop_support"]

KINDS = {"rle": ("dcmcrle", "-xr"), "jpegls": ("dcmcjpls", "-xt"), "j2k": (None, "-xv")}
"""Each compressed copy: the dcmtk tool that compresses it (None: pydicom with pylibjpeg-openjpeg) and the storescu
option that proposes its transfer syntax."""
RESULT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.104.1": "PDF",
    "1.2.840.10008.5.1.4.1.1.7": "key image",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make system-deps)")
    return path


def _copy(source: Path, dest: Path, kind: str) -> str:
    """A copy of the study with new UIDs, compressed as ``kind``; returns its Study Instance UID."""
    tool = KINDS[kind][0]
    dest.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for f in sorted(source.iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if tool is None:
            ds.compress(JPEG2000Lossless)
            ds.save_as(dest / f.name)
            continue
        plain = dest / f"{f.name}.plain"
        ds.save_as(plain)
        subprocess.run([_tool(tool), str(plain), str(dest / f.name)], check=True, capture_output=True)
        plain.unlink()
    return study


@pytest.fixture(scope="module")
def compressed(interop_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Three copies of one synthetic CT study (new UIDs): RLE, JPEG-LS and JPEG 2000 lossless; kind -> (UID, folder)."""
    root = tmp_path_factory.mktemp("compressed")
    out = {kind: (_copy(interop_cohort / "studies" / "S00000", root / kind, kind), root / kind) for kind in KINDS}
    for kind, (_, folder) in out.items():
        syntax = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert syntax == {"rle": RLELossless, "jpegls": pydicom.uid.JPEGLSLossless, "j2k": JPEG2000Lossless}[kind]
    return out


def _mr_image(ct_folder: Path, study_uid: str, dest: Path) -> Path:
    """A non-CT object of the study: one slice re-labelled as an MR image."""
    ds = pydicom.dcmread(next(ct_folder.iterdir()))
    ds.decompress()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), study_uid, "MR"
    path = dest / "mr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _storescu(port: int, files: list[Path], *options: str) -> None:
    proc = subprocess.run([_tool("storescu"), *options, "-aec", "VFRISK", "127.0.0.1", str(port),
                           *(str(f) for f in files)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _status(out: Path) -> dict[str, dict]:
    return {s["study_instance_uid"]: s for s in listen_status(out)["studies"]}


def test_listener_end_to_end(compressed: dict[str, tuple[str, Path]], scoring_bundle: Path, tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed (make system-deps)")
    caplog.set_level(logging.INFO, logger="vfrisk.listen")
    uids = {kind: uid for kind, (uid, _) in compressed.items()}
    target_port = free_port()  # nothing listens there yet: the send target is down
    labs = tmp_path / "labs.csv"
    labs.write_text("study_instance_uid,ntx,bmd_tscore,age,sex\n"
                    f"{uids['rle']},55,-2.8,70,F\n{uids['jpegls']},38,-1.9,66,M\n")
    listener = Listener(port=0, stable_seconds=1.0, send_to=(f"127.0.0.1:{target_port}:{ORTHANC_AET}",),
                        retry_seconds=0.5)
    storage, out = tmp_path / "in", tmp_path / "out"
    mr = _mr_image(compressed["rle"][1], uids["rle"], tmp_path)

    service = start_listener(storage, out, listener, scoring_bundle, labs)
    try:
        for kind, (_, folder) in compressed.items():
            _storescu(service.port, sorted(folder.iterdir()), "-R", KINDS[kind][1])
        _storescu(service.port, [mr], "-R")
        _wait(lambda: {k: _status(out).get(u, {}).get("status") for k, u in uids.items()} ==
              {"rle": "scored", "jpegls": "scored", "j2k": "waiting_for_labs"}, 240, "two studies scored")
        assert "no row for this study in the labs file labs.csv" in _status(out)[uids["j2k"]]["reason"]

        # the MR image is stored aside and recorded, never scored
        assert (storage / OTHER / uids["rle"]).is_dir() and _status(out)[uids["rle"]]["set_aside"] == 1
        assert len(list((storage / uids["rle"]).iterdir())) == len(list(compressed["rle"][1].iterdir()))

        # the labs row of the third study arrives: it is scored
        with labs.open("a") as fp:
            fp.write(f"{uids['j2k']},61,-3.2,78,F\n")
        _wait(lambda: _status(out)[uids["j2k"]]["status"] == "scored", 120, "the third study scored")

        # sending a study again changes nothing
        before = listen_status(out)
        _storescu(service.port, sorted(compressed["rle"][1].iterdir()), "-R", "-xr")
        _wait(lambda: "unchanged" in caplog.text, 60, "the re-sent study handled")
        assert listen_status(out)["outbox"] and len(listen_status(out)["outbox"]) == len(before["outbox"])

        # the target is still down: everything is queued, tried, not sent
        _wait(lambda: all(o["attempts"] >= 1 for o in listen_status(out)["outbox"]), 60, "failed attempts")
        assert {o["state"] for o in listen_status(out)["outbox"]} == {"pending"}
    finally:
        service.stop()

    # the listener restarts, the target comes up: the queue survives and is delivered, once
    (tmp_path / "orthanc").mkdir()
    orthanc = OrthancServer(tmp_path / "orthanc", dicom_port=target_port)
    try:
        service = start_listener(storage, out, listener, scoring_bundle, labs)
        try:
            _wait(lambda: {o["state"] for o in listen_status(out)["outbox"]} == {"sent"}, 120, "the outbox sent")
        finally:
            service.stop()
        for kind, uid in uids.items():
            held = orthanc.study_instances(uid)
            kinds = sorted(RESULT_CLASSES[i["sop_class_uid"]] for i in held)
            assert kinds == sorted(RESULT_CLASSES.values()), (kind, kinds)  # each result once, in the study
    finally:
        orthanc.stop()

    records = _status(out)
    assert {u: records[u]["times_scored"] for u in uids.values()} == dict.fromkeys(uids.values(), 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "vfrisk.listen"]
    for uid in uids.values():
        assert sum(line.startswith(f"study {uid} scored:") for line in lines) == 1
    assert "Traceback" not in caplog.text
    assert not any(r.exc_info for r in caplog.records)
    assert any("not sent to" in line and "retry in" in line for line in lines)


def test_scp_accepts_decodable_ct_syntaxes_and_any_storage_class(tmp_path: Path) -> None:
    """At association: CT in RLE, JPEG lossless, JPEG-LS and JPEG 2000 accepted, an MR image accepted (set aside),
    CT in a syntax nothing here decodes (MPEG-2) rejected."""
    syntaxes = set(ct_transfer_syntaxes())
    for uid in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
        assert uid in syntaxes
    with start_receiver(tmp_path, lambda *_: None, port=0, stable_seconds=60) as receiver:
        ae = AE(ae_title="TEST")
        contexts = [build_context(CTImageStorage, "1.2.840.10008.1.2.5"),
                    build_context(CTImageStorage, "1.2.840.10008.1.2.4.100"),
                    build_context(MRImageStorage, "1.2.840.10008.1.2.4.50")]
        ae.requested_contexts = contexts
        assoc = ae.associate("127.0.0.1", receiver.port, ae_title="VFRISK")
        assert assoc.is_established
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        assoc.release()
    assert (CTImageStorage, "1.2.840.10008.1.2.5") in accepted
    assert (MRImageStorage, "1.2.840.10008.1.2.4.50") in accepted
    assert (CTImageStorage, "1.2.840.10008.1.2.4.100") not in accepted


def test_records_survive_reopening_and_a_new_scoring_supersedes_what_was_not_sent(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    key = ScoringKey("1.2.3.4", "1", "ab", "cd", "ef")
    store.scored("1.2.3", key, 0.1, "high", tmp_path)
    store.enqueue("1.2.3", [(tmp_path / "sr.dcm", "1.2.3.9")], ["h:1:A", "h:2:B"])
    store.failed([o.id for o in store.due()], "down", retry_after=3600)
    assert store.due() == []  # not due before its retry time
    store.close()
    again = StateStore(tmp_path / "s.sqlite")
    record = again.study("1.2.3")
    assert record is not None and record.key == key and record.times_scored == 1
    assert [(o["state"], o["attempts"]) for o in again.outbox()] == [("pending", 1), ("pending", 1)]
    again.scored("1.2.3", ScoringKey("1.2.3.4", "1", "ab", "cd", "new labs"), 0.2, "high", tmp_path)
    assert {o["state"] for o in again.outbox()} == {"superseded"}
    assert again.study("1.2.3").times_scored == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        again.set_status("1.2.3", "scored")
    again.close()


def test_labs_watch_sees_rows_change_and_keeps_rows_when_the_file_breaks(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    labs = tmp_path / "labs.csv"
    labs.write_text("study_instance_uid,ntx,bmd_tscore,age,sex\n1.2.3,50,-2.5,70,F\n")
    watch = LabsWatch(labs)
    assert watch.poll() == {"1.2.3"} and watch.poll() == set()
    row = watch.row("1.2.3")
    assert row is not None and labs_hash(row) == labs_hash({**row, "extra": "ignored"})
    labs.write_text("study_instance_uid,ntx,bmd_tscore,age,sex\n1.2.3,51,-2.5,70,F\n1.2.4,40,-1.0,60,M\n")
    assert watch.poll() == {"1.2.3", "1.2.4"}
    labs.write_text("study_instance_uid,ntx\n1.2.3,1\n1.2.3,2\n")  # a repeated UID: refused by the reader
    with caplog.at_level(logging.WARNING, logger="vfrisk.listen"):
        assert watch.poll() == set()
    assert watch.row("1.2.4") is not None and "keeping the 2 rows" in caplog.text
    assert LabsWatch(None).missing_reason() == "no labs source is configured for the listener"
