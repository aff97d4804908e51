"""Video clips as inputs: probe a clip, map output frames to its frames as Deforum does, and read
the frames it needs as a stream (imageio-ffmpeg), fitted to the render size.

Deforum extracts every kept frame to a JPEG before rendering; here the frames are decoded on
demand, straight from the file, and nothing is written unless the render asks to keep them.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import imageio_ffmpeg
import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import fit_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mpeg", ".mpg", ".avi", ".webm", ".mkv", ".gif")
# ffmpeg reads a still picture as a one-frame "video"; these demuxers mean the file is a picture
_PICTURE_FORMATS = re.compile(r"^(image2|\w+_pipe)$")


@dataclass(frozen=True)
class Clip:
    """What the engine knows of a clip after probing it: its file, size, frame rate and frame count."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    has_audio: bool


@dataclass(frozen=True)
class FrameMap:
    """Which frame of the clip each output frame uses: frame t reads source frame first + t * step."""

    first: int
    step: int
    count: int

    def source(self, t: int) -> int:
        """The clip frame for output frame `t` (0 <= t < count)."""
        return self.first + t * self.step

    def sources(self) -> np.ndarray:
        return self.first + self.step * np.arange(self.count)


def probe_clip(path: Path | str, setting: str) -> Clip:
    """Open a clip with ffmpeg and count its frames; a clear error naming the file and `setting` for
    a missing file, a picture, a file with no video, or one ffmpeg cannot read (truncated, damaged)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SettingsError(f"{setting}: {path} does not exist; give the path of a video file "
                            f"({', '.join(VIDEO_SUFFIXES)})")
    log = _ffmpeg_log(path)
    if _damaged(log):
        raise SettingsError(f"{setting}: {path} is truncated, damaged or not a video ({_first_error(log)}); "
                            "re-export or re-download the clip (or check the path)")
    video = re.search(r"Stream #\d+:\d+[^:]*: Video: ([^\n]*)", log)
    container = re.search(r"Input #0, ([\w,]+), from", log)
    if video is None or container is None:
        reason = "it has no video stream" if container is not None else _last_error(log)
        raise SettingsError(f"{setting}: {path} cannot be read as a video ({reason}); "
                            "give a video file ffmpeg can decode (mp4, mov, webm, ...)")
    if _PICTURE_FORMATS.match(container.group(1)):
        raise SettingsError(f"{setting}: {path} is a picture, not a video; give a video file "
                            "(or use it as init_image)")
    size = re.search(r"(\d{2,5})x(\d{2,5})", video.group(1))
    fps = re.search(r"([\d.]+) (?:fps|tbr)", video.group(1))
    frames = re.findall(r"frame=\s*(\d+)", log)
    if size is None or not frames or int(frames[-1]) == 0:
        raise SettingsError(f"{setting}: {path} holds no readable video frames; give another clip")
    return Clip(path, int(size.group(1)), int(size.group(2)), float(fps.group(1)) if fps else 0.0,
                int(frames[-1]), re.search(r"Stream #\d+:\d+[^:]*: Audio:", log) is not None)


def _ffmpeg_log(path: Path) -> str:
    """ffmpeg's report on copying the clip's first video stream nowhere: its streams and packets
    (fast: nothing is decoded)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
               "-map", "0:v:0?", "-c", "copy", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, timeout=600, check=False)  # ffmpeg's report is the answer
    return result.stderr.decode(errors="replace")


_DAMAGE = ("moov atom not found", "partial file", "corrupt", "truncat", "error reading header",
           "Error while decoding", "Packet mismatch", "missing picture")


def _damaged(log: str) -> bool:
    return any(marker.lower() in log.lower() for marker in _DAMAGE)


def _first_error(log: str) -> str:
    found = [line.split("] ", 1)[-1].strip() for line in log.splitlines()
             if any(marker.lower() in line.lower() for marker in _DAMAGE)]
    return found[0] if found else "ffmpeg gave no reason"


def _last_error(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip() and not line.startswith(" ")]
    return lines[-1] if lines else "ffmpeg gave no reason"


