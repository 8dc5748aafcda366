"""The web app end to end: launched in a subprocess on a free loopback port with a test user.

``gradio_client`` drives the ``/predict`` API (same probability as ``vfrisk predict``, refusals with their reason,
login required, upload limits, nothing left in the temp folder, no patient identifier in logs or temp files);
Playwright drives Debian's Chromium through the page (skipped when /usr/bin/chromium or playwright is absent).

The model bundle is ``models/default`` when present, else ``$VFRISK_TEST_BUNDLE``, else a tiny one trained here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "tester", "a long test password"
MAX_UPLOAD_MB = 48
CANARIES = ("ZQXCANARYNAME", "CANID77310", "19480317", "1948-03-17", "ACCZ99182")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.timeout(900)


def vfrisk(*args: str) -> None:
    exe = Path(sys.executable).with_name("vfrisk")
    subprocess.run([str(exe), *args], check=True, cwd=REPO, stdout=subprocess.DEVNULL, timeout=900)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """None means the default bundle (``models/default``)."""
    if (REPO / "models" / "default" / "model.onnx").is_file():
        return None
    if os.environ.get("VFRISK_TEST_BUNDLE"):
        return Path(os.environ["VFRISK_TEST_BUNDLE"])
    root = tmp_path_factory.mktemp("bundle")
    (root / "cfg.json").write_text(json.dumps({"epochs": 1, "members": 2, "bootstrap": 20, "workers": 1}))
    vfrisk("synth", "--out", str(root / "C"), "--n", "30", "--seed", "5", "--matrix", "96", "--no-extras")
    vfrisk("train", "--cohort", str(root / "C"), "--out", str(root / "RUN"), "--config", str(root / "cfg.json"))
    vfrisk("export", "--run", str(root / "RUN"), "--out", str(root / "B"))
    return root / "B"


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``make demo`` study (made here when data/demo is absent)."""
    made = REPO / "data" / "demo" / "studies" / "S00000"
    if made.is_dir():
        return made
    out = tmp_path_factory.mktemp("demo") / "demo"
    vfrisk("synth", "--out", str(out), "--n", "2", "--seed", "20261128", "--matrix", "256", "--workers", "1", "--lungs")
    return out / "studies" / "S00000"


def zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder.parent))
    return dest


