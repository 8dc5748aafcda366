"""The results database on a real PostgreSQL server (started by the fixture from ``make system-deps``'s binaries).

The fixture runs ``initdb`` into a private temporary folder and starts ``postgres`` on a free loopback port with
trust authentication, as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root),
and stops it afterwards. It skips cleanly when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batch_support import read_table, reference_table, shared_archive, without_time

from inference.batch import score_cli


@pytest.fixture(scope="module")
def batch_archive(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_archive(tiny_run, tmp_path_factory)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--"] if owner else []


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A running PostgreSQL server for this module; its SQLAlchemy URL."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (make system-deps)")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        owner = "postgres"
    root = Path(tempfile.mkdtemp(prefix="vfrisk-pg-"))
    if owner:
        shutil.chown(root, owner)
    data, port = root / "data", _free_port()
    run = _as_owner(owner)
    subprocess.run([*run, initdb, "-D", str(data), "-A", "trust", "-U", "vfrisk", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options,
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://vfrisk@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], check=False,
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.system
def test_postgres_store_gives_the_sqlite_table_and_resumes(batch_archive: Path, scoring_bundle: Path,
                                                           postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    reference, _ = reference_table(batch_archive, scoring_bundle)
    out = tmp_path / "pg.parquet"
    first = score_cli(batch_archive, batch_archive / "manifest.csv", out, "local", 2, scoring_bundle, postgres_url,
                      None)
    assert first["database"].startswith("postgresql+psycopg://vfrisk@127.0.0.1")
    assert not out.with_suffix(".sqlite").exists()
    rows = read_table(out)
    assert [r["status"] for r in rows] == [r["status"] for r in reference]
    assert [r["probability"] for r in rows] == [float(r["probability"]) if r["probability"] else None
                                                for r in reference]
    assert [r["error"] for r in rows] == [r["error"] for r in reference]
    again = score_cli(batch_archive, batch_archive / "manifest.csv", out, "local", 2, scoring_bundle, postgres_url,
                      None)
    assert again["this_run"]["skipped_already_ok"] == first["counts"]["ok"]
    assert without_time(read_table(out)) == without_time(rows)
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        n = conn.execute(text("select count(*) from vfrisk_results where job = :j"), {"j": str(out.resolve())})
        assert n.scalar_one() == len(reference)
    engine.dispose()
