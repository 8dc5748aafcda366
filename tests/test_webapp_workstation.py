"""Issue 21 in the browser: the radiologist's workstation driven through the real page in Chromium at 1920 x 1080.

The app runs in a subprocess with a test user. The engine is the bundled default model when it loads; otherwise
(a default model of an older spec is installed) the stand-in of ``tests/webapp_standin.py``, which serves the page,
the viewer, the form and the errors the same way (``ENGINE`` in the screenshot names says which). Screenshots are
test artefacts: under ``$VFRISK_TEST_SHOTS`` when set, else the test's temporary folder (printed with ``-s``).

Covered ("Done when"): a fresh page with nothing typed sends no number and scores nothing; a forgotten T-score is a
message beside its box; the context panel opened and left empty adds no renal alert; the demo study scored with the
image, the probability and its interval, the per-level table and the first alert on one 1920 x 1080 screen (URGENT
first, INFO not red); a NIfTI file from ``../shared`` scored (skipped when absent); a refused upload whose message is
still there 30 s later; wheel scrolling that changes the slice (timed).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_webapp_e2e import CHROMIUM, PASSWORD, USER, Server, demo_study, demo_zip, free_port, stop, wait_up

REPO = Path(__file__).resolve().parents[1]
NIFTI = REPO.parent / "shared" / "dicom-corpus" / "accept_totalseg_nifti_with_vertebra_masks" / "example_ct.nii.gz"
VIEWPORT = {"width": 1920, "height": 1080}
RED = "rgb(193, 18, 31)"
"""The urgent colour (``webapp.present.COLOURS``) as the browser reports it."""
__all__ = ["demo_study", "demo_zip"]  # fixtures used here
pytestmark = [pytest.mark.system, pytest.mark.timeout(900),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)")]


def model_loads() -> bool:
    """Whether the bundled default model loads with this code (its spec version and hashes match)."""
    from inference.bundle import load_bundle
    from inference.errors import InputError

    try:
        load_bundle()
    except (InputError, OSError):
        return False
    return True


ENGINE = "model" if model_loads() else "stand-in"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go."""
    folder = Path(os.environ["VFRISK_TEST_SHOTS"]) if os.environ.get("VFRISK_TEST_SHOTS") else \
        tmp_path_factory.mktemp("issue21-shots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots ({ENGINE} engine): {folder}")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from webapp.users import add_user

    home = tmp_path_factory.mktemp("home21")
    add_user(home / "users.json", USER, PASSWORD)
    port = free_port()
    code = (f"import app; app.main(host='127.0.0.1', port={port})" if ENGINE == "model" else
            f"import sys; sys.path.insert(0, 'tests'); import webapp_standin; webapp_standin.main({port})")
    env = {**os.environ, "VFRISK_HOME": str(home)}
    env.pop("VFRISK_DEMO_USER", None)
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}/", home, log)
    try:
        wait_up(srv.url, proc, log)
        yield srv
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A signed-in Chromium context with a 1920 x 1080 viewport."""
    sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("profile")), headless=True,
                                                    executable_path=str(CHROMIUM), args=flags, viewport=VIEWPORT,
                                                    accept_downloads=True)
        try:
            page = ctx.new_page()
            page.goto(server.url)
            page.locator("input[type=text]").first.fill(USER)
            page.locator("input[type=password]").first.fill(PASSWORD)
            page.get_by_role("button", name="Login").click()
            page.locator("#vf-header").wait_for()
            page.close()
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh page (a new Gradio session) of the signed-in context."""
    p = browser.new_page()
    p.set_default_timeout(180_000)
    p.goto(server.url)
    p.locator("#vf-header").wait_for()
    yield p
    p.close()


def box(page: Any, elem_id: str) -> Any:
    """The text box of a form field."""
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def upload(page: Any, path: Path) -> None:
    page.locator("#vf-files input[type=file]").set_input_files(str(path))


