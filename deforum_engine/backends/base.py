"""The generator interface: what the frame loop asks of a backend, and nothing more.

A backend turns one prepared frame (or nothing, for text-to-image) plus that frame's values into a
new frame. The loop never looks inside; swapping the preview for diffusers changes no loop code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FrameRequest:
    """One frame's work for a backend. Images are H x W x 3 uint8 RGB."""

    index: int
    image: np.ndarray | None  # prepared frame; None means text-to-image (frame 0 without an init image)
    prompt: str
    negative_prompt: str
    seed: int
    steps: int  # the frame's step count before denoise scaling (Deforum's `steps`)
    cfg_scale: float
    denoise: float  # img2img denoising strength = 1 - Deforum strength; 1.0 for text-to-image
    sampler: str
    image_prompt_scale: float = 0.0  # IP-Adapter scale for this frame (0 = no image influence)
    noise_multiplier: float = 1.0  # scales img2img's starting noise (A1111's initial_noise_multiplier)
    # Prompt blending: the prompt this frame is travelling towards, and how far (0 = `prompt` only).
    blend_prompt: str | None = None
    blend_negative_prompt: str | None = None
    blend_weight: float = 0.0
    # LoRAs on for this frame, from the prompt's <lora:...> tags: prompt_weights.ActiveLora entries.
    loras: tuple = ()


@dataclass(frozen=True)
class RenderContext:
    """What a backend needs to know once per render (not per frame)."""

    width: int
    height: int
    image_prompt: Path | None = None
    image_prompt_mode: str = "all"  # all | style | layout


class Backend(Protocol):
    """A frame generator. `begin` runs once per render, `generate` once per diffused frame."""

    name: str
    is_preview: bool

    def begin(self, context: RenderContext) -> None: ...

    def generate(self, request: FrameRequest) -> np.ndarray: ...

    def flags_unsafe(self, image: np.ndarray) -> bool:
        """Whether the model's own safety checker flags `image` (an input such as an image prompt);
        False when the model has no checker."""
        ...
