"""Where control pictures and masks come from: a picture file, or a video read frame by frame.

Output frame i takes source frame i (Deforum's mapping for ControlNet and mask videos in 2D and 3D
mode). Videos are streamed with imageio-ffmpeg, never unpacked to disk; reading forward is one
decode per frame, and asking for an earlier frame (a resumed render) restarts the stream.
(A small reader of its own until the engine's `video/` package, being built beside it, lands;
then both use one.)
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import check_image_file, fit_image, load_image
from deforum_engine.video.clip import VIDEO_SUFFIXES


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_frame_count(path: Path, setting: str) -> int:
    """The number of frames in a video (decoded once, fast: no pixels kept); a SettingsError if unreadable."""
    import imageio_ffmpeg

    if not path.is_file():
        raise SettingsError(f"{setting}: {path} does not exist; give an image or a video file")
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, ValueError) as error:
        raise SettingsError(f"{setting}: {path} is not a readable video ({error})") from None
    if frames < 1:
        raise SettingsError(f"{setting}: {path} has no frames")
    return int(frames)


def check_source(path: Path, setting: str, frames_needed: int) -> int | None:
    """Check an image or a video before any model loads; a video's frame count, None for an image.

    A video shorter than the render is an error naming the setting, the file and both counts."""
    if not is_video(path):
        check_image_file(path, role=setting)
        return None
    count = video_frame_count(path, setting)
    if count < frames_needed:
        raise SettingsError(f"{setting}: the video {path} has {count} frames but the render has {frames_needed}; "
                            f"give a longer video, or set max_frames to {count} or fewer")
    return count


def fitted(picture: np.ndarray, width: int, height: int, fit: str, setting: str, path: Path) -> tuple[np.ndarray, str | None]:
    """A picture brought to the render size, with a note when its size differed."""
    h, w = picture.shape[:2]
    if (w, h) == (width, height):
        return picture, None
    note = f"{setting}: {path} is {w}x{h}, fitted to {width}x{height} ({fit})"
    return fit_image(picture, width, height, fit), note


class FrameSource:
    """Frame i of a picture (the same every frame) or of a video (source frame i), as RGB uint8.

    The last `KEEP` frames read are kept: the loop reads a diffused frame's mask before the in-between
    frames' (on the cadence thread, hence the lock), and those must not restart the stream."""

    KEEP = 64  # more than the largest cadence

    def __init__(self, path: str | Path, setting: str):
        self.path, self.setting = Path(path), setting
        self.video = is_video(self.path)
        self._picture: np.ndarray | None = None
        self._reader = None
        self._next = 0  # the index the reader yields next
        self._size = (0, 0)
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def frame(self, index: int) -> np.ndarray:
        with self._lock:
            if not self.video:
                if self._picture is None:
                    self._picture = load_image(self.path)
                return self._picture
            if index in self._recent:
                return self._recent[index]
            if self._reader is None or index < self._next:
                self._open()
            while self._next <= index:
                self._keep(self._next, self._read_one(index))
            return self._recent[index]

    def _keep(self, index: int, frame: np.ndarray) -> None:
        self._recent[index] = frame
        while len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)

    def _open(self) -> None:
        import imageio_ffmpeg

        self.close()
        self._reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        meta = next(self._reader)
        self._size = tuple(meta["size"])
        self._next = 0

    def _read_one(self, wanted: int) -> np.ndarray:
        try:
            data = next(self._reader)
        except StopIteration:
            raise SettingsError(f"{self.setting}: the video {self.path} ended before frame {wanted}") from None
        self._next += 1
        width, height = self._size
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
