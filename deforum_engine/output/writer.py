"""FrameWriter: each finished frame written atomically, streamed to the video, the resume state committed (threaded)."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np

from deforum_engine.errors import RenderCancelled, RenderError, SettingsError
from deforum_engine.output.atomic import _ClosesOnExit, _replace_atomic, _sync_filesystem, encode_png
from deforum_engine.output.folder import RenderFolder
from deforum_engine.output.resume import ResumeState, save_resume_state
from deforum_engine.output.video import VideoWriter

_STOP = object()


class FrameWriter(_ClosesOnExit):
    """Writes frames (PNG, then video, then resume state) on one background thread.

    Each frame lands atomically (temp file, rename), so a killed render never leaves half a frame.
    The resume state is committed in groups: the frames written since the last commit are synced
    to disk, then the newest state is saved, at most every `commit_seconds` (and whenever the
    writer has caught up with the loop, and at the end). A state therefore never points past a
    frame that is not on disk; a resume after a crash redoes at most a second or so of frames.

    put() copies its arguments and returns at once unless `queue_size` frames are waiting, so
    memory stays flat. An error in the thread is raised by the next put() or by close() as a
    RenderError naming the file; the frames before it stay on disk. The writer owns `video`:
    close() closes it, abort() aborts it.
    """

    def __init__(self, folder: RenderFolder, video: VideoWriter | None = None,
                 queue_size: int = 8, png_compression: int | None = None, commit_seconds: float = 1.0):
        self.folder = folder
        self.video = video
        self.png_compression = png_compression
        self.commit_seconds = commit_seconds
        self._uncommitted: list[Path] = []
        self._pending_state: ResumeState | None = None
        self._last_commit = time.monotonic()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: RenderError | None = None
        self._stopping = threading.Event()
        self._next_index: int | None = None
        self._finished = False
        try:
            folder.ensure_writable()
        except SettingsError:
            if video is not None:
                video.abort()
            raise
        self._thread = threading.Thread(target=self._run, name="frame-writer", daemon=True)
        self._thread.start()

    def put(self, index: int, image: np.ndarray, state: ResumeState | None,
            depth_map: np.ndarray | None = None) -> None:
        """Queue frame `index` and the state to save once it is on disk (None: keep the last), and
        the frame's depth map (grey H x W uint8, saved in depth/ before the frame) when one is given."""
        self._raise_error()
        if self._finished:
            raise RuntimeError("FrameWriter.put() after close() or abort()")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame {index} must be H x W x 3 uint8, "
                             f"got {image.shape} {image.dtype}")
        if self._next_index is not None and index != self._next_index:
            raise ValueError(f"frames must be put in order: expected {self._next_index}, "
                             f"got {index}")
        if state is not None and state.next_frame > index + 1:
            raise ValueError(f"the state saved with frame {index} says next_frame="
                             f"{state.next_frame}, past a frame not yet written")
        self._next_index = index + 1
        self._queue.put((index, image.copy(), None if state is None else state.copy(),
                         None if depth_map is None else depth_map.copy()))

    def close(self) -> None:
        """Write everything queued, finish the video, and raise any error from the thread."""
        if self._finished:
            return
        self._finish()
        self._raise_error()
        if self.video is not None:
            self.video.close()

    def abort(self) -> None:
        """Stop soon, keeping what is written: the frame in progress ends, queued frames are
        dropped (a resume writes them again), the video is abandoned. Never raises."""
        if self._finished:
            return
        self._stopping.set()
        self._finish()
        if self.video is not None:
            self.video.abort()

    def stop(self) -> None:
        """Write and commit every queued frame, then abandon the video (a cancelled render: its
        folder resumes from the last frame it was given)."""
        if self._finished:
            return
        self._finish()
        if self.video is not None:
            self.video.abort()
        self._raise_error()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and issubclass(exc_type, RenderCancelled):
            self.stop()
        else:
            super().__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        self._finished = True
        self._queue.put(_STOP)
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:  # kept: the thread writes nothing more after an error
            if self.video is not None:
                self.video.abort()
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            if self._error is None and not self._stopping.is_set():
                self._write(*item)
                caught_up = self._queue.empty()
                if caught_up or time.monotonic() - self._last_commit >= self.commit_seconds:
                    self._commit()
        if self._error is None:
            self._commit()  # the end, or an abort: keep everything that is whole on disk

    def _commit(self) -> None:
        """Sync the frames written since the last commit, then save the newest state."""
        if self._pending_state is None:
            return
        try:
            _sync_filesystem(self.folder.frames_dir, self._uncommitted)
            save_resume_state(self.folder, self._pending_state)
        except Exception as err:  # handed to the caller's thread, which raises it
            self._error = RenderError(f"could not save the resume state {self.folder.resume_path}: {err}")
            self._error.__cause__ = err
            return
        self._uncommitted, self._pending_state = [], None
        self._last_commit = time.monotonic()

    def _write(self, index: int, image: np.ndarray, state: ResumeState | None, depth_map: np.ndarray | None) -> None:
        target = self.folder.frame_path(index)
        try:
            if depth_map is not None:
                target = self.folder.depth_path(index)
                target.parent.mkdir(exist_ok=True)
                _replace_atomic(target, encode_png(depth_map, self.png_compression))
                self._uncommitted.append(target)
                target = self.folder.frame_path(index)
            _replace_atomic(target, encode_png(image, self.png_compression))
            self._uncommitted.append(target)
            if self.video is not None:
                target = self.video.path
                self.video.write(image)
            if state is not None:
                self._pending_state = state
        except Exception as err:  # handed to the caller's thread, which raises it
            self._commit()  # the frames before this one stay resumable
            self._error = RenderError(
                f"could not save frame {index} ({target}): {err}\n"
                f"Frames before it are kept in {self.folder.root}; fix the cause and run the "
                "render again to resume.")
            self._error.__cause__ = err

