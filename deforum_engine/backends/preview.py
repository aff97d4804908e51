"""The motion-preview backend: no model; the prepared frame is the result.

Runs the whole loop (motion, colour coherence, contrast, cadence, video) in seconds on any machine,
so a preset or a settings file can be checked before spending GPU time on it. Frame 0 is the user's
picture (the init image; else the image prompt), else `default_picture`.

A model turns each warped frame back into a detailed picture; without one, the loop puts back the
detail warps wear away (frame/detail.py) and leaves out the steps only a model turns into detail
(noise, the anti-blur sharpening), since without one they only pile up (rendering/steps.py).
"""
from __future__ import annotations

import numpy as np

from deforum_engine.backends.base import FrameRequest, RenderContext
from deforum_engine.frame.images import fit_image, load_image

def default_picture(width: int, height: int, seed: int) -> np.ndarray:
    """A colourful picture with detail at every scale, that tiles seamlessly: soft colour fields
    from 1/f-like noise (as natural pictures have) with dark contour lines through them, so zooms, pans
    and turns are easy to follow at any depth."""
    rng = np.random.default_rng(seed)
    shape, hue, light = (_fractal_noise(width, height, rng, slope) for slope in (2.3, 2.0, 1.3))
    phases = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.1, 4.2])
    image = 0.52 + 0.3 * np.sin(1.5 * hue[..., None] + 0.8 * shape[..., None] + phases)
    image *= (0.8 + 0.2 * np.tanh(light))[..., None]
    contour = np.abs(((shape * 3.0) % 1.0) - 0.5)  # 0.5 on a contour line, 0 half-way between
    image *= (1 - 0.6 * np.clip((contour - 0.44) / 0.06, 0, 1))[..., None]
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _fractal_noise(width: int, height: int, rng: np.random.Generator, slope: float) -> np.ndarray:
    """Periodic noise with a 1/f**slope amplitude spectrum (slope 1: equal energy in every octave;
    steeper: smoother), mean 0, std 1."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.maximum(np.hypot(fx, fy), 1.0 / max(width, height))
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius ** slope
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return (field / max(field.std(), 1e-9)).astype(np.float32)


class PreviewBackend:
    """Frame 0 is the user's picture (init image, else image prompt) or the default picture; every
    other frame is the prepared frame as it is."""

    name = "preview"
    is_preview = True

    def __init__(self) -> None:
        self._size = (512, 512)
        self._picture: np.ndarray | None = None

    def begin(self, context: RenderContext) -> None:
        self._size = (context.width, context.height)
        self._picture = None
        if context.image_prompt is not None:
            self._picture = fit_image(load_image(context.image_prompt), *self._size, "crop")

    def flags_unsafe(self, image: np.ndarray) -> bool:
        return False  # no model: nothing is generated from the image, so there is nothing to screen

    def generate(self, request: FrameRequest) -> np.ndarray:
        if request.image is not None:
            return request.image
        if self._picture is not None:
            return self._picture
        return default_picture(*self._size, seed=request.seed)
