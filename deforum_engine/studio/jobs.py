"""The job table: which render folders the studio started, and where each one stands.

A job is one render folder under `DATA/renders/`. Its status is one of queued, running, finished,
failed (with the error message the CLI would print) or cancelled. Everything else (settings,
frames, the video) lives in the render folder itself. Status changes are single conditional
UPDATEs, so two threads can never both claim a job or cancel one that has just started.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from deforum_engine.errors import SettingsError
from deforum_engine.output.folder import RenderFolder
from deforum_engine.studio.database import Database
from deforum_engine.studio.errors import StudioError

JOB_ID = re.compile(r"^[0-9a-f]{12}$")
STOPPED = ("failed", "cancelled")
DONE = ("finished", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    folder: Path
    status: str
    error: str | None
    preview: bool
    frames: int
    batch_id: str | None
    created: float
    started: float | None
    finished: float | None


class JobStore:
    """Jobs in the SQLite table, each tied to one folder under `renders_dir`."""

    def __init__(self, database: Database, renders_dir: Path):
        self.database, self.renders_dir = database, renders_dir

    def new_folder(self, name: str) -> tuple[str, Path]:
        """A fresh job id and its folder `<name>-<id>` (not created yet)."""
        job_id = secrets.token_hex(6)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "render"
        return job_id, self.renders_dir / f"{slug}-{job_id}"

    def add(self, job_id: str, name: str, folder: Path, preview: bool, frames: int, batch_id: str | None = None,
            failed: str | None = None) -> Job:
        """A queued job; or, with `failed` (the message), one that failed before it could be queued."""
        now = time.time()
        self.database.execute(
            "INSERT INTO jobs (id, name, folder, status, error, preview, frames, batch_id, created, finished) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, name, folder.name, "queued" if failed is None else "failed", failed, int(preview), frames,
             batch_id, now, None if failed is None else now))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        rows = self.database.rows("SELECT * FROM jobs WHERE id = ?", (job_id,)) if JOB_ID.match(job_id) else []
        if not rows:
            raise StudioError(404, f"no job with id {job_id!r}")
        return self._job(rows[0])

    def all(self, limit: int = 500) -> list[Job]:
        """The newest jobs first."""
        return [self._job(row) for row in self.database.rows("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]

    def in_batch(self, batch_id: str) -> list[Job]:
        return [self._job(row) for row in self.database.rows(
            "SELECT * FROM jobs WHERE batch_id = ? ORDER BY created", (batch_id,))]

    def claim_next(self) -> Job | None:
        """The oldest queued job, marked running; None when the queue is empty."""
        while True:
            rows = self.database.rows("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created LIMIT 1")
            if not rows:
                return None
            if self.move(rows[0]["id"], ("queued",), "running", started=time.time()):
                return self.get(rows[0]["id"])

    def move(self, job_id: str, allowed: tuple[str, ...], status: str, error: str | None = None,
             started: float | None = None) -> bool:
        """Set the status if the job is in one of `allowed`; False when it is not (nothing changes)."""
        marks = ", ".join("?" * len(allowed))
        finished = time.time() if status in DONE else None
        return self.database.execute(
            f"UPDATE jobs SET status = ?, error = ?, finished = ?, started = COALESCE(?, started) "
            f"WHERE id = ? AND status IN ({marks})",
            (status, error, finished, started, job_id, *allowed)) == 1

    def requeue_interrupted(self) -> list[str]:
        """Jobs left running by a server that stopped: queued again, so they resume from their last frame."""
        ids = [row["id"] for row in self.database.rows("SELECT id FROM jobs WHERE status = 'running'")]
        for job_id in ids:
            self.move(job_id, ("running",), "queued")
        return ids

    def adopt_folders(self) -> list[str]:
        """Render folders under `renders_dir` that no job names (a job table started afresh, a folder copied
        in): each becomes a job again, finished, or cancelled (resumable), or failed with the reason."""
        known = {row["folder"] for row in self.database.rows("SELECT folder FROM jobs")}
        adopted = []
        for folder in sorted(self.renders_dir.iterdir()) if self.renders_dir.is_dir() else []:
            if folder.name in known or folder.is_symlink() or not (folder / "settings.json").is_file():
                continue
            found = re.search(r"-([0-9a-f]{12})$", folder.name)
            job_id = found.group(1) if found and not self._exists(found.group(1)) else secrets.token_hex(6)
            status, error, frames, preview = _found_on_disk(folder)
            self.database.execute(
                "INSERT INTO jobs (id, name, folder, status, error, preview, frames, created, finished) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, folder.name.removesuffix(f"-{job_id}") or folder.name, folder.name, status, error,
                 int(preview), frames, folder.stat().st_mtime, time.time()))
            adopted.append(folder.name)
        return adopted

    def _exists(self, job_id: str) -> bool:
        return bool(self.database.rows("SELECT 1 FROM jobs WHERE id = ?", (job_id,)))

    def remove(self, job_id: str, allowed: tuple[str, ...]) -> bool:
        marks = ", ".join("?" * len(allowed))
        return self.database.execute(f"DELETE FROM jobs WHERE id = ? AND status IN ({marks})", (job_id, *allowed)) == 1

    def files_in_use(self, names: set[str]) -> set[str]:
        """Which of these file names the settings of a job that may still render (anything but finished) name."""
        used = set()
        for row in self.database.rows("SELECT folder FROM jobs WHERE status != 'finished'"):
            try:
                text = (self.renders_dir / row["folder"] / "settings.json").read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            used.update(name for name in names if name in text)
        return used

    def queued_count(self) -> int:
        return self.database.rows("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")[0]["n"]

    def _job(self, row) -> Job:
        return Job(row["id"], row["name"], self.renders_dir / row["folder"], row["status"], row["error"],
                   bool(row["preview"]), row["frames"], row["batch_id"], row["created"], row["started"],
                   row["finished"])


def _found_on_disk(folder: Path) -> tuple[str, str | None, int, bool]:
    """(status, error, frames, preview) of a render folder found without a job."""
    render = RenderFolder(folder)
    try:
        info, frames = render.info(), int(render.saved_settings().max_frames)
    except (SettingsError, ValueError) as error:
        return "failed", f"found on disk, unreadable: {error}", 0, True
    if info.get("status") == "finished":
        return "finished", None, frames, bool(info.get("preview", True))
    return "cancelled", "found on disk when the job table was started again; resume it to continue", frames, \
        bool(info.get("preview", True))
