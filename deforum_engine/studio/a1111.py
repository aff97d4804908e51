"""The Deforum A1111 extension's API shape (`/deforum_api/...`), so scripts written for it drive the studio.

`POST /deforum_api/batches` takes `{"deforum_settings": {...} | [{...}], "options_overrides": {...}}`
and answers 202 `{"message", "batch_id", "job_ids"}`; jobs and batches are read and cancelled under
`/deforum_api/jobs/{id}` and `/deforum_api/batches/{id}`, with the extension's status names
(ACCEPTED / SUCCEEDED / FAILED / CANCELLED) and phases (QUEUED, GENERATING, DONE). The settings
are Deforum settings files, imported as `deforum-engine render` imports them. `options_overrides`
(A1111's own options, such as its checkpoint) have no meaning here and are ignored.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.jobs import Job
from deforum_engine.studio.service import Studio

_STATUS = {"queued": ("ACCEPTED", "QUEUED"), "running": ("ACCEPTED", "GENERATING"),
           "finished": ("SUCCEEDED", "DONE"), "failed": ("FAILED", "DONE"), "cancelled": ("CANCELLED", "DONE")}


class DeforumBatch(BaseModel):
    deforum_settings: dict[str, Any] | list[dict[str, Any]] | None = None
    options_overrides: dict[str, Any] | None = None


def a1111_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["Deforum extension API"])

    @router.post("/batches", status_code=202)
    def run_batch(batch: DeforumBatch) -> dict:
        """Queue Deforum settings files (one object or a list), as the A1111 extension's API does."""
        documents = batch.deforum_settings
        if not documents:
            raise StudioError(400, "no settings files: give `deforum_settings`, a settings object or a list of them")
        documents = documents if isinstance(documents, list) else [documents]
        batch_id, jobs = studio.create_batch([(None, document) for document in documents])
        return {"message": "Job(s) accepted", "batch_id": batch_id, "job_ids": [job.id for job in jobs]}

    @router.get("/batches/{batch_id}")
    def get_batch(batch_id: str) -> list[dict]:
        jobs = studio.jobs.in_batch(batch_id)
        if not jobs:
            raise StudioError(404, f"no batch with id {batch_id!r}")
        return [_status(studio, job) for job in jobs]

    @router.delete("/batches/{batch_id}")
    def cancel_batch(batch_id: str) -> dict:
        jobs = studio.jobs.in_batch(batch_id)
        if not jobs:
            raise StudioError(404, f"no batch with id {batch_id!r}")
        cancelled = [job.id for job in jobs if _try_cancel(studio, job.id)]
        return {"ids": cancelled, "message": f"{len(cancelled)} job(s) cancelled."}

    @router.get("/jobs")
    def list_jobs() -> dict:
        return {job.id: _status(studio, job) for job in studio.jobs.all()}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        return _status(studio, studio.jobs.get(job_id))

    @router.delete("/jobs/{job_id}")
    def cancel_job(job_id: str):
        studio.jobs.get(job_id)
        if _try_cancel(studio, job_id):
            return {"id": job_id, "message": "Job cancelled."}
        return JSONResponse({"id": job_id, "error": f"job {job_id} is not in a cancellable state; has it finished?"},
                            status_code=400)

    return router


def _try_cancel(studio: Studio, job_id: str) -> bool:
    try:
        studio.worker.cancel(job_id)
        return True
    except StudioError:
        return False


def _status(studio: Studio, job: Job) -> dict:
    """A job in the extension's DeforumJobStatus shape."""
    described = studio.describe(job)
    status, phase = _STATUS[job.status]
    last = job.finished or job.started or job.created
    return {
        "id": job.id, "status": status, "phase": phase,
        "error_type": "TERMINAL" if job.status == "failed" else "NONE",
        "phase_progress": 1.0 if phase == "DONE" else described["frames_done"] / max(job.frames, 1),
        "started_at": job.started or job.created, "last_updated": last,
        "execution_time": last - (job.started or job.created), "update_interval_time": 0.0, "updates": 0,
        "message": job.error, "outdir": str(job.folder), "timestring": None,
        "deforum_settings": None, "options_overrides": None,
    }
