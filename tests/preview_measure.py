"""The preview measure of issue 21: does a long motion preview stay a picture?

`preview_frames` runs the real loop with the preview backend and keeps the frames in memory (no
folder, no video); `picture_drift` compares a late frame with frame 0 the way the issue measures it.
"""
from __future__ import annotations

import cv2
import numpy as np

from deforum_engine.backends.base import RenderContext
from deforum_engine.backends.preview import PreviewBackend
from deforum_engine.config.settings import Settings
from deforum_engine.rendering.inputs import check_inputs
from deforum_engine.rendering.loop import FrameLoop, start_or_resume


def preview_frames(settings: Settings, keep: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The preview's frames numbered in `keep`, rendered by the real loop."""
    inputs = check_inputs(settings)
    backend = PreviewBackend()
    backend.begin(RenderContext(inputs.plan.canvas.width, inputs.plan.canvas.height, settings.image_prompt))
    kept: dict[int, np.ndarray] = {}

    def sink(index, image, state=None, depth_map=None):
        if index in keep:
            kept[index] = image.copy()

    start = start_or_resume(inputs, backend, None, sink)
    FrameLoop.for_render(inputs.plan, backend, start.reference).run(start, sink)
    return kept


def gradient_energy(image: np.ndarray) -> float:
    """Mean squared luminance gradient."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.mean(np.diff(grey, axis=0) ** 2) + np.mean(np.diff(grey, axis=1) ** 2))


def picture_drift(first: np.ndarray, last: np.ndarray) -> dict[str, float]:
    """How `last` compares with `first`: luminance spread ratio, gradient energy ratio, mean LAB distance."""
    def spread(image):
        return float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64).std())

    def mean_lab(image):
        return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0)

    return {"spread": spread(last) / max(spread(first), 1e-6),
            "gradient": gradient_energy(last) / max(gradient_energy(first), 1e-6),
            "colour": float(np.linalg.norm(mean_lab(last) - mean_lab(first)))}


def holds(drift: dict[str, float]) -> bool:
    """The issue's bounds: spread at least 0.3 of frame 0's, gradient energy at most 2x, colour within 15."""
    return drift["spread"] >= 0.3 and drift["gradient"] <= 2.0 and drift["colour"] <= 15.0


def landscape(width: int, height: int) -> np.ndarray:
    """A user's picture stand-in: sky, sun, hills, a house, grass texture (not the preview's own pattern)."""
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = ((1 - rows) * np.array([90, 150, 235]) + rows * np.array([230, 200, 170])) * np.ones((1, width, 1))
    image = image.astype(np.uint8)
    cv2.circle(image, (width * 3 // 4, height // 4), max(3, width // 10), (255, 230, 120), -1)
    hills = (height * (0.6 + 0.08 * np.sin(np.arange(width) / width * 9))).astype(np.int32)
    grass = cv2.GaussianBlur(np.random.default_rng(3).normal(0, 30, (height, width)), (0, 0), 1.0)[..., None]
    for x, top in enumerate(hills):
        image[top:, x] = np.clip(np.array([60, 140, 50]) + grass[top:, x], 0, 255).astype(np.uint8)
    cv2.rectangle(image, (width // 5, height // 2), (width // 5 + width // 6, height * 3 // 4), (180, 60, 40), -1)
    cv2.line(image, (0, height - 2), (width - 1, height // 3), (40, 40, 40), max(1, width // 64))
    return image
