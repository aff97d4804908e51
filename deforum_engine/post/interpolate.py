"""Frame interpolation with RIFE, timed as Deforum times it.

Each pair of frames gives its first frame and X-1 in-betweens at t = k/X; the last frame comes once:
(N-1)·X + 1 frames from N. The video plays at fps·X, or at fps·X/S with slow-mo (S), as Deforum's
`process_video_interpolation` computes it. The soundtrack stays in sync (cut to the new length);
with slow-mo it is left out, as Deforum leaves it out. Frames stream through: memory holds a pair.

Deliberate differences from Deforum: every pair is interpolated (Deforum merges a pair whose 32x32
SSIM is above 0.996 and repeats the first frame where it is below 0.2, so its count can come out
lower); X may be any whole number of 2 or more (Deforum's UI allows 2-10).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.post.frames import FrameSink, FrameSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interpolation:
    """What to make: X frames per source frame, slowed S times (None: real speed)."""

    x: int = 2
    slow_mo: int | None = None
    keep_frames: bool = False
    suffix_extra: str = ""  # "_upscaled" when the frames came from the upscaler
    loop: bool = False  # a seamless loop: the last frame gets its in-betweens towards frame 0 too (N·X frames)

    def __post_init__(self):
        if int(self.x) != self.x or self.x < 2:
            raise SettingsError(f"frame_interpolation_x_amount: {self.x} is not a whole number of 2 or more")
        if self.slow_mo is not None and (int(self.slow_mo) != self.slow_mo or self.slow_mo < 2):
            raise SettingsError(f"frame_interpolation_slow_mo_amount: {self.slow_mo} is not a whole number of 2 or more")

    def frame_count(self, source_frames: int) -> int:
        return source_frames * self.x if self.loop else (source_frames - 1) * self.x + 1

    def fps(self, source_fps: float) -> float:
        """Deforum's: fps·X, divided by the slow-mo amount when slow-mo is on."""
        fps = float(source_fps) * self.x
        return fps / self.slow_mo if self.slow_mo else fps

    @property
    def suffix(self) -> str:
        """Deforum's name: `_RIFE_x2`, `_RIFE_x4_slomo_x2`."""
        slow = f"_slomo_x{self.slow_mo}" if self.slow_mo else ""
        return f"_RIFE_x{self.x}{slow}{self.suffix_extra}"


def interpolate_source(source: FrameSource, job: Interpolation, net, device: str = "cpu") -> Path:
    """Write `<name>_RIFE_xX.mp4` beside the source (and its frames, if kept); returns the video."""
    video = source.product(job.suffix)
    frames_dir = source.out_dir / f"interpolated_frames_rife{job.suffix}" if job.keep_frames else None
    audio = source.audio
    if audio is not None and job.slow_mo:
        log.warning("slow-mo: %s is written without the soundtrack (Deforum leaves it out too)", video.name)
        audio = None
    count = job.frame_count(source.count)
    with FrameSink(video, (source.width, source.height), job.fps(source.fps), count, audio, frames_dir,
                   source.crf, source.preset) as sink:
        for frame in interpolated(source.frames(), net, job.x, device, job.loop):
            sink.write(frame)
    return video


def interpolated(frames: Iterable[np.ndarray], net, x: int, device: str = "cpu",
                 loop: bool = False) -> Iterator[np.ndarray]:
    """Each frame, then X-1 in-betweens towards the next; the last frame once (with `loop`: followed
    by its in-betweens towards frame 0, so the interpolated video loops too)."""
    first = previous = None
    for frame in frames:
        if previous is not None:
            yield previous
            yield from in_betweens(net, previous, frame, x, device)
        first = frame if first is None else first
        previous = frame
    if previous is not None:
        yield previous
        if loop:
            yield from in_betweens(net, previous, first, x, device)


def in_betweens(net, first: np.ndarray, second: np.ndarray, x: int, device: str = "cpu") -> list[np.ndarray]:
    """The X-1 frames at t = 1/X ... (X-1)/X between two RGB uint8 frames (flow at half resolution from
    2048x2048 up, as Deforum sets RIFE's UHD scale)."""
    import torch
    from torch.nn import functional as F

    height, width = first.shape[:2]
    scale = 0.5 if height >= 2048 and width >= 2048 else 1.0
    modulo = int(net.spec.modulo / scale)
    pad = (0, -width % modulo, 0, -height % modulo)

    def tensor(image):
        data = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float() / 255
        return F.pad(data, pad)

    img0, img1 = tensor(first), tensor(second)
    out = []
    with torch.inference_mode():
        for k in range(1, x):
            middle = net(img0, img1, k / x, scale)[0, :, :height, :width]
            out.append((middle.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())
    return out
