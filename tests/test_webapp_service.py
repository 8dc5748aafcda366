"""webapp.service with a stand-in engine: upload handling, deletion after scoring, audit lines, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from factories import make_prediction, vertebra

from inference.labs import Labs
from inference.result import ModelIdentity, Prediction
from inference.study import Study
from webapp.audit import AuditLog
from webapp.context_form import ContextForm
from webapp.errors import PublicError
from webapp.service import LabInput, Service, as_paths
from webapp.uploads import UploadLimits

LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
RANGES = {"ntx_nmol_bce_per_mmol_cr": [2.0, 400.0], "bmd_tscore": [-6.0, 4.0], "age": [18.0, 110.0]}


class FakeEngine:
    """Scores every study 0.2 with seven levels spread over the middle of the volume (a real Prediction from the
    test factory)."""

    bundle = SimpleNamespace(identity={"name": "fake", "version": "0.0-test", "sha256": "0"}, card={})
    lab_ranges = RANGES

    def crop(self, study: Study) -> Any:
        z, y, x = study.volume.shape
        return SimpleNamespace(start_index=(z // 4, y // 4, x // 4), image=np.zeros((z // 2, y // 2, x // 2)))

    def predict(self, study: Study, labs: Labs) -> Prediction:
        n = study.volume.shape[0]
        verts = []
        for i, level in enumerate(LEVELS):
            k = n * (0.8 - 0.1 * i)
            z = float((study.affine @ np.array([k, 0.0, 0.0, 1.0]))[2])
            verts.append(vertebra(level, grade=1 if level == "L1" else 0, ratio=0.78 if level == "L1" else 1.0,
                                  hu=95.0, z_mm=z))
        return make_prediction(study, probability=0.2, interval=(0.1, 0.3), vertebrae=verts, labs=labs,
                               model=ModelIdentity(**self.bundle.identity))


@pytest.fixture
def temp(tmp_path: Path) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    return root


@pytest.fixture
def service(temp: Path, tmp_path: Path) -> Service:
    return Service(FakeEngine(), AuditLog(tmp_path / "audit.log"), temp, UploadLimits(max_files=500))


def upload(study_dir: Path, temp: Path) -> list[Path]:
    """Copy a study into the temp folder the way Gradio does (one sub-folder per file)."""
    out = []
    for i, f in enumerate(sorted(study_dir.rglob("*.dcm"))):
        dest = temp / f"u{i:04d}" / f.name
        dest.parent.mkdir()
        shutil.copy(f, dest)
        out.append(dest)
    return out


@pytest.fixture
def study_dir(tiny_cohort: Path) -> Path:
    return tiny_cohort / "studies" / "S00000"


def test_load_score_deletes_uploads_and_audits(service: Service, study_dir: Path, temp: Path) -> None:
    files = upload(study_dir, temp)
    loaded = service.load([str(f) for f in files], "alice")
    assert all(f.exists() for f in files)
    assert loaded.study.volume.ndim == 3
    result = service.score(loaded, LabInput(50.0, -2.7), ContextForm(falls_12m=2), "alice")
    assert result.probability == 0.2
    assert not any(temp.iterdir())
    assert loaded.uploads == [] and [m.level for m in loaded.marks] == list(LEVELS)
    lines = service.audit.lines()
    assert [(x["event"], x["outcome"], x["user"]) for x in lines] == [("upload", "ok", "alice"),
                                                                      ("score", "ok", "alice")]
    assert lines[0]["study"] == lines[1]["study"] and lines[1]["model_version"] == "0.0-test"
    again = service.score(loaded, LabInput(60.0, -2.0, 70, "F"), None, "alice")
    assert again.labs.sex == "F"


def test_refused_upload_is_deleted_with_its_reason(service: Service, temp: Path) -> None:
    junk = temp / "x1" / "notes.txt"
    junk.parent.mkdir()
    junk.write_text("hello")
    with pytest.raises(PublicError) as err:
        service.load([junk], "bob")
    assert err.value.code == "not_dicom"
    assert not junk.exists()
    assert service.audit.lines()[-1]["outcome"] == "not_dicom"


def test_too_many_files_refused(service: Service, study_dir: Path, temp: Path) -> None:
    files = upload(study_dir, temp)
    service.limits = UploadLimits(max_files=3)
    with pytest.raises(PublicError) as err:
        service.load(files, "bob")
    assert err.value.code == "too_many_files"
    assert not any(temp.iterdir())


def test_refused_scoring_keeps_the_study_for_a_retry(service: Service, study_dir: Path, temp: Path) -> None:
    loaded = service.load(upload(study_dir, temp), None)
    with pytest.raises(PublicError) as err:
        service.score(loaded, LabInput(1000.0, -2.0), None, None)
    assert err.value.code == "lab_out_of_range" and "2 to 400" in err.value.message
    with pytest.raises(PublicError) as err:
        service.score(loaded, LabInput(50.0, -2.0), ContextForm(last_mi_date="yesterday"), None)
    assert err.value.code == "invalid_context"
    assert any(temp.iterdir())
    service.score(loaded, LabInput(50.0, -2.0), None, None)
    assert not any(temp.iterdir())
    assert [x["outcome"] for x in service.audit.lines()] == ["ok", "lab_out_of_range", "invalid_context", "ok"]
    assert service.audit.lines()[-1]["user"] == "anonymous"


def test_api_deletes_the_upload_on_any_refusal(service: Service, study_dir: Path, temp: Path) -> None:
    with pytest.raises(PublicError) as err:
        service.predict(upload(study_dir, temp), LabInput(1000.0, -2.0), None, "carol")
    assert err.value.code == "lab_out_of_range"
    assert not any(temp.iterdir())
    result = service.predict(upload(study_dir, temp), LabInput(50.0, -2.0), None, "carol")
    assert result.probability == 0.2 and not any(temp.iterdir())
    assert [x["event"] for x in service.audit.lines()] == ["upload", "api", "upload", "api"]


def test_views_and_reports(service: Service, study_dir: Path, temp: Path) -> None:
    loaded = service.load(upload(study_dir, temp), "alice")
    sag = service.image(loaded, "sagittal", "bone W2000/L500", None)
    ax = service.image(loaded, "axial", "soft tissue W400/L40", 3)
    assert max(sag.size) == 512 and max(ax.size) == 512
    service.score(loaded, LabInput(50.0, -2.7), None, "alice", reports=True)
    assert loaded.reports and loaded.reports[0].name.endswith(".json")
    names = {p.name for p in loaded.reports}
    assert not any(temp.glob("u*")), names  # uploads gone, reports kept until the session ends
    assert all(p.is_file() for p in loaded.reports)
    service.downloaded(loaded, "alice")
    assert service.audit.lines()[-1]["event"] == "download"
    service.forget(loaded)
    assert not any(p.exists() for p in loaded.reports) and loaded.reports == []
    service.forget(None)


def test_as_paths_accepts_gradio_values() -> None:
    assert as_paths(None) == []
    assert as_paths("/a/b.dcm") == [Path("/a/b.dcm")]
    assert as_paths([{"path": "/a"}, SimpleNamespace(name="/b")]) == [Path("/a"), Path("/b")]


def test_the_viewer_holds_the_study_for_the_session_only(service: Service, study_dir: Path, temp: Path) -> None:
    loaded = service.load(upload(study_dir, temp), "alice", view=True)
    assert loaded.token is not None and service.views.get(loaded.token, "alice") is loaded
    assert service.views.get(loaded.token, "bob") is None
    assert loaded.series and sum(1 for s in loaded.series if s["chosen"]) == 1 and loaded.n_files > 1
    service.score(loaded, LabInput(50.0, -2.7), None, "alice", reports=True)
    assert not any(temp.glob("u*"))  # uploads deleted; the volume stays viewable in the session
    assert service.views.get(loaded.token, "alice") is loaded and loaded.version == 1 and loaded.marks
    service.forget(loaded)
    assert service.views.get(loaded.token, "alice") is None and len(service.views) == 0
    assert loaded.study.volume.size == 0  # the memory goes with it
    again = service.load(upload(study_dir, temp), "alice", view=True)
    service.attach("session-1", again)
    service.end("session-2")
    assert service.views.get(again.token, "alice") is again
    service.end("session-1")  # the page was closed
    assert service.views.get(again.token, "alice") is None and not any(temp.glob("u*"))


def test_a_nifti_upload_is_read_with_the_same_limits_and_gets_json_pdf_fhir(service: Service, temp: Path) -> None:
    import nibabel as nib

    path = temp / "n1" / "spine.nii.gz"
    path.parent.mkdir()
    vol = np.full((64, 64, 80), -1000, np.int16)
    vol[24:40, 30:46, :] = 300
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
    loaded = service.load([path], "alice", view=True)
    assert loaded.study.source_format == "nifti" and loaded.series == [] and loaded.study.age is None
    with pytest.raises(PublicError) as err:
        service.score(loaded, LabInput(50.0, -2.7), None, "alice")
    assert err.value.code == "missing_lab" and "age" in err.value.message
    service.score(loaded, LabInput(50.0, -2.7, 70, "F"), None, "alice", reports=True)
    assert {p.name for p in loaded.reports} <= {"result.json", "report.pdf", "risk_assessment.fhir.json"}
    assert "result.json" in {p.name for p in loaded.reports}
    service.forget(loaded)
    big = temp / "n2" / "big.nii"
    big.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 80), np.int16), np.diag([0.8, 0.8, 2.0, 1.0])), str(big))
    service.limits = UploadLimits(max_voxels=1000)
    with pytest.raises(PublicError) as err:
        service.load([big], "alice")
    assert err.value.code == "too_large" and not big.exists()


def test_api_reports_are_returned_then_expire(service: Service, study_dir: Path, temp: Path) -> None:
    """``/predict_reports``: the report files come back (JSON first, the DICOM objects a PACS viewer shows among
    them), the uploads are gone, and the files are deleted once the client has had time to fetch them."""
    import time

    files = upload(study_dir, temp)
    result, reports = service.predict_with_reports([str(f) for f in files], LabInput(50.0, -2.7), None, "alice")
    assert result.probability == 0.2
    assert reports[0].name == "result.json"
    assert {"sr.dcm", "risk_assessment.fhir.json", "report.pdf", "report_pdf.dcm", "key_image.dcm"} <= {
        p.name for p in reports}
    assert not any(f.exists() for f in files)
    assert service.expire_api_reports() == 0 and all(p.exists() for p in reports)
    assert service.expire_api_reports(now=time.monotonic() + service.api_reports_ttl_s + 1) == 1
    assert not any(p.exists() for p in reports)
    assert service.audit.lines()[-1]["event"] == "api"
