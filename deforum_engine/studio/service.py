"""The studio's operations, under the routes: create jobs from documents, describe them, read their frames.

`Studio` owns the parts (database, uploads, jobs, worker, preview clips) for one data folder. The
routes in app.py only translate HTTP to these calls and back.
"""
from __future__ import annotations

import glob
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deforum_engine.config.settings import Settings, save_settings
from deforum_engine.errors import SettingsError
from deforum_engine.limits import Limits
from deforum_engine.output.atomic import read_frame
from deforum_engine.output.folder import RenderFolder
from deforum_engine.studio.config import StudioConfig
from deforum_engine.studio.database import Database
from deforum_engine.studio.documents import Document, read_document, server_settings
from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.jobs import DONE, STOPPED, Job, JobStore
from deforum_engine.studio.previews import PresetPreviews
from deforum_engine.studio.uploads import UploadStore
from deforum_engine.studio.worker import RenderWorker, encode_frame


class Studio:
    """One studio over one data folder."""

    def __init__(self, config: StudioConfig):
        self.config = config = config.prepare()
        self.database = Database(config.database)
        self.uploads = UploadStore(self.database, config.uploads_dir)
        self.jobs = JobStore(self.database, config.renders_dir)
        self.notices = [self.database.recovered] if self.database.recovered else []
        adopted = self.jobs.adopt_folders()
        if adopted:
            self.notices.append(f"{len(adopted)} render folder(s) in {config.renders_dir} had no job; they are listed "
                                f"again (finished, or cancelled to resume): {', '.join(adopted[:5])}"
                                + (" ..." if len(adopted) > 5 else ""))
        self.worker = RenderWorker(self.jobs, self.uploads, config)
        self.previews = PresetPreviews(config.previews_dir)
        self.server = server_settings(None if config.preview_only else config.model, config.ip_adapter,
                                      config.controlnet_models, config.rife_model, config.upscale_model)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.database.close()

    # --- creating jobs -------------------------------------------------------------------------

    def create(self, document: Any, preview: bool | None = None) -> tuple[Job, list[str]]:
        """Check one settings document and queue its render; returns the job and notes for the user."""
        preview = self._preview(preview)
        checked = read_document(document, self.uploads, self.server, preview=preview)
        return self._queue(checked.settings, preview), checked.notes

    def create_batch(self, documents: list[tuple[str | None, Any]], preview: bool | None = None) -> tuple[str, list[Job]]:
        """Check every document first; queue them all, or none when any is invalid (each problem is listed)."""
        preview = self._preview(preview)
        if not documents:
            raise StudioError(400, "a batch needs at least one settings document")
        limit = Limits.from_env().max_jobs
        if len(documents) > limit:
            raise StudioError(422, f"a batch of {len(documents):,} jobs is more than the limit of {limit:,}; send it "
                                   f"in parts, or start the studio with --max-batch-jobs to raise it")
        checked: list[Document] = []
        problems = []
        for number, (name, document) in enumerate(documents, start=1):
            source = f"document {number}" + (f" ({name})" if name else "")
            try:
                checked.append(read_document(document, self.uploads, self.server, source, preview))
            except StudioError as error:
                problems.append((error.status, error.message))
            except SettingsError as error:
                problems.append((422, str(error)))
        if problems:  # the first problem's status, every problem's message
            raise StudioError(problems[0][0], "; ".join(message for _, message in problems))
        batch_id = secrets.token_hex(6)
        return batch_id, [self._queue(document.settings, preview, batch_id) for document in checked]

    def create_each(self, documents: list[Any], preview: bool | None = None) -> tuple[str, list[tuple[Job, list[str]]]]:
        """Queue each document on its own (the /deforum_api's way): one that cannot be read becomes a failed
        job holding the one-line message, and the others are queued. Returns (job, notes) pairs in order."""
        preview = self._preview(preview)
        batch_id = secrets.token_hex(6)
        made = []
        for number, document in enumerate(documents, start=1):
            try:
                checked = read_document(document, self.uploads, self.server, f"document {number}", preview)
            except StudioError as error:
                made.append((self._failed(error.message, preview, batch_id), []))
            except SettingsError as error:
                made.append((self._failed(str(error), preview, batch_id), []))
            else:
                made.append((self._queue(checked.settings, preview, batch_id), checked.notes))
        return batch_id, made

    def _failed(self, message: str, preview: bool, batch_id: str) -> Job:
        """A job for a document that could not be read: failed from the start, with an empty folder."""
        job_id, folder = self.jobs.new_folder("invalid")
        folder.mkdir(parents=True)
        return self.jobs.add(job_id, "invalid", folder, preview, 0, batch_id, failed=message)

    def _preview(self, requested: bool | None) -> bool:
        if self.config.preview_only:
            if requested is False:
                raise StudioError(409, "this studio was started with --preview (no model): it renders motion "
                                       "previews only; start it with --model to diffuse frames")
            return True
        return bool(requested)

    def _queue(self, settings: Settings, preview: bool, batch_id: str | None = None) -> Job:
        """A new render folder holding the resolved settings, and its job in the queue."""
        name = settings.name or "render"
        job_id, folder = self.jobs.new_folder(name)
        folder.mkdir(parents=True)
        save_settings(settings.model_copy(update={"name": name}), RenderFolder(folder).settings_path)
        job = self.jobs.add(job_id, name, folder, preview, int(settings.max_frames), batch_id)
        self.worker.wake()
        return job

    # --- reading jobs --------------------------------------------------------------------------

    def describe(self, job: Job) -> dict[str, Any]:
        """A job's status as the API shows it: state, frames done, frames/s, time left, links."""
        live = self.worker.live(job.id)
        if live is not None:
            progress = live.snapshot()
        else:
            done = job.frames if job.status == "finished" else len(RenderFolder(job.folder).frame_indices())
            progress = {"frames_done": done, "fps": None, "seconds_left": None,
                        "latest_frame": done - 1 if done else None, "first_frame_seconds": None}
        base = f"/api/jobs/{job.id}"
        video = RenderFolder(job.folder).video_path
        links = {"self": base, "events": f"{base}/events", "settings": f"{base}/settings",
                 "frames_zip": f"{base}/frames.zip", "latest_frame": f"{base}/frames/latest"}
        extra = []
        if job.status == "finished" and video.is_file():
            links["video"] = f"{base}/video"
            extra = [{"name": label, "file": path.name, "url": f"{base}/videos/{path.name}"}
                     for label, path in extra_videos(job.folder)]
        return {
            "id": job.id, "name": job.name, "status": job.status, "error": job.error, "preview": job.preview,
            "frames": job.frames, **progress, "extra_videos": extra, "cancelling": self.worker.cancel_requested(job.id),
            "resumable": job.status in STOPPED, "batch_id": job.batch_id, "folder": str(job.folder),
            "created": job.created, "started": job.started, "finished": job.finished, "links": links,
        }

    def frame(self, job: Job, index: int | None, fmt: str = "png") -> Path | bytes:
        """Frame `index` (None: the newest): the PNG file on disk, or the bytes of the frame just rendered
        (or of a stored frame in JPEG)."""
        folder = RenderFolder(job.folder)
        live = self.worker.live(job.id)
        latest = live.latest_encoded(fmt) if live is not None else None
        if latest is not None and index in (None, latest[0]):
            return latest[1]
        if index is None:
            indices = folder.frame_indices()
            if not indices:
                raise StudioError(404, f"job {job.id} has no frames yet")
            index = indices[-1]
        path = folder.frame_path(index)
        if index < 0 or not plain_file_in(path, job.folder):
            raise StudioError(404, f"job {job.id} has no frame {index} (yet); it has frames 0 to "
                                   f"{len(folder.frame_indices()) - 1}")
        return path if fmt == "png" else encode_frame(read_frame(path), fmt)

    def video(self, job: Job) -> Path:
        path = RenderFolder(job.folder).video_path
        if job.status != "finished" or not plain_file_in(path, job.folder):
            raise StudioError(409 if job.status not in DONE else 404,
                              f"job {job.id} is {job.status}; its video is written when the render finishes")
        return path

    def extra_video(self, job: Job, name: str) -> Path:
        """One of the videos made after the render (upscaled, interpolated), by file name."""
        for _, path in extra_videos(job.folder) if job.status == "finished" else ():
            if path.name == name:
                return path
        raise StudioError(404, f"job {job.id} has no video {name[:80]!r}; its videos after the render are listed "
                               "in its status (`extra_videos`)")

    def settings_file(self, job: Job) -> Path:
        path = RenderFolder(job.folder).settings_path
        if not plain_file_in(path, job.folder):
            raise StudioError(404, f"job {job.id} has no settings file")
        return path