@pytest.fixture(scope="session")
def demo_zip(demo_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zip_folder(demo_study, tmp_path_factory.mktemp("zip") / "study.zip")


@pytest.fixture(scope="session")
def canary_zip(demo_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo study with unique strings in the patient name, ID, birth date and accession number."""
    import pydicom

    root = tmp_path_factory.mktemp("canary")
    folder = root / "CANARY"
    folder.mkdir()
    for i, f in enumerate(sorted(demo_study.glob("*.dcm"))):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID = f"{CANARIES[0]}^JANE", CANARIES[1]
        ds.PatientBirthDate, ds.AccessionNumber = CANARIES[2], CANARIES[4]
        ds.save_as(folder / f"{CANARIES[1]}_{i:04d}.dcm")
    return zip_folder(folder, root / f"{CANARIES[0]}.zip")


@dataclass
class Server:
    url: str
    home: Path
    log: Path

    @property
    def temp(self) -> Path:
        return self.home / "tmp"

    def stored_files(self) -> list[Path]:
        """Non-empty files under the temp folder (Gradio leaves empty multipart stubs behind)."""
        return [p for p in self.temp.rglob("*") if p.is_file() and p.stat().st_size > 0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the app did not start")


def start_app(home: Path, bundle: Path | None, **env_extra: str) -> tuple[subprocess.Popen[bytes], Server]:
    port = free_port()
    env = {**os.environ, "VFRISK_HOME": str(home), **env_extra}
    if "VFRISK_DEMO_USER" not in env_extra:
        env.pop("VFRISK_DEMO_USER", None)
    if bundle is not None:
        env["VFRISK_MODEL"] = str(bundle)
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", f"import app; app.main(host='127.0.0.1', port={port})"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_up(url, proc, log)
    except Exception:
        stop(proc)
        raise
    return proc, Server(url, home, log)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(bundle: Path | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from webapp.users import add_user

    home = tmp_path_factory.mktemp("home")
    add_user(home / "users.json", USER, PASSWORD)
    (home / "tmp" / "stale").mkdir(parents=True)
    (home / "tmp" / "stale" / "left-by-a-crash.dcm").write_bytes(b"x")
    proc, srv = start_app(home, bundle, VFRISK_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB))
    try:
        yield srv
    finally:
        stop(proc)


def test_no_users_no_start(tmp_path: Path) -> None:
    env = {**os.environ, "VFRISK_HOME": str(tmp_path)}
    env.pop("VFRISK_DEMO_USER", None)
    run = subprocess.run([sys.executable, "-c", "import app; app.main(port=1)"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode != 0 and "no_users" not in run.stdout
    assert "vfrisk users add" in run.stderr


def test_demo_user_only_when_asked(bundle: Path | None, tmp_path: Path) -> None:
    from gradio_client import Client

    proc, srv = start_app(tmp_path, bundle, VFRISK_DEMO_USER="1")
    try:
        lines = [x for x in srv.log.read_text().splitlines() if "demo account" in x]
        assert len(lines) == 1
        password = lines[0].rsplit("password ", 1)[1].strip()
        Client(srv.url, auth=("demo", password), verbose=False)
        assert not (tmp_path / "users.json").exists()
    finally:
        stop(proc)


def client(server: Server) -> object:
    from gradio_client import Client

    return Client(server.url, auth=(USER, PASSWORD), verbose=False)


def api_predict(server: Server, files: list[Path], ntx: float = 54.4, tscore: float = -3.52) -> dict[str, object]:
    from gradio_client import handle_file

    c = client(server)
    result = c.predict([handle_file(str(f)) for f in files], ntx, tscore, None, "", "",  # type: ignore[attr-defined]
                       api_name="/predict")
    assert isinstance(result, dict)
    return result


def test_startup_sweeps_leftovers_and_serves_loopback_only(server: Server) -> None:
    assert not (server.temp / "stale").exists()
    assert server.url.startswith("http://127.0.0.1:")
    assert (server.temp.stat().st_mode & 0o777) == 0o700
    assert "share" not in server.log.read_text().lower() or "share=True" in server.log.read_text()


def test_api_scores_like_the_cli(server: Server, demo_zip: Path, demo_study: Path, bundle: Path | None) -> None:
    from inference.labs import LabInput
    from vfrisk.pipeline import predict_cli

    result = api_predict(server, [demo_zip])
    cli = predict_cli(demo_study, labs=LabInput(ntx=54.4, bmd_tscore=-3.52), context=None, model=bundle, out=None)
    assert result["probability"] == cli["probability"]
    assert result["interval"] == cli["interval"]
    assert result["input"] == cli["input"] and result["vertebrae"] == cli["vertebrae"]
    assert result["suggestion"]["risk_category"] == cli["suggestion"]["risk_category"]
    assert server.stored_files() == []


def test_api_accepts_the_files_of_a_series(server: Server, demo_study: Path) -> None:
    files = sorted(demo_study.glob("*.dcm"))
    result = api_predict(server, files)
    assert 0.0 <= float(result["probability"]) <= 1.0  # type: ignore[arg-type]
    assert server.stored_files() == []


def test_refused_upload_gives_its_reason(server: Server, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    junk = tmp_path / "notes.txt"
    junk.write_text("not a DICOM file\n")
    with pytest.raises(AppError, match="not_dicom"):
        api_predict(server, [junk])
    assert server.stored_files() == []


def test_bad_labs_give_their_reason(server: Server, demo_zip: Path) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="lab_out_of_range"):
        api_predict(server, [demo_zip], ntx=9999.0)
    assert server.stored_files() == []


def test_oversize_uploads_are_refused(server: Server, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    big = tmp_path / "big.dcm"
    big.write_bytes(os.urandom(1024) * (MAX_UPLOAD_MB + 1) * 1024)
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        api_predict(server, [big])
    halves = []
    for i in range(2):
        half = tmp_path / f"half{i}.dcm"
        half.write_bytes(b"\0" * (MAX_UPLOAD_MB // 2 + 2) * 1024 * 1024)
        halves.append(half)
    with pytest.raises(AppError, match="upload_too_large"):
        api_predict(server, halves)
    assert server.stored_files() == []


def test_unauthenticated_calls_are_refused(server: Server) -> None:
    from gradio_client import Client

    with pytest.raises(Exception, match=r"(?i)login|credentials|auth"):
        Client(server.url, verbose=False)
    with pytest.raises(Exception, match=r"(?i)login|credentials|auth|invalid"):
        Client(server.url, auth=(USER, "wrong password!"), verbose=False)
    for path in ("gradio_api/info", "config", "gradio_api/call/predict"):
        req = urllib.request.Request(server.url + path, data=b"{}" if path.endswith("predict") else None)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code in (401, 403)


def test_private_files_are_not_served(server: Server, bundle: Path | None) -> None:
    import http.cookiejar
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = urllib.parse.urlencode({"username": USER, "password": PASSWORD}).encode()
    assert opener.open(server.url + "login", data=form, timeout=10).status == 200
    model = (bundle or REPO / "models" / "default") / "model.json"
    for path in (server.home / "users.json", server.home / "audit.log", REPO / "app.py", REPO / "data" / "__init__.py",
                 model, Path("/etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(f"{server.url}gradio_api/file={path}", timeout=10)
        assert err.value.code in (403, 404), path


def test_audit_log_records_who_what_outcome(server: Server) -> None:
    lines = [json.loads(x) for x in (server.home / "audit.log").read_text().splitlines()]
    events = {(x["event"], x["outcome"]) for x in lines}
    assert ("login", "ok") in events and ("login", "refused") in events
    assert ("api", "ok") in events and ("upload", "not_dicom") in events
    assert all(set(x) == {"time", "event", "user", "study", "model_version", "outcome"} for x in lines)
    assert {x["user"] for x in lines} <= {USER, "unknown"}


def test_canary_identifiers_stay_out_of_logs_temp_and_result(server: Server, canary_zip: Path) -> None:
    result = api_predict(server, [canary_zip])
    assert "probability" in result
    time.sleep(1.0)
    text = json.dumps(result) + server.log.read_text() + (server.home / "audit.log").read_text()
    for f in server.temp.rglob("*"):
        if f.is_file():
            text += f.name + f.read_bytes().decode("latin-1")
        text += f.name
    for canary in CANARIES:
        assert canary not in text, canary


@pytest.mark.system
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)")
def test_browser_login_upload_score_download(server: Server, demo_zip: Path, demo_study: Path,
                                             tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                    headless=True, args=flags, accept_downloads=True,
                                                    viewport={"width": 1400, "height": 1600})
        try:
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            run_browser_session(page, server, demo_zip, tmp_path)
            page.reload()
            run_folder_upload(page, demo_study)
        finally:
            ctx.close()


def box(elem_id: str) -> str:
    """The text box inside a form field (Gradio renders one line as an input, more as a textarea)."""
    return f"#{elem_id} input, #{elem_id} textarea"


def run_browser_session(page: object, server: Server, demo_zip: Path, out: Path) -> None:
    p = page  # playwright Page (untyped here)
    p.goto(server.url)  # type: ignore[attr-defined]
    p.locator("input[name=username], input[type=text]").first.fill(USER)  # type: ignore[attr-defined]
    p.locator("input[type=password]").first.fill(PASSWORD)  # type: ignore[attr-defined]
    p.get_by_role("button", name="Login").click()  # type: ignore[attr-defined]
    p.locator("#vf-disclaimer").wait_for()  # type: ignore[attr-defined]
    assert "not a diagnostic device" in p.locator("#vf-disclaimer").inner_text()  # type: ignore[attr-defined]
    p.locator("#vf-files input[type=file]").set_input_files(str(demo_zip))  # type: ignore[attr-defined]
    p.locator("#vf-study").get_by_text("Study read").wait_for()  # type: ignore[attr-defined]
    assert p.locator(box("vf-age")).input_value() == "65"  # type: ignore[attr-defined]
    p.locator(box("vf-ntx")).fill("54.4")  # type: ignore[attr-defined]
    p.locator(box("vf-tscore")).fill("-3.52")  # type: ignore[attr-defined]
    p.locator("#vf-score").click()  # type: ignore[attr-defined]
    p.locator("#vf-probability").get_by_text("fracture probability").wait_for()  # type: ignore[attr-defined]
    prob = p.locator("#vf-probability").inner_text()  # type: ignore[attr-defined]
    assert "%" in prob and "Risk category" in prob
    levels = p.locator("#vf-levels").inner_text()  # type: ignore[attr-defined]
    assert "Genant grade" in levels and "Trabecular HU" in levels
    suggestion = p.locator("#vf-suggestion").inner_text()  # type: ignore[attr-defined]
    assert "First-line choices" in suggestion and "Monitoring" in suggestion
    src = p.locator("#vf-viewer img").first.get_attribute("src")  # type: ignore[attr-defined]
    assert src and "vfrisk/view/" in src and ".png" in src
    p.screenshot(path=str(out / "webapp.png"), full_page=True)  # type: ignore[attr-defined]
    with p.expect_download() as info:  # type: ignore[attr-defined]
        p.locator("#vf-downloads a[download='result.json']").first.click()  # type: ignore[attr-defined]
    saved = out / "result.json"
    info.value.save_as(str(saved))
    assert "probability" in json.loads(saved.read_text())
    p.get_by_role("button", name="Axial").click()  # type: ignore[attr-defined]
    p.get_by_role("button", name="Soft tissue").click()  # type: ignore[attr-defined]
    p.locator("#vf-viewer").screenshot(path=str(out / "viewer-axial.png"))  # type: ignore[attr-defined]


def run_folder_upload(page: object, folder: Path) -> None:
    p = page
    p.get_by_role("tab", name="Folder").click()  # type: ignore[attr-defined]
    p.locator("#vf-folder input[type=file]").set_input_files(str(folder))  # type: ignore[attr-defined]
    p.locator("#vf-study").get_by_text("Study read").wait_for()  # type: ignore[attr-defined]


def test_api_returns_the_report_files(server: Server, demo_study: Path) -> None:
    """``/predict_reports`` through gradio_client: the result JSON and every report file of a DICOM study. (Last
    in this module: the files stay in the temp folder a few minutes for the client.)"""
    from gradio_client import handle_file

    files = sorted(demo_study.glob("*.dcm"))
    result, reports = client(server).predict(  # type: ignore[attr-defined]
        [handle_file(str(f)) for f in files], 54.4, -3.52, None, "", "", api_name="/predict_reports")
    paths = {Path(p["path"] if isinstance(p, dict) else p).name: Path(p["path"] if isinstance(p, dict) else p)
             for p in reports}
    assert set(paths) == {"result.json", "sr.dcm", "seg.dcm", "risk_assessment.fhir.json", "report.pdf",
                          "report_pdf.dcm", "key_image.dcm"}
    assert json.loads(paths["result.json"].read_text())["probability"] == result["probability"]
    assert paths["report.pdf"].read_bytes().startswith(b"%PDF-")
    import pydicom

    assert pydicom.dcmread(paths["sr.dcm"]).Modality == "SR"
