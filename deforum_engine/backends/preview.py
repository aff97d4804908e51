"""The motion-preview backend: no model, the prepared frame is the result.

Runs the whole loop (motion, coherence, cadence, noise, video) in seconds on any machine, so a
preset or a settings file can be checked before spending GPU time on it.
"""
from __future__ import annotations

import cv2
import numpy as np

from deforum_engine.backends.base import FrameRequest, RenderContext


def neutral_pattern(width: int, height: int, seed: int) -> np.ndarray:
    """A soft, structured first frame (gradient, rings, grid) so that motion is easy to see."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    hue_shift = rng.uniform(0, 2 * np.pi)
    image = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * u + hue_shift + k * 2.1) for k in range(3)], axis=-1)
    image *= (0.75 + 0.25 * np.cos(2 * np.pi * v))[..., None]
    rings = np.hypot(u - 0.5, v - 0.5)
    image[np.sin(rings * 40) > 0.92] *= 0.55
    grid = (np.abs(((x + width / 16) % (width / 8)) - width / 16) < 1.0) | (
        np.abs(((y + height / 16) % (height / 8)) - height / 16) < 1.0
    )
    image[grid] = 0.9
    frame = np.clip(image * 255, 0, 255).astype(np.uint8)
    cv2.circle(frame, (width // 2, height // 2), max(2, min(width, height) // 10), (250, 245, 235), -1)
    return frame


class PreviewBackend:
    """Returns the prepared frame unchanged; frame 0 is the init image or a neutral pattern."""

    name = "preview"
    is_preview = True

    def __init__(self) -> None:
        self._size = (512, 512)

    def begin(self, context: RenderContext) -> None:
        self._size = (context.width, context.height)

    def flags_unsafe(self, image: np.ndarray) -> bool:
        return False  # no model: nothing is generated from the image, so there is nothing to screen

    def generate(self, request: FrameRequest) -> np.ndarray:
        if request.image is not None:
            return request.image
        return neutral_pattern(*self._size, seed=request.seed)