def frame_map(clip: Clip, nth: int, start: int, end: int, setting: str = "video_init_path") -> FrameMap:
    """Deforum's extraction rule: source frame k is used iff start <= k <= end (end -1: the last
    frame) and k % nth == 0, counting from the clip's first frame; nth below 1 counts as 1."""
    nth = max(1, int(nth))
    last = clip.frame_count - 1 if end == -1 else min(int(end), clip.frame_count - 1)
    if end != -1 and end <= start:
        raise SettingsError(f"extract_to_frame ({end}) must be after extract_from_frame ({start}), "
                            "or -1 for the clip's end")
    if nth >= clip.frame_count:
        raise SettingsError(f"extract_nth_frame ({nth}) is not smaller than the {clip.frame_count} frames of "
                            f"{setting} {clip.path}; choose a smaller step or a longer clip")
    first = nth * -(-max(0, int(start)) // nth)
    if first > last:
        raise SettingsError(f"extract_from_frame ({start}) is past the last frame ({clip.frame_count - 1}) of "
                            f"{setting} {clip.path}; the clip has {clip.frame_count} frames")
    return FrameMap(first, nth, (last - first) // nth + 1)


def fit_frame(image: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Bring a frame to width x height as `init_fit` says (frame.images.fit_image), resampled with OpenCV."""
    return fit_image(image, width, height, mode, resize=_resized)


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    shrinking = width < image.shape[1] and height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)


def fit_note(clip: Clip, width: int, height: int, mode: str, setting: str) -> str | None:
    """A note when the clip is not the render size (its frames are fitted), else None."""
    if (clip.width, clip.height) == (width, height):
        return None
    return (f"{setting}: {clip.path.name} is {clip.width}x{clip.height}, the render {width}x{height}: "
            f"its frames are fitted by init_fit ({mode})")


def read_frames(clip: Clip, frames: FrameMap, start: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames for output frames start, start+1, ... (RGB, uint8, the clip's own size),
    decoded as a stream: ffmpeg drops the frames not used before they are converted."""
    first, last = frames.source(start), frames.source(frames.count - 1)
    select = rf"select=between(n\,{first}\,{last})*not(mod(n-{first}\,{frames.step}))"
    reader = imageio_ffmpeg.read_frames(str(clip.path), pix_fmt="rgb24", input_params=["-nostdin"],
                                        output_params=["-map", "0:v:0", "-vf", select, "-fps_mode", "passthrough"])
    try:
        width, height = next(reader)["size"]
        index = start
        for data in reader:
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
            index += 1
            if index == frames.count:
                return
        raise SettingsError(f"{clip.path} ended early: it has no frame {frames.source(index)} for output frame "
                            f"{index}; the clip is truncated or shorter than it says")
    finally:
        reader.close()


def first_frame(clip: Clip) -> np.ndarray:
    """The clip's first frame (RGB, uint8, its own size): the picture a clip stands for where one is shown."""
    stream = read_frames(clip, FrameMap(0, 1, 1))
    try:
        return next(stream)
    finally:
        stream.close()  # ffmpeg stops at once


class VideoFrames:
    """A clip's frames for output frames, fitted to the render size, read forward as a stream.

    Frames already read stay available while they are recent (`keep` frames back); asking for an
    earlier one starts a new stream there. Made for one thread: the frame loop's.
    """

    def __init__(self, clip: Clip, frames: FrameMap, width: int, height: int, fit: str, keep: int = 8) -> None:
        self.clip, self.frames, self.size, self.fit, self.keep = clip, frames, (width, height), fit, keep
        self._stream: Iterator[np.ndarray] | None = None
        self._next = 0
        self._recent: dict[int, np.ndarray] = {}

    def __getitem__(self, t: int) -> np.ndarray:
        """The fitted clip frame for output frame t (the last one for t past the clip's end)."""
        t = min(int(t), self.frames.count - 1)
        if t in self._recent:
            return self._recent[t]
        if self._stream is None or t < self._next:
            self.close()
            self._stream, self._next = read_frames(self.clip, self.frames, t), t
        while self._next <= t:
            picture = fit_frame(next(self._stream), *self.size, self.fit)
            self._recent[self._next] = picture
            self._next += 1
        for old in [k for k in self._recent if k < t - self.keep]:
            del self._recent[old]
        return self._recent[t]

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
