"""The studio's SQLite file: the job table and the upload table, one connection behind one lock.

sqlite3 is in the standard library and keeps everything in one file under the data folder. The
server has one writer process; WAL mode lets a reader (a `sqlite3` shell) look in at any time.
Every statement commits at once, so a killed server loses nothing that it had answered for.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    folder TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    error TEXT,
    preview INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    batch_id TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    filename TEXT NOT NULL,
    stored TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


class Database:
    """A thread-safe wrapper of one sqlite3 connection: `execute` writes, `rows` reads.

    A file that is not a readable SQLite database (corrupt, truncated) is moved aside to
    `<name>.damaged-<time>` and a fresh one is made; `recovered` then holds the one-line notice (the
    studio registers the render folders on disk again, so no render is lost from the page)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.recovered: str | None = None
        try:
            self._connection = self._open()
        except sqlite3.DatabaseError as error:
            backup = self._set_aside()
            self.recovered = (f"{path} is not a readable SQLite database ({error}); it was moved to {backup.name} "
                              f"(keep it to recover it with `sqlite3 {backup.name} .recover`) and a fresh job table "
                              "was started; the render folders on disk are listed again")
            self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # a job the API has answered for survives power loss
            problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            connection.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def _set_aside(self) -> Path:
        backup = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, backup)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, backup.with_name(backup.name + suffix))
        return backup

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            return self._connection.execute(sql, params).rowcount

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._connection.close()
