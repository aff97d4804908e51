"""The Deforum A1111 extension's API (`/deforum_api/...`), as the extension's own clients use it.

`POST /deforum_api/batches` takes `{"deforum_settings": {...} | [{...}], "options_overrides": {...}}`
and answers 202 `{"message": "Job(s) accepted", "batch_id", "job_ids", "notes"}`. Each settings file
is a job of its own: one that cannot be read is accepted and FAILS with the CLI's one-line message
(the native `/api/batches` refuses the whole batch instead). A job's status has the extension's
shape (DeforumJobStatus): ACCEPTED / SUCCEEDED / FAILED / CANCELLED, and the phases QUEUED,
PREPARING (checking the settings, loading), GENERATING (the frames), POST_PROCESSING (the final
video, the .srt) and DONE, each entered when the worker starts that work; `updates`,
`last_updated` and `execution_time` move with every phase and frame. `outdir` is the render folder
and `timestring` its name, so the video is `<outdir>/<timestring>.mp4` and the gen-info subtitles
`<outdir>/<timestring>.srt`, as in the extension.

Of `options_overrides` (A1111's WebUI options) the engine reads `deforum_save_gen_info_as_srt` and
`deforum_save_gen_info_as_srt_params`; the others are named in the answer's notes and the job's
`message` as ignored, and so are the settings the engine ignored in each file. What a client sent
(its settings and overrides) and where each job stands are kept in `deforum_api.json` in the job's
render folder, so they survive a restart.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.jobs import Job
from deforum_engine.studio.service import Studio

READ_OPTIONS = ("deforum_save_gen_info_as_srt", "deforum_save_gen_info_as_srt_params")
CANCELLED = "Cancelled due to user request."
STATE_FILE = "deforum_api.json"
_PHASE_OF_EVENT = {"preparing": "PREPARING", "generating": "GENERATING", "post_processing": "POST_PROCESSING"}


class DeforumBatch(BaseModel):
    deforum_settings: dict[str, Any] | list[dict[str, Any]] | None = None
    options_overrides: dict[str, Any] | None = None


@dataclass
class Track:
    """Where one job stands, as the extension counts it: its phase, and every update's time."""

    phase: str = "QUEUED"
    frames_done: int = 0
    updates: int = 0
    last_updated: float | None = None
    update_interval_time: float = 0.0

    def bump(self, now: float) -> None:
        if self.last_updated is not None:
            self.update_interval_time = now - self.last_updated
        self.last_updated, self.updates = now, self.updates + 1


class Tracker:
    """The phases of every job, fed by the worker's events; a finished job's are saved in its folder."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._lock = threading.Lock()
        self._tracks: dict[str, Track] = {}

    def on_event(self, job_id: str, event: str, detail: object) -> None:
        """The worker's listener (its thread): phases, frames done, the end."""
        with self._lock:
            track = self._tracks.setdefault(job_id, Track())
            if event in _PHASE_OF_EVENT:
                track.phase, track.frames_done = _PHASE_OF_EVENT[event], 0
            elif event == "frame":
                track.frames_done = int(detail)
            elif event == "end":
                track.phase = {"finished": "DONE", "queued": "QUEUED"}.get(str(detail), track.phase)
            track.bump(time.time())
            saved = asdict(track) if event == "end" else None
        if saved is not None:
            self._save(job_id, {"track": saved})

    def bumped(self, job: Job) -> None:
        """A change the routes made (a cancel)."""
        with self._lock:
            track = self._tracks.setdefault(job.id, self._loaded(job))
            track.bump(time.time())
            saved = asdict(track)
        self._save(job.id, {"track": saved}, job)

    def track(self, job: Job) -> Track:
        with self._lock:
            track = self._tracks.get(job.id)
            return Track(**asdict(track)) if track is not None else self._loaded(job)

    def _loaded(self, job: Job) -> Track:
        saved = read_state(job.folder).get("track")
        return Track(**saved) if isinstance(saved, dict) else Track()

    def _save(self, job_id: str, values: dict, job: Job | None = None) -> None:
        """Into the job's deforum_api.json, for jobs this API accepted (the native API's jobs have none)."""
        try:
            job = job or self.studio.jobs.get(job_id)
        except StudioError:
            return  # deleted meanwhile
        if (job.folder / STATE_FILE).is_file():
            write_state(job.folder, values)


def read_state(folder: Path) -> dict:
    path = folder / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def write_state(folder: Path, values: dict) -> None:
    if not folder.is_dir():
        return
    path = folder / STATE_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({**read_state(folder), **values}), encoding="utf-8")
    temporary.replace(path)


