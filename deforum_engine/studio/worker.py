"""One render at a time: the queue worker thread, and the live progress of the render it runs.

The worker claims the oldest queued job and renders its folder with the engine's `render` (a new
folder) or `resume` (a folder with frames), passing a cancel event and an `on_frame` callback that
feeds `LiveProgress`. With a model, one backend per job shares the pipelines the engine caches per
process, so the model loads once (at start-up) and stays. A server stopping mid-render cancels it
and puts the job back in the queue; the next start resumes it from its last frame, and so does a
start after the server was killed (its job is still marked running).
"""
from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deforum_engine.backends import make_backend
from deforum_engine.backends.base import Backend
from deforum_engine.config.settings import Settings, validate_settings
from deforum_engine.errors import RenderCancelled, RenderError, SettingsError
from deforum_engine.frame.images import load_image
from deforum_engine.output.atomic import encode_png
from deforum_engine.output.folder import RenderFolder
from deforum_engine.rendering.recipe import render_or_resume
from deforum_engine.studio.config import StudioConfig
from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.jobs import DONE, STOPPED, Job, JobStore
from deforum_engine.studio.uploads import UploadStore

log = logging.getLogger(__name__)
SWEEP_EVERY = 600.0  # seconds between looks for expired uploads
RATE_WINDOW = 30  # frames/s is measured over the last this-many frames
# A job's events for listeners (the /deforum_api's phases): (job id, event, detail). Events: "preparing",
# "generating", "post_processing" (each when that work starts), "frame" (detail: frames done), "end" (detail: status).
JobListener = Callable[[str, str, object], None]


class LiveProgress:
    """The frames of the running render as they arrive (called from the render's threads)."""

    def __init__(self, total: int, done: int = 0):
        self.total = total
        self._done_before = done  # a resumed render's frames from before
        self.started = time.monotonic()
        self.first_frame_seconds: float | None = None
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=RATE_WINDOW)
        self._latest: tuple[int, np.ndarray] | None = None
        self._encoded: dict[str, tuple[int, bytes]] = {}

    def on_frame(self, index: int, image: np.ndarray) -> None:
        """The engine's per-frame callback; returns None (the stored frame is the rendered one)."""
        now = time.monotonic()
        with self._lock:
            if self.first_frame_seconds is None:
                self.first_frame_seconds = now - self.started
            self._times.append(now)
            self._latest = (index, image.copy())

    def latest_index(self) -> int | None:
        with self._lock:
            return self._latest[0] if self._latest else None

    def snapshot(self) -> dict:
        """frames_done, fps and seconds_left, as the status shows them."""
        with self._lock:
            latest = self._latest[0] if self._latest else None
            times = list(self._times)
        done = latest + 1 if latest is not None else self._done_before
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        left = (self.total - done) / fps if fps else None
        return {"frames_done": done, "fps": None if fps is None else round(fps, 2),
                "seconds_left": None if left is None else round(left, 1),
                "latest_frame": latest,
                "first_frame_seconds": None if self.first_frame_seconds is None else round(self.first_frame_seconds, 3)}

    def latest_encoded(self, fmt: str) -> tuple[int, bytes] | None:
        """The newest frame as PNG or JPEG bytes (encoded once per frame and format, however many ask)."""
        with self._lock:
            latest, encoded = self._latest, self._encoded.get(fmt)
        if latest is None:
            return None
        if encoded is None or encoded[0] != latest[0]:
            encoded = (latest[0], encode_frame(latest[1], fmt))
            with self._lock:
                self._encoded[fmt] = encoded
        return encoded


def _frames_done(job: Job) -> int:
    """Frames a job had done before, for its progress; 0 when its resume state cannot be read (the render
    itself then fails with the message naming the file)."""
    try:
        return RenderFolder(job.folder).finished_frames() if job.folder.is_dir() else 0
    except SettingsError:
        return 0


def encode_frame(image: np.ndarray, fmt: str) -> bytes:
    """PNG (the stored frames' format) or JPEG (for watching live: a twelfth of PNG's encode time at 512 x 512)."""
    if fmt == "png":
        return encode_png(image)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RenderError(f"OpenCV could not encode a {image.shape} frame as JPEG")
    return data.tobytes()


