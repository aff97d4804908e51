"""The studio's routes: the page, and the HTTP API behind it (documented at /docs, /openapi.json).

Every error is JSON `{"error": "<one-line message>"}`: the CLI's message for bad settings and
files (422, or 413 / 415 for uploads), 400 for a malformed request or a document naming a server
path, 404 for an unknown id, 409 for an action the job's state does not allow.
"""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from deforum_engine.limits import MB
from deforum_engine.config.presets import list_presets
from deforum_engine.config.settings import INFLUENCE_LEVELS, Settings
from deforum_engine.config.styles import STYLE_NAMES
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.studio.a1111 import a1111_routes
from deforum_engine.studio.config import StudioConfig
from deforum_engine.studio.documents import engine_names, form_options, jobs_file_documents, schedule_curves
from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.guard import RequestGuard
from deforum_engine.studio.jobs import DONE
from deforum_engine.studio.limits import BodyLimit, unexpected_error
from deforum_engine.studio.service import Studio, zip_frames
from deforum_engine.studio.uploads import UPLOAD_KINDS

STATIC = Path(__file__).resolve().parent / "static"
FRAME_TICK = 0.02  # seconds between looks at a running job's newest frame (in memory) for its event stream
STATUS_TICK = 0.25  # seconds between looks at a job's status (the job table) for its event stream
KEEPALIVE = 15.0  # seconds between comments on an idle event stream


def create_app(config: StudioConfig) -> FastAPI:
    """The FastAPI app for one data folder; its lifespan starts and stops the render worker."""
    studio = Studio(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        studio.start()
        yield
        await run_in_threadpool(studio.stop)

    app = FastAPI(title="deforum-engine studio", lifespan=lifespan,
                  description="Make Deforum-style animations from a prompt, an image prompt and a motion preset. "
                              "Every render is an ordinary render folder that `deforum-engine resume` understands.")
    app.state.studio = studio
    _error_handlers(app)
    app.include_router(_page_routes(studio))
    app.include_router(_upload_routes(studio), prefix="/api")
    for routes in (_job_routes, _output_routes, _control_routes, _batch_routes):
        app.include_router(routes(studio), prefix="/api")
    app.include_router(a1111_routes(studio), prefix="/deforum_api")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=int(config.max_body_mb * MB))
    app.add_middleware(RequestGuard, token=config.token, api_auth=config.api_auth)
    return app


