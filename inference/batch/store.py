"""The results database: one row per (job, manifest row), committed as each row completes.

SQLite by default (a file next to the output table), PostgreSQL (or any SQLAlchemy URL) by ``--db``. The
database is the journal of a run: a row is written in one transaction (delete the old version, insert the new),
so a run killed at any moment leaves every row either in its old state or in its new one, never twice. The
table file is a view of it, regenerated atomically at the end of every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, create_engine, delete, event, select
from sqlalchemy.engine import URL, Engine, make_url

TABLE = "vfrisk_results"


@dataclass(frozen=True)
class Record:
    """One stored result row (the table's result columns plus what resuming needs)."""

    key: str
    row_index: int
    status: str
    probability: float | None
    error: str
    series_instance_uid: str
    model_version: str
    model_sha256: str
    input_sha256: str
    source_fingerprint: str
    scored_at: str


_meta = MetaData()
_results = Table(
    TABLE, _meta,
    Column("job", String(1024), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("row_index", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("probability", Float(precision=53), nullable=True),
    Column("error", Text, nullable=False),
    Column("series_instance_uid", String(128), nullable=False),
    Column("model_version", String(256), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("input_sha256", String(64), nullable=False),
    Column("source_fingerprint", String(64), nullable=False),
    Column("scored_at", String(40), nullable=False),
)


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def redacted(url: str) -> str:
    """The URL without its password (for reports and logs)."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Full fsync on commit and a generous lock timeout (another process may be reading)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class ResultStore:
    """Read and write the results of one job (the absolute path of the output table)."""

    def __init__(self, url: str, job: str) -> None:
        self.url: URL = make_url(url)
        self.job = job
        self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _meta.create_all(self.engine, checkfirst=True)

    def load(self) -> dict[str, Record]:
        """Every stored row of this job, by key."""
        names = [f.name for f in fields(Record)]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*[_results.c[n] for n in names]).where(_results.c.job == self.job))
            return {row.key: Record(**{n: getattr(row, n) for n in names}) for row in rows}

    def put(self, record: Record) -> None:
        """Replace this row in one transaction (durable when this returns)."""
        with self.engine.begin() as conn:
            conn.execute(delete(_results).where((_results.c.job == self.job) & (_results.c.key == record.key)))
            conn.execute(_results.insert().values(job=self.job, **asdict(record)))

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()
