"""Issue 24, items 3-6 and 8 against the running web app (one server, two users, two scoring slots).

Loopback only, bounded loops. Run with ``-s`` to print the figures the README quotes (latency of a signed-in
user's requests before and during a password-guessing run, files left in the temp folder after the load test).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_webapp_e2e import Server, start_app, stop

USERS = {"alice": "alice long password", "bob": "bob's long password", "carol": "carol long password"}
"""alice and bob work; carol is the account an attacker guesses at (she never signed in from here)."""
SLOTS = 2
QUEUE = 14
BACKOFF_S = 0.2
BUDGET_MB = 256
"""The server's study memory budget here (the default, 1536, is measured by ``test_hardening_memory``)."""
PIDS: dict[str, int] = {}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from webapp.users import add_user

    home = tmp_path_factory.mktemp("home24")
    for name, password in USERS.items():
        add_user(home / "users.json", name, password)
    proc, srv = start_app(home, None, VFRISK_SCORING_SLOTS=str(SLOTS), VFRISK_QUEUE_SIZE=str(QUEUE),
                          VFRISK_LOGIN_BACKOFF_S=str(BACKOFF_S), VFRISK_MAX_UPLOAD_MB="48",
                          VFRISK_STUDY_BUDGET_MB=str(BUDGET_MB), VFRISK_MAX_INFLATED_MB="128")
    PIDS["server"] = proc.pid
    try:
        yield srv
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def study_zips(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six small studies (96 x 96) zipped, and one junk file: seven distinct uploads."""
    out = tmp_path_factory.mktemp("zips")
    zips = []
    for study in sorted((tiny_cohort / "studies").iterdir()):
        dest = out / f"{study.name}.zip"
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(study.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(study.parent))
        zips.append(dest)
    junk = out / "notes.txt"
    junk.write_text("not a study\n")
    return [*zips[:6], junk]


def session(server: Server, user: str) -> Any:
    """An httpx client signed in as ``user`` (cookies kept)."""
    import httpx

    http = httpx.Client(base_url=server.url, timeout=60)
    assert http.post("login", data={"username": user, "password": USERS[user]}).status_code == 200
    return http


def gradio(server: Server, user: str) -> Any:
    from gradio_client import Client

    return Client(server.url, auth=(user, USERS[user]), verbose=False)


def temp_files(server: Server) -> list[Path]:
    """Every file left in the temp folder, empty ones included."""
    return sorted(p for p in server.temp.rglob("*") if p.is_file())


def upload(http: Any, name: str, data: bytes) -> str:
    reply = http.post("gradio_api/upload", files=[("files", (name, data))])
    assert reply.status_code == 200, reply.text
    return str(reply.json()[0])


def fn_index(http: Any, *, api_name: str | None = None, elem_id: str | None = None) -> int:
    """The dependency index of the /predict API or of the upload event of the component ``elem_id``."""
    config = http.get("config").json()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    for i, dep in enumerate(config["dependencies"]):
        if api_name and dep.get("api_name") == api_name:
            return i
        if elem_id and any(ids.get(t[0]) == elem_id and t[1] == "upload" for t in dep["targets"]):
            return i
    raise AssertionError("no such event")


def run_event(http: Any, fn: int, data: list[Any], session_hash: str) -> dict[str, Any]:
    """Join the queue as the browser does and read the event stream to the end; return the completion."""
    joined = http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session_hash,
                                                      "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return dict(message)
    raise AssertionError("the event never completed")


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def outcome(job: Any) -> str:
    """``ok``, or the reason code of a clean refusal, or the text of anything else."""
    from gradio_client.exceptions import AppError

    try:
        result = job.result(timeout=600)
    except AppError as exc:
        return str(exc).split(":", 1)[0]
    except Exception as exc:
        return "queue_full" if "Queue is full" in str(exc) else f"{type(exc).__name__}: {exc}"
    return "ok" if isinstance(result, dict) and "probability" in result else f"odd result {result!r}"


CLEAN = {"ok", "not_dicom", "spine_not_covered", "queue_full", "insufficient_coverage", "too_few_slices",
         "missing_slices", "no_image_series"}


def test_anonymous_routes_refused_and_session_cookie_secure_over_https(app_server: Server) -> None:
    import httpx

    anon = httpx.Client(base_url=app_server.url, timeout=30)
    assert anon.get("gradio_api/heartbeat/abc").status_code == 401
    assert anon.get("openapi.json").status_code in (401, 404)
    login = anon.post("login", data={"username": "alice", "password": USERS["alice"]},
                      headers={"X-Forwarded-Proto": "https"})
    assert login.status_code == 200
    cookies = login.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all(secure(c) for c in cookies)
    plain = httpx.Client(base_url=app_server.url, timeout=30).post(
        "login", data={"username": "alice", "password": USERS["alice"]})
    assert not all(secure(c) for c in plain.headers.get_list("set-cookie"))  # plain http: as Gradio sets them


def secure(cookie: str) -> bool:
    """Whether a Set-Cookie value carries the Secure attribute."""
    return "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}


def test_a_users_upload_is_never_served_nor_usable_by_another(app_server: Server) -> None:
    alice, bob = session(app_server, "alice"), session(app_server, "bob")
    path = upload(alice, "DOE_JANE.dcm", b"DICM-ish bytes " * 1000)
    assert "/private/" in path and temp_files(app_server) == [Path(path)]  # the shared copy is gone
    for who in (bob, alice):  # nothing uploaded is served back, to anyone
        assert who.get(f"gradio_api/file={path}").status_code == 404
    predict = fn_index(bob, api_name="predict")
    done = run_event(bob, predict, [[file_data(path)], 50, -2, 70, "F", ""], "bob-steals")
    assert not done["success"] and "not_found" in json.dumps(done["output"])
    assert Path(path).exists()  # bob's refused request did not delete it either
    done = run_event(alice, predict, [[file_data(path)], 50, -2, 70, "F", ""], "alice-own")
    assert "not_dicom" in json.dumps(done["output"])
    assert temp_files(app_server) == []


def test_text_labs_through_the_api_are_bad_labs(app_server: Server, study_zips: list[Path]) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = gradio(app_server, "bob")
    with pytest.raises(AppError, match="bad_lab"):
        client.predict([handle_file(str(study_zips[-1]))], "abc", -2.0, None, "", "", api_name="/predict")
    time.sleep(0.5)
    assert temp_files(app_server) == []


def test_fourteen_concurrent_requests_with_duplicated_files(app_server: Server, study_zips: list[Path]) -> None:
    """Seven uploads, each sent twice (once by each user), all at once: every one answered or cleanly refused,
    two scoring at once, and nothing left in the temp folder."""
    from gradio_client import handle_file

    clients = {u: gradio(app_server, u) for u in ("alice", "bob")}
    log_before = app_server.log.read_text()
    t0 = time.perf_counter()
    jobs = [clients[user].submit([handle_file(str(z))], 54.4, -3.5, 70.5, "", "", api_name="/predict")
            for z in study_zips for user in clients]
    results = [outcome(j) for j in jobs]
    seconds = time.perf_counter() - t0
    busy = [int(x.rsplit(" ", 1)[1]) for x in app_server.log.read_text()[len(log_before):].splitlines()
            if "scoring slots in use:" in x]
    time.sleep(1.0)
    left = temp_files(app_server)
    print(f"\n14 concurrent requests: {sorted(results)} in {seconds:.1f} s; most slots in use {max(busy)}; "
          f"files left in the temp folder: {len(left)}")
    assert len(results) == 14 and set(results) <= CLEAN, results
    assert "ok" in results and "queue_full" not in results  # the queue holds them all
    assert max(busy) == SLOTS  # the configured slots really score at once
    assert left == []
    assert not list(Path(__file__).resolve().parents[1].glob("*.pyi"))  # nothing written beside the code


def test_load_beyond_the_queue_leaves_nothing_behind(app_server: Server, study_zips: list[Path]) -> None:
    from gradio_client import handle_file

    clients = [gradio(app_server, u) for u in ("alice", "bob")]
    jobs = [clients[i % 2].submit([handle_file(str(study_zips[i % 6]))], 54.4, -3.5, None, "", "",
                                  api_name="/predict") for i in range(30)]
    results = [outcome(j) for j in jobs]
    time.sleep(1.0)
    left = temp_files(app_server)
    counts = {r: results.count(r) for r in set(results)}
    print(f"\n30 requests against a queue of {QUEUE} + {SLOTS} slots: {counts}; files left: {len(left)}")
    assert set(results) <= CLEAN, results
    assert left == []


def _memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def test_deflate_bombs_from_several_users_stay_within_slots_times_budget(app_server: Server, tmp_path: Path) -> None:
    """Four deflate x8 uploads (each 8 files inflating to 120 MB) at once: each refused cleanly, and the server's
    peak RSS grows by at most slots x budget."""
    from gradio_client import handle_file
    from test_hardening_memory import deflate_x8

    bomb = deflate_x8(tmp_path / "x8", 120)
    before = _memory_mb(PIDS["server"])
    clients = [gradio(app_server, u) for u in ("alice", "bob")]
    jobs = [clients[i % 2].submit([handle_file(str(bomb))], 54.4, -3.5, 70, "F", "", api_name="/predict")
            for i in range(4)]
    results = [outcome(j) for j in jobs]
    after = _memory_mb(PIDS["server"])
    time.sleep(1.0)
    print(f"\n4 concurrent deflate x8 uploads ({bomb.stat().st_size / 2**20:.1f} MB each, 8 x 120 MB inflated): "
          f"{results}; server RSS before {before['VmRSS']:.0f} MB (peak so far {before['VmHWM']:.0f}), peak after "
          f"{after['VmHWM']:.0f} MB; bound {SLOTS} slots x {BUDGET_MB} MB; files left {len(temp_files(app_server))}")
    assert results == ["too_large"] * 4
    assert after["VmHWM"] <= max(before["VmHWM"], before["VmRSS"] + SLOTS * BUDGET_MB + 96)
    assert temp_files(app_server) == []


def test_results_are_served_to_their_user_only(app_server: Server, study_zips: list[Path]) -> None:
    alice, bob = session(app_server, "alice"), session(app_server, "bob")
    path = upload(alice, "study.zip", study_zips[0].read_bytes())
    done = run_event(alice, fn_index(alice, elem_id="vf-files"), [[file_data(path)], None], "alice-ui")
    assert done["success"], done
    viewers = [o for o in done["output"]["data"] if isinstance(o, str) and "vfrisk/view/" in o]
    assert viewers, done["output"]
    image = "vfrisk/view/" + viewers[0].split("vfrisk/view/", 1)[1].split(".png", 1)[0] + ".png"
    assert alice.get(image).status_code == 200  # the viewer's slices: the uploader's only (issue 21)
    assert bob.get(image).status_code == 404
    for who in (alice, bob):
        assert who.get(f"gradio_api/file={path}").status_code == 404


def _wait_of(reply: Any) -> float:
    """The wait a 429 names in its detail ("... try again in N s")."""
    return float(reply.json()["detail"].rsplit("in ", 1)[1].split(" ")[0])


def _guess(server: Server, account: str, attempts: int) -> list[tuple[int, float]]:
    """Wrong passwords for ``account``, waiting out each refusal; (status, Retry-After) of every answer."""
    import httpx

    http = httpx.Client(base_url=server.url, timeout=60)
    seen: list[tuple[int, float]] = []
    failures = 0
    while failures < attempts:
        reply = http.post("login", data={"username": account, "password": f"guess {len(seen)}"})
        wait = _wait_of(reply) if reply.status_code == 429 else 0.0
        seen.append((reply.status_code, wait))
        if wait:
            time.sleep(wait + 0.05)
        else:
            failures += 1
    return seen


def _latency(http: Any, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        assert http.get("gradio_api/info").status_code == 200
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)


def _timed(bob: Any, seconds: float | None, work: Any = None) -> list[float]:
    """Latencies of bob's requests for ``seconds``, or while ``work()`` runs."""
    out: list[float] = []
    stop = threading.Event()
    timer = threading.Thread(target=_latency, args=(bob, stop, out))
    timer.start()
    try:
        if work is None:
            time.sleep(seconds or 0)
        else:
            work()
    finally:
        stop.set()
        timer.join()
    return out


def test_password_guessing_backs_off_without_slowing_other_users(app_server: Server) -> None:
    import httpx

    bob = session(app_server, "bob")
    before = _timed(bob, 2.0)
    found: dict[str, Any] = {}

    def attack() -> None:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:  # a parallel burst at carol, then a patient sequential guesser
            found["burst"] = list(pool.map(lambda i: httpx.post(app_server.url + "login", timeout=60, data={
                "username": "carol", "password": f"burst {i}"}).status_code, range(40)))
        found["burst_s"] = time.perf_counter() - t0
        found["sequential"] = _guess(app_server, "dave", 6)
        found["total_s"] = time.perf_counter() - t0
        found["bob_login"] = httpx.post(app_server.url + "login", timeout=60, data={
            "username": "bob", "password": USERS["bob"]}).status_code

    during = _timed(bob, None, attack)
    burst, waits = found["burst"], [w for status, w in found["sequential"] if status == 429]
    p = {name: (statistics.median(x) * 1000, max(x) * 1000) for name, x in (("before", before), ("during", during))}
    print(f"\nburst of 40 parallel wrong passwords in {found['burst_s']:.1f} s: {burst.count(400)} checked, "
          f"{burst.count(429)} throttled, {burst.count(503)} busy; 6 patient guesses took "
          f"{found['total_s'] - found['burst_s']:.1f} s, Retry-After {waits}; bob's /info latency median/max: "
          f"before {p['before'][0]:.0f}/{p['before'][1]:.0f} ms, during {p['during'][0]:.0f}/{p['during'][1]:.0f} ms "
          f"({len(during)} requests)")
    assert set(burst) <= {400, 429, 503} and burst.count(400) <= 20 and burst.count(429) >= 10
    assert len(waits) >= 3 and waits[-1] > 2 * waits[0]  # the wait grows
    assert statistics.median(during) < max(5 * statistics.median(before), 0.05)  # other users unaffected
    assert found["bob_login"] == 200  # bob signed in here before: the attack does not delay him
    for _ in range(10):  # carol waits out her backoff and gets in: no lockout
        reply = httpx.post(app_server.url + "login", timeout=60, data={"username": "carol",
                                                                      "password": USERS["carol"]})
        if reply.status_code != 429:
            break
        time.sleep(_wait_of(reply) + 0.05)
    assert reply.status_code == 200
    audit = [json.loads(x) for x in (app_server.home / "audit.log").read_text().splitlines()]
    assert {"throttled", "refused", "ok"} <= {x["outcome"] for x in audit if x["event"] == "login"}
    text = app_server.log.read_text() + (app_server.home / "audit.log").read_text()
    assert "guess" not in text and "burst" not in text and "dave" not in text and USERS["carol"] not in text
    assert "sign-in throttled: user carol, address 127.0.0.1" in text