def _error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str) -> JSONResponse:
        """The one-line message (a multi-line one, e.g. ffmpeg's words, joined with ' | '); the extension's
        clients read `message`, the page reads `error`."""
        one_line = " | ".join(line.strip() for line in str(message).splitlines() if line.strip())
        extra = {"message": one_line} if request.url.path.startswith("/deforum_api") else {}
        return JSONResponse({"error": one_line, **extra}, status_code=status)

    app.add_exception_handler(StudioError, lambda request, error: answer(request, error.status, error.message))
    app.add_exception_handler(SettingsError, lambda request, error: answer(request, 422, str(error)))
    app.add_exception_handler(RenderError, lambda request, error: answer(request, 500, str(error)))
    app.add_exception_handler(HTTPException, lambda request, error: answer(request, error.status_code,
                                                                           str(error.detail)))
    app.add_exception_handler(RequestValidationError, lambda request, error: answer(
        request, 400 if any(problem.get("type") == "json_invalid" for problem in error.errors()) else 422,
        _validation_message(error)))
    app.add_exception_handler(Exception, lambda request, error: answer(request, *unexpected_error(error)))


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    errors = error.errors()
    for problem in errors[:5]:
        where = ".".join(str(part)[:60] for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    more = f"; and {len(errors) - 5} more problems" if len(errors) > 5 else ""
    return "request: " + "; ".join(problems) + more


# ----------------------------------------------------------------------------------------- page


def _page_routes(studio: Studio) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/api/health", tags=["studio"])
    def health() -> dict:
        """Whether the server is up, its mode, and how many jobs wait."""
        worker = studio.worker
        alive = worker.alive
        restarted = worker.ensure_running()
        return {"ok": True, "worker_restarted": restarted, "worker_restarts": worker.restarts, "preview_only": studio.config.preview_only,
                "model": studio.server["model"], "model_loaded": worker.model_loaded,
                "model_error": worker.model_error, "worker_alive": alive, "queued": studio.jobs.queued_count()}

    @router.get("/api/options", tags=["studio"])
    def options() -> dict:
        """What the form offers: prompt styles, motion presets, influence levels, limits and defaults."""
        defaults = Settings()
        presets = [{"name": p.name, "description": p.description, "settings": p.settings,
                    "preview": f"/api/presets/{p.name}/preview.mp4"}
                   for p in list_presets().values()]
        return {
            "styles": list(STYLE_NAMES), "presets": presets, "influence_levels": INFLUENCE_LEVELS,
            "image_prompt_modes": ["all", "style", "layout"], "init_fits": ["resize", "crop", "pad"],
            "upload_limits": {name: kind.max_bytes for name, kind in UPLOAD_KINDS.items()},
            "preview_only": studio.config.preview_only, "model": studio.server["model"],
            "defaults": {"W": defaults.W, "H": defaults.H, "max_frames": defaults.max_frames, "fps": defaults.fps,
                         "steps": defaults.steps, "seed": defaults.seed, "init_denoise": round(1 - defaults.init_strength, 2),
                         "init_fit": defaults.init_fit, "image_prompt_influence": defaults.image_prompt_influence},
            **form_options(studio.server),
        }

    @router.post("/api/plan/curves", tags=["studio"])
    def curves(document: dict[str, Any] = _DOCUMENT) -> dict:
        """The form's schedules frame by frame, as the render will use them, and each one's error."""
        return schedule_curves(document, studio.uploads, studio.server)

    @router.get("/api/presets/{name}/preview.mp4", tags=["studio"], response_class=FileResponse)
    def preset_preview(name: str, picture: str | None = Query(None)) -> FileResponse:
        """A small looping motion-preview clip of a motion preset (rendered on first request, then cached),
        on the user's picture when `picture` is the id of an uploaded init image, image prompt or input
        video (its first frame)."""
        return FileResponse(studio.previews.clip(name, _clip_picture(studio, picture)), media_type="video/mp4")

    return router


def _clip_picture(studio: Studio, upload_id: str | None) -> Path | None:
    """The upload a preset clip plays on: an init image, an image prompt or an input video."""
    if not upload_id:
        return None
    kind = studio.uploads.get(upload_id).kind
    if kind not in PICTURE_KINDS:
        raise StudioError(422, f"picture: upload {upload_id} is a {kind}, not an init image, image prompt or "
                               "input video")
    return studio.uploads.file_for(upload_id, kind)


PICTURE_KINDS = ("init_image", "image_prompt", "video_init_path")


# ----------------------------------------------------------------------------------------- uploads


def _upload_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["uploads"])

    @router.post("/uploads/{kind}", status_code=201, openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def upload(kind: str, request: Request, filename: str | None = Query(None)) -> dict:
        """Upload a file for one setting (`image_prompt`, `init_image`, `color_coherence_image`,
        `soundtrack_path`, `video_init_path`, `cn_1_vid_path` .. `cn_5_vid_path`, `mask_file`): a form
        with the field `file`, or the raw file as the body (`?filename=`). Checked as the CLI checks
        files; image prompts may be at most 5 MB. Returns the upload's id."""
        length = request.headers.get("content-length")
        stored = await studio.uploads.receive(kind, request.headers.get("content-type", ""),
                                              int(length) if length and length.isdigit() else None,
                                              request.stream(), filename)
        return stored.to_json()

    @router.get("/uploads/{upload_id}")
    def upload_info(upload_id: str) -> dict:
        return studio.uploads.get(upload_id).to_json()

    @router.get("/uploads/{upload_id}/file", response_class=FileResponse)
    def upload_file(upload_id: str) -> FileResponse:
        """The uploaded file itself (thumbnails in the page)."""
        upload = studio.uploads.get(upload_id)
        if not studio.uploads.intact(upload):
            raise StudioError(404, f"the file of upload {upload_id} ({upload.filename}) is gone")
        return FileResponse(upload.path)

    return router


# ----------------------------------------------------------------------------------------- jobs

_DOCUMENT = Body(..., examples=[{"prompts": {"0": "a lighthouse at dusk, oil painting"}, "motion_preset": "zoom_in",
                                 "max_frames": 30, "W": 256, "H": 256, "image_prompt": "<upload id>",
                                 "image_prompt_influence": "high"}])


def _job_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.post("/jobs", status_code=201)
    def create_job(document: dict[str, Any] = _DOCUMENT, preview: bool | None = Query(None)) -> dict:
        """Queue a render of one settings document (a settings file's names; Deforum's accepted).
        Files are named by upload id. `preview=true`: a motion preview (no model)."""
        job, notes = studio.create(document, preview)
        return {**studio.describe(job), "notes": notes}

    @router.post("/settings/import")
    def import_settings(document: dict[str, Any] = _DOCUMENT) -> dict:
        """A settings document with Deforum's names turned into the engine's (as `render` imports a
        Deforum file), for the page's "Load settings file"; nothing is validated or queued."""
        settings, notes = engine_names(document, "settings file")
        return {"settings": settings, "notes": notes}

    @router.get("/jobs")
    def list_jobs() -> list[dict]:
        """Every job, newest first."""
        return [studio.describe(job) for job in studio.jobs.all()]

    @router.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        """Status: queued / running / finished / failed / cancelled, frames done, frames/s, time left."""
        return studio.describe(studio.jobs.get(job_id))

    @router.get("/jobs/{job_id}/events", response_class=StreamingResponse)
    def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: `status` (as GET /jobs/{id}) when it changes, `frame` {index, url} for each
        new latest frame, and `end` when the job is finished, failed or cancelled."""
        studio.jobs.get(job_id)
        return StreamingResponse(_events(studio, job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _output_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.get("/jobs/{job_id}/frames")
    def frames(job_id: str) -> dict:
        """How many frames are on disk so far, and where the newest is."""
        status = studio.describe(studio.jobs.get(job_id))
        return {"frames_done": status["frames_done"], "frames": status["frames"], "latest": status["latest_frame"]}

    @router.get("/jobs/{job_id}/frames/latest", response_class=Response,
                responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    def latest_frame(job_id: str, format: Literal["png", "jpeg"] = "png") -> Response:
        """The newest frame, live during a render: PNG, or JPEG (quicker to make and send, for watching)."""
        return _image(studio.frame(studio.jobs.get(job_id), None, format), format)

    @router.get("/jobs/{job_id}/frames/{index}", response_class=Response,
                responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    def frame(job_id: str, index: int, format: Literal["png", "jpeg"] = "png") -> Response:
        """Frame `index` (PNG, or JPEG)."""
        return _image(studio.frame(studio.jobs.get(job_id), index, format), format)

    @router.get("/jobs/{job_id}/frames.zip", response_class=StreamingResponse)
    def frames_zip(job_id: str) -> StreamingResponse:
        """Every frame on disk, as a zip."""
        job = studio.jobs.get(job_id)
        return StreamingResponse(zip_frames(job.folder), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{job.folder.name}-frames.zip"'})

    @router.get("/jobs/{job_id}/video", response_class=FileResponse)
    def video(job_id: str) -> FileResponse:
        """The finished render's video (H.264 mp4, soundtrack muxed in)."""
        return FileResponse(studio.video(studio.jobs.get(job_id)), media_type="video/mp4")

    @router.get("/jobs/{job_id}/videos/{name}", response_class=FileResponse)
    def extra_video(job_id: str, name: str) -> FileResponse:
        """A video made after the render (upscaled or interpolated), as the job's `extra_videos` list it."""
        return FileResponse(studio.extra_video(studio.jobs.get(job_id), name), media_type="video/mp4")

    @router.get("/jobs/{job_id}/settings", response_class=FileResponse)
    def settings_file(job_id: str) -> FileResponse:
        """The render's resolved settings file: `deforum-engine render` takes it unchanged."""
        job = studio.jobs.get(job_id)
        return FileResponse(studio.settings_file(job), media_type="application/json", filename=f"{job.folder.name}.json")

    return router


def _control_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        """Cancel: a queued job at once, a running one before its next diffused frame (its frames are kept)."""
        return studio.describe(studio.worker.cancel(job_id))

    @router.post("/jobs/{job_id}/resume")
    def resume(job_id: str) -> dict:
        """Queue a failed or cancelled job again; it continues from its last frame."""
        return studio.describe(studio.worker.resume(job_id))

    @router.delete("/jobs/{job_id}", status_code=204, response_class=Response)
    def delete(job_id: str) -> Response:
        """Delete a job that is not running, with its render folder."""
        studio.worker.delete(job_id)
        return Response(status_code=204)

    return router


def _batch_routes(studio: Studio) -> APIRouter:
    router = APIRouter(tags=["batches"])

    @router.post("/batches", status_code=201)
    def create_batch(request: dict[str, Any] = Body(..., examples=[{"settings": [{"max_frames": 10}, {"max_frames": 20}]},  # noqa: B008
                                                                     {"jobs_file": "[matrix]\nseed = [1, 2]\n", "base": {"max_frames": 10}}]),
                     preview: bool | None = Query(None)) -> dict:
        """Queue several renders: `settings` (a list of documents), or `jobs_file` (the text of a TOML jobs
        file, as `deforum-engine batch` reads, with [matrix] and/or [[jobs]]) over a `base` document.
        All are checked first: one invalid document refuses the batch."""
        batch_id, jobs = studio.create_batch(_batch_documents(request), preview)
        return {"batch_id": batch_id, "jobs": [studio.describe(job) for job in jobs]}

    @router.get("/batches/{batch_id}")
    def batch(batch_id: str) -> dict:
        jobs = studio.jobs.in_batch(batch_id)
        if not jobs:
            raise StudioError(404, f"no batch with id {batch_id!r}")
        return {"batch_id": batch_id, "jobs": [studio.describe(job) for job in jobs]}

    return router


def _batch_documents(request: dict[str, Any]) -> list[tuple[str | None, Any]]:
    unknown = set(request) - {"settings", "jobs_file", "base"}
    if unknown or ("settings" in request) == ("jobs_file" in request):
        raise StudioError(400, "a batch is {\"settings\": [document, ...]} or {\"jobs_file\": \"<TOML>\", "
                               "\"base\": {document}}")
    if "settings" in request:
        if not isinstance(request["settings"], list):
            raise StudioError(400, "batch: `settings` is a list of settings documents")
        return [(None, document) for document in request["settings"]]
    base = request.get("base") or {}
    if not isinstance(request["jobs_file"], str) or not isinstance(base, dict):
        raise StudioError(400, "batch: `jobs_file` is the text of a TOML jobs file and `base` a settings document")
    return [(name, document) for name, document in jobs_file_documents(request["jobs_file"], base)]


def _image(frame: Path | bytes, fmt: str) -> Response:
    if isinstance(frame, Path):
        return FileResponse(frame, media_type="image/png")
    return Response(frame, media_type=f"image/{fmt}", headers={"Cache-Control": "no-store"})


async def _events(studio: Studio, job_id: str):
    """The event stream of one job; it ends with the job (or when the job is deleted). The newest frame
    is looked up in memory every FRAME_TICK, the status in the job table every STATUS_TICK."""
    clock = asyncio.get_running_loop().time
    last_status, last_frame, next_status, quiet_since = None, None, 0.0, clock()
    while True:
        now = clock()
        if now >= next_status:
            try:
                status = studio.describe(studio.jobs.get(job_id))
            except StudioError:
                yield _event("end", {"status": "deleted"})
                return
            if status != last_status:
                yield _event("status", status)
                last_status, quiet_since = status, now
            next_status = now + STATUS_TICK
        live = studio.worker.live(job_id)
        latest = live.latest_index() if live is not None else last_status["latest_frame"]
        if live is None and last_status["status"] == "running":
            next_status = now  # the render just ended: its final status next, not a stale frame count
        elif latest is not None and (last_frame is None or latest > last_frame):
            last_frame = latest
            # the newest frame is served from memory: a frame index the writer has not stored yet never 404s
            yield _event("frame", {"index": latest, "url": f"/api/jobs/{job_id}/frames/latest?format=jpeg&n={latest}"})
        if last_status["status"] in DONE and live is None:
            yield _event("end", {"status": last_status["status"], "error": last_status["error"]})
            return
        if now - quiet_since > KEEPALIVE:
            yield ": keep-alive\n\n"
            quiet_since = now
        await asyncio.sleep(FRAME_TICK)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
