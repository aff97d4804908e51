"""The studio's SQLite file: the job table and the upload table, one connection behind one lock.

sqlite3 is in the standard library and keeps everything in one file under the data folder. The
server has one writer process; WAL mode lets a reader (a `sqlite3` shell) look in at any time.
Every statement commits at once, so a killed server loses nothing that it had answered for.
"""
from __future__ import annotations

import sqlite3
import threading
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
    """A thread-safe wrapper of one sqlite3 connection: `execute` writes, `rows` reads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")  # a job the API has answered for survives power loss
        self._connection.executescript(SCHEMA)

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