def upload_study(page: Any, path: Path) -> None:
    upload(page, path)
    page.locator("#vf-study").get_by_text("Study read").wait_for()
    page.locator("#vf-viewer .vf-v[data-shown]").wait_for()


def joins(page: Any) -> list[dict[str, Any]]:
    """Record the event requests the page sends (their JSON bodies)."""
    sent: list[dict[str, Any]] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if "/queue/join" in r.url else None)
    return sent


def toggle_context(page: Any) -> None:
    """Open (or fold) the clinical-context panel."""
    page.get_by_role("button", name="Clinical context (optional").click()


def score(page: Any) -> None:
    page.locator("#vf-score").click()


def wait_scored(page: Any) -> None:
    page.locator("#vf-probability .vf-p").wait_for()
    page.locator("#vf-viewer .vf-v[data-shown]").wait_for()
    page.wait_for_function("() => { const v = document.querySelector('#vf-viewer .vf-v');"
                           " return v && JSON.parse(v.dataset.cfg).scored && v.dataset.shown; }")


def test_fresh_page_with_nothing_typed_sends_no_number(page: Any, demo_zip: Path, shots: Path) -> None:
    for elem in ("vf-ntx", "vf-tscore", "vf-age"):
        assert box(page, elem).input_value() == ""
    sent = joins(page)
    upload_study(page, demo_zip)
    score(page)
    page.locator("#vf-ntx-msg").get_by_text("Required").wait_for()
    page.screenshot(path=str(shots / f"fresh-nothing-typed-{ENGINE}.png"))
    assert "Required" in page.locator("#vf-tscore-msg").inner_text()
    assert "Not scored" in page.locator("#vf-error").inner_text()
    assert page.locator("#vf-probability").inner_text().strip() == ""
    data = sent[-1]["data"]
    assert data[1] == "" and data[2] == ""  # NTX and T-score as typed: nothing, not 0
    assert not [v for v in data if isinstance(v, int | float) and not isinstance(v, bool)]  # no number at all
    assert data[3] == "65"  # the age the image header gave, shown in its box


def test_a_forgotten_t_score_is_a_message_beside_its_box_and_nothing_is_scored(page: Any, demo_zip: Path,
                                                                              shots: Path) -> None:
    upload_study(page, demo_zip)
    box(page, "vf-ntx").fill("54.4")
    score(page)
    page.locator("#vf-tscore-msg").get_by_text("Required").wait_for()
    page.screenshot(path=str(shots / f"forgotten-t-score-{ENGINE}.png"))
    assert "T-score" in page.locator("#vf-tscore-msg").inner_text()
    assert page.locator("#vf-ntx-msg").inner_text().strip() == ""
    assert page.locator("#vf-probability").inner_text().strip() == ""


def test_the_context_panel_opened_and_left_empty_adds_no_renal_alert(page: Any, demo_zip: Path, shots: Path) -> None:
    sent = joins(page)
    upload_study(page, demo_zip)
    toggle_context(page)
    box(page, "vf-crcl").wait_for()
    box(page, "vf-ntx").fill("54.4")
    box(page, "vf-tscore").fill("-3.52")
    score(page)
    wait_scored(page)
    page.screenshot(path=str(shots / f"empty-context-{ENGINE}.png"))
    text = page.locator("#vf-suggestion").inner_text()
    assert "CrCl" not in text and "renal" not in text.lower().split("not evaluated")[0]
    assert "Not evaluated (missing data)" in text
    missing = text.split("Not evaluated (missing data)")[1]
    assert "no creatinine clearance" in missing and "no dietary calcium" in missing  # not "0"
    data = sent[-1]["data"]
    assert not [v for v in data if isinstance(v, int | float) and not isinstance(v, bool)]  # falls, CrCl...: no 0
    assert page.locator("#vf-error").inner_text().strip() == ""