def split_options(overrides: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The WebUI options the engine reads (as settings), and the names of those it ignores."""
    overrides = overrides or {}
    read = {key: value for key, value in overrides.items() if key in READ_OPTIONS}
    return read, [key for key in overrides if key not in READ_OPTIONS]


def a1111_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["Deforum extension API"])
    tracker = Tracker(studio)
    studio.worker.listen(tracker.on_event)
    _batch_routes(router, studio, tracker)
    _job_routes(router, studio, tracker)
    return router


def _batch_routes(router: APIRouter, studio: Studio, tracker: Tracker) -> None:
    @router.post("/batches", status_code=202)
    def run_batch(batch: DeforumBatch):
        """Queue Deforum settings files (one object or a list), each a job; a file that cannot be read is a
        FAILED job with the reason. `notes` lists, per job, what the engine ignored."""
        documents = batch.deforum_settings
        if not documents:
            return _refusal(400, "No settings files provided. Please provide an element 'deforum_settings' of "
                                 "type list in the request JSON payload.")
        documents = documents if isinstance(documents, list) else [documents]
        options, ignored = split_options(batch.options_overrides)
        batch_id, made = studio.create_each([{**document, **options} for document in documents])
        option_note = [f"options_overrides ignored (A1111 options the engine does not have): {', '.join(ignored)}"]
        notes = {}
        for document, (job, job_notes) in zip(documents, made):
            notes[job.id] = (option_note if ignored else []) + job_notes
            write_state(job.folder, {"deforum_settings": document, "options_overrides": batch.options_overrides,
                                     "notes": notes[job.id]})
        return {"message": "Job(s) accepted", "batch_id": batch_id, "job_ids": [job.id for job, _ in made],
                "notes": notes}

    @router.get("/batches")
    def list_batches(id: str | None = Query(None, description="unused, as in the extension")) -> dict:
        """Every batch and its job ids."""
        batches: dict[str, list[str]] = {}
        for job in sorted(studio.jobs.all(), key=lambda job: job.created):
            if job.batch_id is not None:
                batches.setdefault(job.batch_id, []).append(job.id)
        return batches

    @router.get("/batches/{batch_id}")
    def get_batch(batch_id: str):
        jobs = studio.jobs.in_batch(batch_id)
        if not jobs:
            return _not_found(batch_id, f"no batch with id {batch_id!r}")
        return [status_of(studio, tracker, job) for job in jobs]

    @router.delete("/batches/{batch_id}")
    def cancel_batch(batch_id: str):
        jobs = studio.jobs.in_batch(batch_id)
        if not jobs:
            return _not_found(batch_id, f"no batch with id {batch_id!r}")
        cancelled = [job.id for job in jobs if _cancel(studio, tracker, job)]
        message = f"{len(cancelled)} job(s) cancelled."
        return {"ids": cancelled, "message": message, "message:": message}  # the extension's key has the colon


def _job_routes(router: APIRouter, studio: Studio, tracker: Tracker) -> None:
    @router.get("/jobs")
    def list_jobs() -> dict:
        return {job.id: status_of(studio, tracker, job) for job in studio.jobs.all()}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str):
        try:
            job = studio.jobs.get(job_id)
        except StudioError as error:
            return _not_found(job_id, error.message)
        return status_of(studio, tracker, job)

    @router.delete("/jobs/{job_id}")
    def cancel_job(job_id: str):
        try:
            job = studio.jobs.get(job_id)
        except StudioError:
            return _not_found(job_id, f"Job with ID {job_id} not found.")
        if _cancel(studio, tracker, job):
            return {"id": job_id, "message": "Job cancelled."}
        message = f"Job with ID {job_id} not in a cancellable state. Has it already finished?"
        return JSONResponse({"id": job_id, "message": message, "error": message}, status_code=400)


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": message}, status_code=status)


def _not_found(item_id: str, message: str) -> JSONResponse:
    return JSONResponse({"id": item_id, "status": "NOT FOUND", "message": message, "error": message}, status_code=404)


def _cancel(studio: Studio, tracker: Tracker, job: Job) -> bool:
    """Only accepted jobs (queued, or running and not yet told to stop) can be cancelled."""
    if job.status not in ("queued", "running") or studio.worker.cancel_requested(job.id):
        return False
    try:
        studio.worker.cancel(job.id)
    except StudioError:
        return False
    tracker.bumped(job)
    return True


def status_of(studio: Studio, tracker: Tracker, job: Job) -> dict:
    """A job in the extension's DeforumJobStatus shape."""
    track = tracker.track(job)
    state = read_state(job.folder)
    cancelling = job.status == "running" and studio.worker.cancel_requested(job.id)
    status = {"queued": "ACCEPTED", "running": "ACCEPTED", "finished": "SUCCEEDED", "failed": "FAILED",
              "cancelled": "CANCELLED"}[job.status]
    status = "CANCELLED" if cancelling else status
    phase = _phase(job, track)
    last = track.last_updated or job.created
    reason = CANCELLED if status == "CANCELLED" else job.error
    message = " | ".join(part for part in [reason, *state.get("notes", [])] if part) or None
    document = state.get("deforum_settings")
    return {
        "id": job.id, "status": status, "phase": phase,
        "error_type": _error_type(job, phase),
        "phase_progress": _progress(job, phase, track),
        "started_at": job.created, "last_updated": last, "execution_time": last - job.created,
        "update_interval_time": track.update_interval_time, "updates": track.updates,
        "message": message, "outdir": str(job.folder), "timestring": job.folder.name,
        "deforum_settings": None if document is None else [document],
        "options_overrides": state.get("options_overrides"),
    }


def _error_type(job: Job, phase: str) -> str:
    """The extension's: a settings problem is TERMINAL, a failure while generating RETRYABLE."""
    if job.status != "failed":
        return "NONE"
    return "RETRYABLE" if phase in ("GENERATING", "POST_PROCESSING") else "TERMINAL"


def _phase(job: Job, track: Track) -> str:
    if job.status == "finished":
        return "DONE"
    if job.status == "queued":
        return "QUEUED"
    if job.status == "running":
        return track.phase if track.phase != "QUEUED" else "PREPARING"
    if job.status == "failed" and track.phase == "QUEUED":
        return "PREPARING"  # a settings file that could not be read fails as it is prepared
    return track.phase  # failed or cancelled: the phase it stopped in


def _progress(job: Job, phase: str, track: Track) -> float:
    if phase == "DONE":
        return 1.0
    if phase == "GENERATING":
        return min(track.frames_done / max(job.frames, 1), 1.0)
    return 0.0
