"""Where post-processing reads frames from and writes its videos: a render folder or any video file.

A render folder's frames are its raw PNGs (never changed, so a step can be redone); its soundtrack is
taken from the render's own video, already cut to the frames. A video file is decoded as it streams,
its own audio kept. Every product is written beside the source: `<name>_RIFE_x2.mp4`, `<name>_Upscaled_x2.mp4`.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.output import RenderFolder, VideoWriter, encode_png, probe_video, read_frame
from deforum_engine.post.loop import looped
from deforum_engine.video.clip import VIDEO_SUFFIXES


@dataclass(frozen=True)
class FrameSource:
    """A sequence of equally sized RGB frames with its timing, its audio and where products go."""

    frames: Callable[[], Iterator[np.ndarray]]  # a fresh iterator over the frames, in order
    count: int
    fps: float
    width: int
    height: int
    audio: Path | None  # a file whose first audio stream plays along (None: silent)
    out_dir: Path
    name: str
    crf: int = 18
    preset: str = "medium"

    def product(self, suffix: str) -> Path:
        return self.out_dir / f"{self.name}{suffix}.mp4"


def open_source(path: str | os.PathLike, frames_dir: Path | None = None, loop_frames: int = 0) -> FrameSource:
    """A render folder (its raw frames, or `frames_dir` inside it; the last `loop_frames` dissolving
    back to frame 0) or a video file, checked."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _folder_source(RenderFolder(path), frames_dir, loop_frames)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_source(path)
    raise SettingsError(f"{path} is neither a render folder (with settings.json) nor a video file "
                        f"({', '.join(VIDEO_SUFFIXES)}); give one of those")


def _numbered_pngs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))


def _folder_source(folder: RenderFolder, frames_dir: Path | None, loop_frames: int) -> FrameSource:
    if not folder.is_render():
        raise SettingsError(f"{folder.root} is not a render folder (no settings.json); give a folder a render "
                            "wrote, or a video file")
    settings = folder.saved_settings()
    paths = _numbered_pngs(frames_dir or folder.frames_dir)
    if len(paths) < 2:
        raise SettingsError(f"{frames_dir or folder.frames_dir} holds {len(paths)} frame(s); two or more are needed")
    height, width = read_frame(paths[0]).shape[:2]
    video = folder.video_path
    audio = video if video.is_file() and probe_video(video)["has_audio"] else None
    count = len(paths)
    return FrameSource(lambda: looped((read_frame(p) for p in paths), count, loop_frames), count,
                       float(settings.fps), width, height, audio, folder.root, folder.root.name, settings.crf,
                       settings.video_preset)


def _video_source(path: Path) -> FrameSource:
    info = probe_video(path)
    if info["frames"] < 2:
        raise SettingsError(f"video {path} has {info['frames']} frame(s); two or more are needed")
    width, height = info["width"], info["height"]

    def frames() -> Iterator[np.ndarray]:
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        next(reader)  # the header
        try:
            for data in reader:
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()
        finally:
            reader.close()

    return FrameSource(frames, info["frames"], float(info["fps"]), width, height,
                       path if info["has_audio"] else None, path.parent, path.stem)


class FrameSink:
    """An mp4 (soundtrack cut to its frames) and, optionally, numbered PNGs kept in `frames_dir` beside it.

    The PNG folder is removed if writing fails.
    """

    def __init__(self, video: Path, size: tuple[int, int], fps: float, count: int, audio: Path | None,
                 frames_dir: Path | None, crf: int = 18, preset: str = "medium"):
        width, height = size
        self.writer = VideoWriter(video, width + width % 2, height + height % 2, fps, crf, preset, audio,
                                  frame_count=count)
        self.frames_dir, self.index = frames_dir, 0
        if frames_dir is not None:
            shutil.rmtree(frames_dir, ignore_errors=True)
            frames_dir.mkdir(parents=True)

    def write(self, frame: np.ndarray) -> None:
        if self.frames_dir is not None:
            (self.frames_dir / f"{self.index:09d}.png").write_bytes(encode_png(frame))
        height, width = frame.shape[:2]
        if width % 2 or height % 2:  # H.264 yuv420p needs even sides: repeat the last row / column
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self.writer.write(frame)
        self.index += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.writer.close()
        else:
            self.writer.abort()
        if self.frames_dir is not None and exc_type is not None:
            shutil.rmtree(self.frames_dir, ignore_errors=True)
