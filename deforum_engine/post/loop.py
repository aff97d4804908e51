"""Seamless loops: the last frames dissolve back to frame 0, so the video plays round without a jump.

With a loop of L frames over a video of N, frame N-L+k (k = 0 .. L-1) becomes
`(1 - w) * frame + w * frame0` with w = (k+1)/(L+1): the weight climbs evenly, and the last frame is
1/(L+1) of the way from frame 0. The seam (last frame -> frame 0) then differs from frame 0 by
D/(L+1), D being how far the raw last frame is from frame 0.

`choose_loop_frames` picks the fewest frames that bring the seam's difference (mean absolute, in
levels) down to the median difference between consecutive frames, at most half the video; a loop
length given in the settings is used as it is. Only the videos change: the raw PNG frames stay, so
the loop (or none) can be made again.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np

log = logging.getLogger(__name__)


def loop_weight(index: int, count: int, loop_frames: int) -> float:
    """How much of frame 0 frame `index` of `count` takes."""
    start = count - loop_frames
    return 0.0 if loop_frames <= 0 or index < start else (index - start + 1) / (loop_frames + 1)


def toward_first(image: np.ndarray, first: np.ndarray, weight: float) -> np.ndarray:
    """`image` moved `weight` of the way to `first` (a plain dissolve, rounded to uint8)."""
    if weight <= 0:
        return image
    mixed = image.astype(np.float32) * (1 - weight) + first.astype(np.float32) * weight
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def looped(frames: Iterable[np.ndarray], count: int, loop_frames: int) -> Iterator[np.ndarray]:
    """The frames with the last `loop_frames` dissolving back to frame 0."""
    first = None
    for index, frame in enumerate(frames):
        first = frame if first is None else first
        yield toward_first(frame, first, loop_weight(index, count, loop_frames))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames, in levels (0-255)."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def seam_and_median(frames: Iterable[np.ndarray]) -> tuple[float, float]:
    """(last frame -> frame 0 difference, median difference between consecutive frames)."""
    first = previous = None
    steps = []
    for frame in frames:
        if previous is not None:
            steps.append(difference(previous, frame))
        first = frame if first is None else first
        previous = frame
    if first is None or not steps:
        raise ValueError("a loop needs two frames or more")
    return difference(previous, first), float(np.median(steps))


def choose_loop_frames(frames: Callable[[], Iterator[np.ndarray]], count: int) -> int:
    """The fewest dissolve frames that bring the seam to the median step or below (at most half the video)."""
    seam, median = seam_and_median(frames())
    longest = max(1, (count - 1) // 2)
    length = min(longest, max(1, math.ceil(seam / max(median, 1e-6)) - 1))
    while length < longest:
        seam_now, median_now = seam_and_median(looped(frames(), count, length))
        if seam_now <= median_now:
            break
        length = min(longest, length + max(1, length // 4))
    final_seam, final_median = seam_and_median(looped(frames(), count, length))
    if final_seam > final_median:
        log.warning("seamless loop: even %d frames leave the seam at %.2f levels, above the median step %.2f; "
                    "the animation moves back and forth less than it changes overall", length, final_seam,
                    final_median)
    return length
