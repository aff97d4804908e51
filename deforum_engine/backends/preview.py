"""The motion-preview backend: no model; the prepared frame, with the fine detail warps wear away
put back, is the result.

Runs the whole loop (motion, colour coherence, contrast, cadence, video) in seconds on any machine,
so a preset or a settings file can be checked before spending GPU time on it. Frame 0 is the user's
picture (the init image; else the image prompt), else `default_picture`.

A model turns each warped frame back into a detailed picture; without one, every warp softens the
frame a little, and over hundreds of frames a zoom ends in a blur. `restore_detail` stands in for
that: when a frame's finest detail has faded against its coarser detail, it adds fine detail taken
from the frame itself at half size, so a long zoom keeps a textured picture instead of a smear.
The steps that only a model turns into detail (noise, the anti-blur sharpening) are left out by
the loop (steps.preparation_steps), since without one they only pile up.
"""
from __future__ import annotations

import cv2
import numpy as np

from deforum_engine.backends.base import FrameRequest, RenderContext
from deforum_engine.frame.images import fit_image, load_image

# The finest band's energy is kept at least this many times the next octave's: about what a natural
# picture has (1/f**1.2 amplitude), so a zoom that moves detail down an octave at a time finds the
# same mix of detail at every depth instead of a growing blur.
FINE_TO_COARSE = 2.5
# ... and at most this share of the picture's whole variance, so that where the warp keeps the fine
# detail sharp (bicubic 3D sampling), topping it up never runs away into noise.
FINE_SHARE = 0.05


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


def _fine(image: np.ndarray) -> np.ndarray:
    """The finest octave of detail: the picture less its blur."""
    return image - cv2.GaussianBlur(image, (0, 0), 1.0)


def _energies(grey: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(the finest detail of a grey picture, its energy, the energy of the octave below it)."""
    soft = cv2.GaussianBlur(grey, (0, 0), 1.0)
    fine = grey - soft
    return fine, float(np.mean(fine ** 2)), float(np.mean((soft - cv2.GaussianBlur(grey, (0, 0), 2.0)) ** 2))


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def restore_detail(image: np.ndarray, seed: int, ratio: float = FINE_TO_COARSE, share: float = FINE_SHARE) -> np.ndarray:
    """Put back the fine detail that repeated warps blur away: when the finest band's energy (of the
    brightness) is below `ratio` times the next octave's (and `share` of the picture's variance), add
    the fine band of the picture itself at half size (mirrored 2 x 2, shifted by an offset drawn from
    `seed`), scaled so the sum's finest band has that energy. A frame with its detail intact comes
    back unchanged. The offset changes from frame to frame, so the added detail never lines up into
    streaks along the motion; once added, it moves with the picture like the rest of it."""
    height, width = image.shape[:2]
    if height < 4 or width < 4:
        return image
    grey = _grey(image).astype(np.float32)
    fine, fine_energy, coarse_energy = _energies(grey)
    target = min(ratio * coarse_energy, share * float(grey.var()))
    if fine_energy >= target - 1e-3:
        return image
    picture = image.astype(np.float32)
    half = cv2.resize(picture, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
    mirrored = np.concatenate([half, half[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)  # seamless when rolled
    shift = np.random.default_rng(seed).integers(0, mirrored.shape[:2])
    detail = _fine(np.roll(mirrored, tuple(shift), axis=(0, 1))[:height, :width])
    # the sum's fine band is fine + s * fine(detail): solve mean((fine + s * d)^2) = target for s
    detail_fine = _fine(_grey(detail))
    a = float(np.mean(detail_fine ** 2))
    if a <= 1e-9:
        return image
    b = 2 * float(np.mean(fine * detail_fine))
    scale = (-b + np.sqrt(b * b - 4 * a * (fine_energy - target))) / (2 * a)
    return np.clip(np.rint(picture + scale * detail), 0, 255).astype(np.uint8)


class PreviewBackend:
    """Frame 0 is the user's picture (init image, else image prompt) or the default picture; every
    other frame is the prepared frame with its fine detail restored."""

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
            return restore_detail(request.image, request.seed * 7919 + request.index) if request.index > 0 else request.image
        if self._picture is not None:
            return self._picture
        return default_picture(*self._size, seed=request.seed)
