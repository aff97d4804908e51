"""Render output: the render folder, crash-safe frame and resume-state writing, the H.264 video.

A render folder holds `frames/000000.png ...`, `settings.json`, `resume.npz` and `<name>.mp4`.
Every file is written to a temp file and renamed into place, and the resume state is saved only
after its frames are synced to disk, so a render killed at any moment resumes cleanly.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import imageio_ffmpeg
import numpy as np

from deforum_engine.errors import RenderCancelled, RenderError, SettingsError

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
_FRAME_NAME = re.compile(r"^(\d{6,})\.png$")
_NEXT_FRAME_KEY = "next_frame"
_VALUE_PREFIX = "v:"


# --- the render folder ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderFolder:
    """Paths of one render folder, plus small queries about what is in it."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @property
    def depth_dir(self) -> Path:
        """Depth maps (save_depth_maps), one PNG per frame named like the frame."""
        return self.root / "depth"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    @property
    def resume_path(self) -> Path:
        return self.root / "resume.npz"

    @property
    def video_path(self) -> Path:
        return self.root / f"{self.root.name}.mp4"

    @property
    def info_path(self) -> Path:
        return self.root / "render.json"

    def info(self) -> dict:
        """What the render recorded about itself (backend, preview, status...); {} when nothing yet."""
        if not self.info_path.is_file():
            return {}
        info = _read_record(self.info_path, "the render's record (status, backend)")
        if not isinstance(info, dict):
            raise SettingsError(f"{self.info_path}: the render's record is not a JSON object; restore it from a "
                                f"backup, or delete the folder and render again")
        return info

    def update_info(self, **values) -> None:
        """Merge `values` into render.json, atomically."""
        info = {**self.info(), **values}
        _replace_atomic(self.info_path, (json.dumps(info, indent=2) + "\n").encode())

    def status(self) -> str | None:
        """'finished', 'rendering' (running or stopped), or None when the folder holds no render."""
        return self.info().get("status", "rendering") if self.info_path.is_file() else None

    def frame_path(self, index: int) -> Path:
        return self.frames_dir / f"{index:06d}.png"

    def depth_path(self, index: int) -> Path:
        return self.depth_dir / f"{index:06d}.png"

    def frame_indices(self) -> list[int]:
        """Indices of the frame files on disk, sorted (temp files are not counted)."""
        if not self.frames_dir.is_dir():
            return []
        found = (_FRAME_NAME.match(p.name) for p in self.frames_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def is_render(self) -> bool:
        return self.settings_path.is_file()

    def finished_frames(self) -> int:
        """How many frames are done, from the resume state (0 when there is none)."""
        if not self.resume_path.is_file():
            return 0
        with _open_npz(self.resume_path) as npz:
            try:
                return int(npz[_NEXT_FRAME_KEY])
            except _NPZ_ERRORS as err:
                raise _unreadable_resume(self.resume_path, err) from err

    def read(self) -> tuple[dict, "Settings"]:
        """The render's recorded info and its resolved settings; SettingsError if it holds no render."""
        if not self.is_render() or self.status() is None:
            raise SettingsError(
                f"{self.root}: not a render folder (no settings.json / render.json); "
                "give the folder that `deforum-engine render` wrote"
            )
        return self.info(), self.saved_settings()

    def saved_settings(self) -> "Settings":
        """The resolved settings in settings.json, validated as any settings are."""
        from .settings import validate_settings

        values = _read_record(self.settings_path, "the render's settings")
        if not isinstance(values, dict):
            raise SettingsError(f"{self.settings_path}: the render's settings are not a JSON object; restore the "
                                f"file from a backup, or delete the folder and render again")
        return validate_settings(values, str(self.settings_path))

    def ensure_writable(self) -> None:
        """Create the folders and check that files can be written there."""
        for folder in (self.root, self.frames_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as err:
                raise SettingsError(
                    f"cannot write to the render folder {folder}: {err.strerror or err}. "
                    "Choose another output folder or fix its permissions."
                ) from err


def default_folder(name: str | None, preview: bool, renders_dir: Path = Path("renders")) -> RenderFolder:
    """`renders/<name>-<time>/`, with `-preview` for motion previews."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = "-preview" if preview else ""
    return RenderFolder(renders_dir / f"{name or 'render'}{label}-{stamp}")


# --- crash-safe files ----------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (power loss)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete a file if it is there (no error when its folder is gone or is a file)."""
    if path.is_file():
        path.unlink()


def _sync_filesystem(folder: Path, paths: list[Path]) -> None:
    """Make the given files durable: one syncfs(2) of their filesystem where Linux offers it,
    else one fsync per file. One call for a second's worth of frames costs far less than an
    fsync per frame."""
    libc = _libc()
    if libc is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _libc():
    """The C library when it has syncfs (Linux), else None."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "syncfs") else None


def _replace_atomic(path: Path, data: bytes) -> None:
    """Write `path` through a temp file and a rename: a reader (or a resume after a kill) sees the
    whole old file or the whole new one, never a part. Durability comes at the next commit."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _write_atomic(path: Path, write) -> None:
    """Write `path` through `write(file)` into a temp file, fsync it, rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


_FAST_PNG = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def encode_png(image: np.ndarray, compression: int | None = None) -> bytes:
    """PNG bytes of an RGB (or grey, H x W) uint8 image.

    By default: the "up" filter with Huffman-only coding, measured the fastest setting with no
    loss in size on rendered frames (12 ms at 512x512 against 16.5 ms for OpenCV's default and
    64 ms for PIL's). An explicit `compression` level uses zlib at that level instead.
    """
    image = np.ascontiguousarray(image)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = _FAST_PNG if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    ok, buf = cv2.imencode(".png", bgr, params)
    if not ok:
        raise RenderError(f"OpenCV could not encode a {image.shape} image as PNG")
    return buf.tobytes()


def read_frame(path: Path) -> np.ndarray:
    """An RGB uint8 frame read back from a PNG file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SettingsError(f"cannot read the frame {path}: it is missing or not a valid image. "
                            "Delete it and resume the render to write it again.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --- resume state --------------------------------------------------------------------------------

@dataclass
class ResumeState:
    """What the loop needs to go on after frame `next_frame - 1`.

    `arrays` holds named numpy arrays and scalars (int, float, bool, str) chosen by the loop;
    0-d arrays come back as Python scalars. Object arrays (e.g. 128-bit ints) are refused:
    store such values as arrays of uint64 words or as strings.
    """

    next_frame: int
    arrays: dict[str, np.ndarray | int | float | bool | str] = field(default_factory=dict)

    def copy(self) -> ResumeState:
        """A deep copy, so the loop may reuse its buffers once the state is queued."""
        arrays = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                  for k, v in self.arrays.items()}
        return ResumeState(int(self.next_frame), arrays)


def _state_arrays(state: ResumeState) -> dict[str, np.ndarray]:
    arrays = {_NEXT_FRAME_KEY: np.asarray(state.next_frame, dtype=np.int64)}
    for key, value in state.arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"resume state value {key!r} is not a plain array or scalar "
                            f"({type(value).__name__}); store it as numbers or a string")
        arrays[_VALUE_PREFIX + key] = array
    return arrays


def save_resume_state(folder: RenderFolder, state: ResumeState) -> None:
    """Save the state as one .npz, atomically (temp file, fsync, rename)."""
    arrays = _state_arrays(state)
    _write_atomic(folder.resume_path, lambda f: np.savez(f, **arrays))


_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _unreadable_resume(path: Path, error: Exception) -> SettingsError:
    return SettingsError(f"the resume state {path} is unreadable ({type(error).__name__}: {str(error)[:120]}); "
                         "delete it to render from the first frame (the frames on disk are kept and overwritten)")


def _open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as err:
        raise _unreadable_resume(path, err) from err


def _read_record(path: Path, what: str):
    """A JSON file the engine wrote into a render folder; damage is a SettingsError naming it and the way out."""
    from .limits import parse_json, read_text_file

    try:
        return parse_json(read_text_file(path, "render file"), str(path))
    except SettingsError as error:
        raise SettingsError(f"{error}; it holds {what}: restore it from a backup, or delete the folder and "
                            "render again") from None


def load_resume_state(folder: RenderFolder) -> ResumeState | None:
    """The saved state of a stopped render, or None when it has not saved one."""
    if not folder.resume_path.is_file():
        return None
    with _open_npz(folder.resume_path) as npz:
        try:
            arrays = {}
            for key in npz.files:
                if key.startswith(_VALUE_PREFIX):
                    array = npz[key]
                    arrays[key[len(_VALUE_PREFIX):]] = array.item() if array.ndim == 0 else array
            return ResumeState(int(npz[_NEXT_FRAME_KEY]), arrays)
        except _NPZ_ERRORS as err:  # a damaged member is only noticed when it is read
            raise _unreadable_resume(folder.resume_path, err) from err


# --- ffmpeg helpers ------------------------------------------------------------------------------

# write_frames leaves ffmpeg's stderr on our console and ignores its exit code, so ffmpeg is asked
# to copy its error messages to a report file (FFREPORT). The variable is read once, when ffmpeg
# starts; the lock keeps two writers in this process from starting with each other's file.
_FFREPORT_LOCK = threading.Lock()


def _ffreport_value(log_path: Path) -> str:
    escaped = str(log_path).replace("%", "%%")
    escaped = re.sub(r"([\\:'])", r"\\\1", escaped)
    return f"file={escaped}:level=16"


def _ffmpeg_errors(log_path: Path) -> str:
    """The error lines of an ffmpeg report (without its 'Command line' header)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    if lines and lines[0].startswith("Command line"):
        lines = lines[2:]
    return "\n".join(line for line in lines if line.strip())


def check_soundtrack(path: str | os.PathLike) -> Path:
    """The soundtrack path, once ffmpeg has decoded its first second; SettingsError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"soundtrack {path} not found; give the path of an audio file "
                            "(wav, mp3, flac, m4a ...) or leave the soundtrack out.")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
           "-map", "0:a:0", "-t", "1", "-f", "null", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise SettingsError(f"soundtrack {path} cannot be read as audio; ffmpeg says:\n"
                            f"{result.stderr.strip()}\n"
                            "Convert it to wav or mp3, or pick another file.")
    return path


def _read_meta(path: Path) -> dict:
    """ffmpeg's header information for a video file (cheap: nothing is decoded)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        return next(reader)
    finally:
        reader.close()


def probe_video(path: str | os.PathLike) -> dict:
    """frames, width, height, fps, duration, codec, pix_fmt, has_audio, audio_codec of a video."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"video {path} not found")
    try:
        meta = _read_meta(path)
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, IndexError) as err:
        raise SettingsError(f"video {path} cannot be read: {err}") from err
    width, height = meta["source_size"]
    return {
        "frames": frames, "width": width, "height": height, "fps": meta["fps"],
        "duration": meta["duration"], "codec": meta["codec"],
        "pix_fmt": meta["pix_fmt"].split("(")[0], "has_audio": "audio_codec" in meta,
        "audio_codec": meta.get("audio_codec"),
    }