def test_the_demo_study_scored_fits_one_1920_by_1080_screen(page: Any, demo_zip: Path, shots: Path) -> None:
    """With a red flag, CrCl 25 and a recent MI: the URGENT alert first, INFO never red, all in view."""
    upload_study(page, demo_zip)
    box(page, "vf-ntx").fill("54.4")
    box(page, "vf-tscore").fill("-3.52")
    toggle_context(page)
    box(page, "vf-crcl").fill("25")
    box(page, "vf-mi").fill("2026-10-01")
    page.locator("#vf-red-flags").get_by_text("night_pain").click()
    toggle_context(page)  # fold it again
    score(page)
    wait_scored(page)
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.5)
    page.screenshot(path=str(shots / f"result-screen-{ENGINE}.png"))
    assert page.evaluate("window.scrollY") == 0
    for selector in ("#vf-viewer .vf-img", "#vf-probability .vf-p", "#vf-probability .vf-int", "#vf-levels-table",
                     "#vf-suggestion .vf-alert >> nth=0"):
        where = page.locator(selector).bounding_box()
        assert where is not None, selector
        assert where["y"] >= 0 and where["y"] + where["height"] <= VIEWPORT["height"], (selector, where)
        assert where["x"] >= 0 and where["x"] + where["width"] <= VIEWPORT["width"], (selector, where)
    alerts = page.locator("#vf-suggestion .vf-alert")
    assert alerts.first.inner_text().startswith("URGENT")
    for k in range(alerts.count()):
        label = alerts.nth(k).locator("b").first
        if label.inner_text() == "INFO":
            assert label.evaluate("e => getComputedStyle(e).color") != RED
    assert "synthetic phantoms" in page.locator("#vf-training").inner_text()
    assert "synthetic phantoms" in page.locator("#vf-probability").inner_text()


@pytest.mark.skipif(not NIFTI.is_file(), reason="../shared/dicom-corpus is not here")
def test_a_nifti_study_from_shared_is_scored_with_age_and_sex_required(page: Any, shots: Path) -> None:
    upload(page, NIFTI)
    page.locator("#vf-study").get_by_text("NIfTI volume").wait_for()
    summary = page.locator("#vf-study").inner_text()
    assert "JSON, PDF, FHIR" in summary and "no DICOM SR or SEG" in summary
    box(page, "vf-ntx").fill("54.4")
    box(page, "vf-tscore").fill("-3.52")
    score(page)
    page.locator("#vf-age-msg").get_by_text("Required").wait_for()
    assert "Required" in page.locator("#vf-sex-msg").inner_text()
    box(page, "vf-age").fill("63")
    page.locator("#vf-sex").get_by_text("F", exact=True).click()
    score(page)
    page.wait_for_function("() => document.querySelector('#vf-probability .vf-p') || "
                           "!document.querySelector('#vf-error').innerText.includes('Not scored')")
    assert page.locator("#vf-error").inner_text().strip() == "", page.locator("#vf-error").inner_text()
    wait_scored(page)
    time.sleep(1.0)
    page.screenshot(path=str(shots / f"nifti-{ENGINE}.png"))
    files = page.locator("#vf-downloads").inner_text().replace("\n", "")
    assert "result.json" in files and "report.pdf" in files and "risk_assessment.fhir.json" in files
    assert "sr.dcm" not in files and "seg.dcm" not in files


def test_a_refused_upload_keeps_its_message_for_30_seconds(page: Any, server: Server, tmp_path: Path,
                                                           shots: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a DICOM file\n")
    upload(page, junk)
    line = page.locator("#vf-error .vf-err")
    line.wait_for()
    first = line.inner_text()
    assert "(reason: not_dicom)" in first and "\n" not in first.strip()
    time.sleep(30)
    assert line.is_visible() and line.inner_text() == first
    page.screenshot(path=str(shots / f"refused-upload-after-30s-{ENGINE}.png"))
    assert page.locator(".toast-body").count() == 0
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../../etc/evil.dcm", b"x" * 200)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI volume at all")
    for path, reason in ((hostile, "unsafe_archive"), (broken, "unreadable")):
        upload(page, path)
        page.wait_for_function("r => document.querySelector('#vf-error').innerText.includes(r)", arg=reason)
        text = line.inner_text()
        assert "\n" not in text.strip() and "/" not in text and "evil" not in text, text
    assert "Traceback" not in server.log.read_text()


