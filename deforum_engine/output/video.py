"""The H.264 video: ffprobe, the streaming ffmpeg writer with the soundtrack muxed in, re-encoding a folder."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from deforum_engine.config.choices import X264_PRESETS
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.output.atomic import _ClosesOnExit, _remove, read_frame
from deforum_engine.output.folder import RenderFolder

log = logging.getLogger(__name__)

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