class _ClosesOnExit:
    """`with` support for writers: close() when the block succeeds, abort() when it raises."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --- video ---------------------------------------------------------------------------------------

def _check_video_args(path: Path, width, height, fps, crf, preset) -> None:
    where = f"video {path}"
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise SettingsError(f"{where}: size {width}x{height} must be even (H.264 yuv420p); "
                            "W and H should be multiples of 8")
    if not fps > 0:
        raise SettingsError(f"{where}: fps must be above 0, not {fps}")
    if not 0 <= crf <= 51:
        raise SettingsError(f"{where}: crf must be 0 to 51 (18 is visually lossless), not {crf}")
    if preset not in X264_PRESETS:
        raise SettingsError(f"{where}: preset {preset!r} is not an x264 preset; "
                            f"use one of {', '.join(X264_PRESETS)}")


def _audio_length_params(fps: float, frame_count: int | None) -> list[str]:
    """ffmpeg options that fit the soundtrack to the frames: pad with silence, then cut."""
    if frame_count is None:
        return ["-af", "apad", "-shortest"]
    seconds = repr(float(frame_count / fps))
    return ["-af", f"apad=whole_dur={seconds},atrim=end={seconds}"]


class VideoWriter(_ClosesOnExit):
    """Streams RGB frames to an H.264 (yuv420p) mp4 at exactly W x H, soundtrack muxed in.

    Writes to `<stem>.partial.mp4` and renames it to `path` on a successful close(), so a stream
    cut by a crash never looks like a finished video.

    The soundtrack is padded with silence and cut so the video keeps all its frames. Give
    `frame_count` and the audio ends exactly at frame_count / fps; without it ffmpeg's
    `-shortest` cuts it, which can leave the audio up to ~0.4 s longer than the frames
    (plain `-shortest` without padding would drop frames when the audio is the shorter one).
    """

    def __init__(self, path, width: int, height: int, fps: float, crf: int = 18,
                 preset: str = "medium", audio_path=None, frame_count: int | None = None):
        self.path = Path(path)
        self.size = (int(width), int(height))
        _check_video_args(self.path, width, height, fps, crf, preset)
        output_params = ["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"]
        if audio_path is not None:
            audio_path = str(check_soundtrack(audio_path))
            output_params += _audio_length_params(fps, frame_count)
        self.partial_path = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        # beside the video, not in /tmp: a writer killed before it could delete it leaves it where the
        # next writer of the same video (resume, encode) writes and then deletes it again
        self._log_path = self.path.with_name(f".{self.path.stem}.ffmpeg.log")
        if not self.path.parent.is_dir():  # ffmpeg will say why it cannot write there
            fd, log_name = tempfile.mkstemp(prefix="deforum-ffmpeg-", suffix=".log")
            os.close(fd)
            self._log_path = Path(log_name)
        self.frames_written = 0
        self._closed = False
        self._gen = imageio_ffmpeg.write_frames(
            str(self.partial_path), self.size, fps=fps, quality=None, codec="libx264",
            pix_fmt_out="yuv420p", macro_block_size=2, ffmpeg_log_level="quiet",
            output_params=output_params, audio_path=audio_path,
            audio_codec="aac" if audio_path else None)
        self._start()

    def _start(self) -> None:
        with _FFREPORT_LOCK:
            previous = os.environ.get("FFREPORT")
            os.environ["FFREPORT"] = _ffreport_value(self._log_path)
            try:
                self._gen.send(None)  # starts ffmpeg
            finally:
                if previous is None:
                    del os.environ["FFREPORT"]
                else:
                    os.environ["FFREPORT"] = previous

    def write(self, frame: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is already closed")
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame for {self.path} must be {height}x{width}x3 uint8, "
                             f"got {frame.shape} {frame.dtype}")
        try:
            self._gen.send(np.ascontiguousarray(frame))
        except OSError as err:
            self._stop()
            raise self._failure("stopped while frames were being sent") from err
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it into place; RenderError if ffmpeg failed."""
        if self._closed:
            return self.path
        self._stop()
        if self.frames_written == 0:
            raise self._failure("got no frames")
        try:
            meta = _read_meta(self.partial_path)
        except (OSError, RuntimeError, IndexError) as err:
            raise self._failure("did not produce a readable video") from err
        if meta["source_size"] != self.size:
            raise self._failure(f"wrote {meta['source_size']} instead of {self.size}")
        os.replace(self.partial_path, self.path)
        warnings = _ffmpeg_errors(self._log_path)
        if warnings:
            log.warning("ffmpeg reported while writing %s:\n%s", self.path, warnings)
        self._log_path.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the unfinished file."""
        self._stop()
        _remove(self.partial_path)
        self._log_path.unlink(missing_ok=True)

    def _stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._gen.close()  # closes ffmpeg's input and waits for it to exit

    def _failure(self, what: str) -> RenderError:
        errors = _ffmpeg_errors(self._log_path) or "(no message from ffmpeg)"
        self._log_path.unlink(missing_ok=True)
        _remove(self.partial_path)
        return RenderError(f"ffmpeg {what} for {self.path}; ffmpeg says:\n{errors}\n"
                           "Frames already written stay on disk; fix the cause and rebuild the "
                           "video with `deforum-engine encode` on the render folder.")



# --- frame writer --------------------------------------------------------------------------------

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



# --- rebuilding the video ------------------------------------------------------------------------

def _check_frames(folder: RenderFolder, frame_count: int | None) -> int:
    """The number of frames to encode, once frames 0..n-1 are known to be on disk."""
    if not folder.is_render():
        raise SettingsError(f"{folder.root} is not a render folder (no settings.json); "
                            "give the folder a render wrote")
    indices = folder.frame_indices()
    count = frame_count if frame_count is not None else (indices[-1] + 1 if indices else 0)
    if count <= 0:
        raise SettingsError(f"{folder.root} has no frames to encode in {folder.frames_dir}")
    present = set(indices)
    missing = next((i for i in range(count) if i not in present), None)
    if missing is not None:
        raise SettingsError(f"frame {folder.frame_path(missing)} is missing (frames 0 to "
                            f"{count - 1} are needed); resume the render to write it again")
    return count


def encode_folder(folder: RenderFolder, fps: float, crf: int = 18, preset: str = "medium",
                  audio_path=None, frame_count: int | None = None) -> Path:
    """Rebuild `<name>.mp4` from the folder's PNG frames, in order; returns the video path."""
    count = _check_frames(folder, frame_count)
    first = read_frame(folder.frame_path(0))
    height, width = first.shape[:2]
    with VideoWriter(folder.video_path, width, height, fps, crf, preset, audio_path,
                     frame_count=count) as video:
        for index in range(count):
            frame = first if index == 0 else read_frame(folder.frame_path(index))
            if frame.shape != first.shape:
                raise SettingsError(f"frame {folder.frame_path(index)} is {frame.shape[1]}x"
                                    f"{frame.shape[0]}, not {width}x{height} like frame 0")
            video.write(frame)
    return folder.video_path