class _Chunks:
    """A write-only file for zipfile that hands out what was written so far."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_frames(folder: Path) -> Iterator[bytes]:
    """The frames on disk as a zip, streamed one frame at a time (PNG is compressed already: stored)."""
    render = RenderFolder(folder)
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in render.frame_indices():
            path = render.frame_path(index)
            if plain_file_in(path, folder):  # a symlink put in the folder is never followed
                archive.write(path, f"{folder.name}/{index:06d}.png")
                yield sink.take()
    yield sink.take()


EXTRA_VIDEOS = ("_Upscaled_", "_RIFE_")  # post/ names them <name>_Upscaled_x2.mp4, <name>_RIFE_x2.mp4


def extra_videos(folder: Path) -> list[tuple[str, Path]]:
    """The videos post-processing made beside the render's (upscaled, then interpolated), with labels
    such as "RIFE x2 upscaled"; only plain files inside the folder."""
    name = RenderFolder(folder).video_path.stem
    found = [path for kind in EXTRA_VIDEOS for path in sorted(folder.glob(f"{glob.escape(name)}{kind}*.mp4"))]
    return [(path.stem.removeprefix(f"{name}_").replace("_", " "), path) for path in found
            if plain_file_in(path, folder)]


def plain_file_in(path: Path, folder: Path) -> bool:
    """True for a plain file (no symlink on the way) inside `folder`: what the studio may serve from a render."""
    if folder.is_symlink() or path.is_symlink() or not path.is_file():
        return False
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return not any(part.is_symlink() for part in path.parents if part != folder and folder in part.parents)