@dataclass
class _Running:
    job_id: str
    cancel: threading.Event
    progress: LiveProgress


class RenderWorker:
    """The queue: one thread that renders queued jobs in order; cancel, resume and delete go through it."""

    def __init__(self, jobs: JobStore, uploads: UploadStore, config: StudioConfig):
        self.jobs, self.uploads, self.config = jobs, uploads, config
        self.model_error: str | None = None
        self.model_loaded = False
        self._lock = threading.Lock()  # claims, cancels and deletes never interleave
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: _Running | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[JobListener] = []
        self.restarts = 0
        self._next_sweep = 0.0

    # --- control, from request threads ---------------------------------------------------------

    def start(self) -> None:
        resumed = self.jobs.requeue_interrupted()
        if resumed:
            log.warning("resuming %d render(s) that were running when the server stopped: %s",
                        len(resumed), ", ".join(resumed))
        self._thread = threading.Thread(target=self._run, name="studio-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the frame in progress; a running job goes back to the queue (it resumes at the next start)."""
        self._stopping.set()
        with self._lock:
            if self._running is not None:
                self._running.cancel.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> bool:
        """Start the worker thread again if it died (it should not: see _run); True when it was restarted."""
        with self._lock:
            if self._thread is None or self.alive or self._stopping.is_set():
                return False
            self.restarts += 1
        log.error("the studio's worker thread had stopped; starting it again (restart %d)", self.restarts)
        self.start()
        return True

    def wake(self) -> None:
        self.ensure_running()
        self._wake.set()

    def listen(self, listener: JobListener) -> None:
        """Call `listener(job_id, event, detail)` on each job's events (from the worker thread)."""
        self._listeners.append(listener)

    def _tell(self, job_id: str, event: str, detail: object = None) -> None:
        for listener in self._listeners:
            listener(job_id, event, detail)

    def live(self, job_id: str) -> LiveProgress | None:
        running = self._running
        return running.progress if running is not None and running.job_id == job_id else None

    def cancel_requested(self, job_id: str) -> bool:
        running = self._running
        return running is not None and running.job_id == job_id and running.cancel.is_set()

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one stops before its next diffused frame."""
        with self._lock:
            if self.jobs.move(job_id, ("queued",), "cancelled"):
                return self.jobs.get(job_id)
            if self._running is not None and self._running.job_id == job_id:
                self._running.cancel.set()
                return self.jobs.get(job_id)
            if self.jobs.move(job_id, ("running",), "cancelled"):  # marked running, but nothing renders it
                return self.jobs.get(job_id)
            job = self.jobs.get(job_id)
        raise StudioError(409, f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")

    def resume(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; it continues from its last frame."""
        if not self.jobs.move(job_id, STOPPED, "queued"):
            job = self.jobs.get(job_id)
            raise StudioError(409, f"job {job_id} is {job.status}; only failed or cancelled jobs can be resumed")
        self.wake()
        return self.jobs.get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove a job that is not running, and its render folder."""
        with self._lock:
            job = self.jobs.get(job_id)
            if not self.jobs.remove(job_id, ("queued", *DONE)):
                raise StudioError(409, f"job {job_id} is {job.status}; cancel it before deleting it")
        if job.folder.parent == self.jobs.renders_dir and job.folder.is_dir() and not job.folder.is_symlink():
            shutil.rmtree(job.folder)

    # --- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        if not self.model_loaded and self.model_error is None:
            self._load_model()
        while not self._stopping.is_set():
            try:
                self._next_job()
            except Exception:  # noqa: BLE001 - the queue's boundary: nothing a job or the disk does stops it
                log.exception("the studio's worker hit an error between jobs; it goes on in a second")
                self._stopping.wait(1.0)

    def _next_job(self) -> None:
        """Claim the oldest queued job and render it; wait a little when there is none."""
        with self._lock:
            job = self.jobs.claim_next()
            if job is not None:
                self._running = _Running(job.id, threading.Event(), LiveProgress(job.frames, _frames_done(job)))
        if job is None:
            self._sweep_uploads()
            self._wake.wait(1.0)
            self._wake.clear()
            return
        self._tell(job.id, "preparing")
        status, error = "failed", "internal error: the render stopped unexpectedly; resume the job to continue"
        try:
            status, error = self._render(job, self._running)
        finally:  # the job never stays "running" behind a worker that goes on
            with self._lock:
                self._running = None
                self.jobs.move(job.id, ("running",), status, error)
            self._tell(job.id, "end", status)

    def _sweep_uploads(self) -> None:
        """Uploads older than the retention period that no unfinished job names are deleted (every few minutes)."""
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        older_than = now - self.config.upload_retention_days * 86400
        candidates = {row["stored"] for row in self.uploads.database.rows(
            "SELECT stored FROM uploads WHERE created < ?", (older_than,))}
        expired = self.uploads.expire(older_than, self.jobs.files_in_use(candidates)) if candidates else []
        if expired:
            log.info("deleted %d upload(s) older than %g days that no job uses", len(expired),
                     self.config.upload_retention_days)

    def _render(self, job: Job, running: _Running) -> tuple[str, str | None]:
        """Render or resume the job's folder; returns its new status and error message."""
        folder = RenderFolder(job.folder)
        hooks = {"on_frame": self._frame_hook(job.id, running.progress), "quiet": True, "cancel": running.cancel,
                 "on_phase": lambda phase: phase != "preparing" and self._tell(job.id, phase)}  # told at the claim
        try:
            if folder.status() == "finished":
                return "finished", None
            if not folder.is_render():
                return "failed", f"{folder.root}: the render folder or its settings.json is gone; delete this job"
            settings = folder.saved_settings()
            backend = None if job.preview else self._model_backend(settings)
            if backend is not None and settings.image_prompt is not None:
                self._screen(backend, settings.image_prompt)
            render_or_resume(settings, folder.root, preview=job.preview, backend=backend, **hooks)
            return "finished", None
        except RenderCancelled:
            return ("queued" if self._stopping.is_set() else "cancelled"), None
        except (SettingsError, RenderError) as error:
            return "failed", str(error)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                return "failed", (f"the disk is full ({error.filename or job.folder}): free some space, then resume "
                                  "the job; it continues from its last frame")
            log.exception("job %s failed", job.id)
            return "failed", f"{type(error).__name__}: {error}"
        except Exception as error:  # noqa: BLE001 - a job boundary: the job fails with its reason, the queue goes on
            log.exception("job %s failed", job.id)
            return "failed", f"internal error: {type(error).__name__}: {error}"

    def _screen(self, backend: Backend, image_prompt: Path) -> None:
        """The model's own safety checker on the image prompt, before the render starts (a model without
        one, e.g. SDXL, cannot screen and renders unscreened)."""
        if backend.flags_unsafe(load_image(image_prompt)):
            raise SettingsError(f"image_prompt: {self.uploads.label(image_prompt)} was flagged as NSFW by the "
                                "model's safety checker; choose another image")

    def _frame_hook(self, job_id: str, progress: LiveProgress):
        """The engine's per-frame callback: live progress, and a "frame" event for listeners."""
        if not self._listeners:
            return progress.on_frame

        def on_frame(index: int, image: np.ndarray) -> None:
            progress.on_frame(index, image)
            self._tell(job_id, "frame", index + 1)
        return on_frame

    def _model_backend(self, settings: Settings):
        return make_backend(settings, preview=False)

    def _load_model(self) -> None:
        """Load the server's model once, before the first job, so that its first frame comes quickly."""
        if self.config.preview_only:
            return
        try:
            settings = validate_settings({"model": self.config.model, "ip_adapter": self.config.ip_adapter},
                                         "serve --model")
            self._model_backend(settings).pipelines  # noqa: B018 - reading the property loads the pipelines
            self.model_loaded = True
        except (SettingsError, RenderError) as error:
            self.model_error = str(error)
            log.error("the model could not be loaded: %s", error)
