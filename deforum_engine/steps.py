"""The loop's image steps: one signature, (image, frame values) -> image, chosen once from the plan.

The image functions in `frame/` take plain numbers; these adapters read them from a frame's
values. `preparation_steps` decides, before the first frame, which of them a render needs, so the
loop itself has no feature checks.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from .frame.adjust import adjust_contrast, unsharp_mask
from .frame.color import ColorReference, match_color
from .frame.noise import add_noise
from .plan import FramePlan, FrameValues

ImageStep = Callable[[np.ndarray, FrameValues], np.ndarray]


def match_colors(image: np.ndarray, frame: FrameValues, *, reference: ColorReference) -> np.ndarray:
    """Colour coherence: pull the frame's histograms to the reference's."""
    return match_color(image, reference)


def contrast(image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """The frame's contrast schedule."""
    return adjust_contrast(image, frame.contrast)


def anti_blur(image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """Unsharp mask against the softening that repeated warps cause."""
    return unsharp_mask(image, frame.kernel, frame.sigma, frame.amount, frame.threshold)


def noise(image: np.ndarray, frame: FrameValues, *, noise_type: str, octaves: int, persistence: float) -> np.ndarray:
    """Seeded noise, so that diffusion has fresh detail to work with."""
    return add_noise(image, frame.noise, noise_seed(frame), noise_type, octaves, persistence)


def noise_seed(frame: FrameValues) -> int:
    """The frame's noise seed: its seed and index together, so a fixed seed still varies the noise."""
    return (frame.seed * 100_003 + frame.index) % 2**63


def preparation_steps(plan: FramePlan, reference: ColorReference | None, with_noise: bool = True) -> list[ImageStep]:
    """Steps between the warp and the backend that this render needs, in Deforum's order.

    Motion previews leave the noise out: with no model to turn it into detail, it would only pile
    up frame after frame.
    """
    values, settings = plan.values, plan.settings
    steps: list[ImageStep] = []
    if reference is not None:
        steps.append(partial(match_colors, reference=reference))
    if np.any(values["contrast"] != 1.0):
        steps.append(contrast)
    if np.any(values["amount"] > 0):
        steps.append(anti_blur)
    if with_noise and np.any(values["noise"] > 0):
        steps.append(partial(noise, noise_type=settings.noise_type, octaves=settings.perlin_octaves,
                             persistence=settings.perlin_persistence))
    return steps


def generation_steps(reference: ColorReference | None, is_preview: bool) -> list[ImageStep]:
    """Steps after the backend: colour coherence again, since diffusion drifts colours (not for previews)."""
    if reference is None or is_preview:
        return []
    return [partial(match_colors, reference=reference)]


def run_steps(steps: list[ImageStep], image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """Apply the chosen steps in order."""
    for step in steps:
        image = step(image, frame)
    return image