def test_wheel_scrolling_changes_the_slice_one_step_at_a_time(page: Any, demo_zip: Path, shots: Path) -> None:
    """Each wheel step shows the next slice; the time per step is recorded (docs/screenshots/wheel-timing-*.json),
    not asserted: speed is measured in benchmarks, and a loaded machine must not fail a functional test."""
    upload_study(page, demo_zip)
    viewer = page.locator("#vf-viewer .vf-v")
    stage = page.locator("#vf-viewer .vf-stage").bounding_box()
    page.mouse.move(stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
    start = int(viewer.get_attribute("data-index"))
    times = []
    for _ in range(12):
        want = f"sagittal:{int(viewer.get_attribute('data-index')) + 1}"
        t0 = time.perf_counter()
        page.mouse.wheel(0, 100)
        page.wait_for_function("w => document.querySelector('#vf-viewer .vf-v').dataset.shown === w", arg=want)
        times.append(1000 * (time.perf_counter() - t0))
    assert int(viewer.get_attribute("data-index")) == start + 12
    status = page.locator("#vf-viewer .vf-status").inner_text()
    assert f"sagittal {start + 13} / " in status and " mm" in status
    figures = {"engine": ENGINE, "ms_per_slice": [round(t) for t in times], "median_ms": statistics.median(times)}
    (shots / f"wheel-timing-{ENGINE}.json").write_text(json.dumps(figures))
    print(f"\nwheel scrolling: {figures}")
    page.locator("#vf-viewer .vf-stage").click()
    page.keyboard.press("ArrowDown")
    page.wait_for_function("w => document.querySelector('#vf-viewer .vf-v').dataset.shown === w",
                           arg=f"sagittal:{start + 11}")
    page.get_by_role("button", name="Coronal").click()
    page.wait_for_function("() => document.querySelector('#vf-viewer .vf-v').dataset.shown.startsWith('coronal')")
    page.get_by_role("button", name="Axial").click()
    page.wait_for_function("() => document.querySelector('#vf-viewer .vf-v').dataset.shown.startsWith('axial')")
    page.get_by_role("button", name="Soft tissue").click()
    assert "W 400 L 40" in page.locator("#vf-viewer .vf-status").inner_text()
    img = page.locator("#vf-viewer .vf-img")
    centre = img.bounding_box()
    page.mouse.move(centre["x"] + 20, centre["y"] + 20)
    page.mouse.down()
    page.mouse.move(centre["x"] + 70, centre["y"] + 40)
    page.mouse.up()
    assert "W 600 L 80" in page.locator("#vf-viewer .vf-status").inner_text()  # drag: 4 HU/px width, 2 HU/px level
    width = img.bounding_box()["width"]
    page.get_by_role("button", name="+").click()
    assert img.bounding_box()["width"] > width * 1.4
    page.locator("#vf-viewer").screenshot(path=str(shots / f"viewer-axial-zoomed-{ENGINE}.png"))


def test_closing_the_page_drops_the_study_from_the_viewer(browser: Any, server: Server, demo_zip: Path) -> None:
    p = browser.new_page()
    p.set_default_timeout(180_000)
    p.goto(server.url)
    upload_study(p, demo_zip)
    src = p.locator("#vf-viewer .vf-img").get_attribute("src")
    url = server.url + src.split("?")[0]
    assert browser.request.get(url).status == 200
    p.close()
    deadline = time.monotonic() + 60
    while browser.request.get(url).status == 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert browser.request.get(url).status == 404
