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
class ControlInput:
    """One ControlNet unit's work on one frame (only units active on the frame: weight > 0, a
    non-empty guidance window)."""

    unit: str  # cn_1 .. cn_5, for messages
    model: str  # the ControlNet's resolved source (hub id, folder or file), as RenderContext.controlnets lists it
    image: np.ndarray  # the control map, H x W x 3 uint8 at the render size
    weight: float
    guidance_start: float  # the fraction of the frame's steps where the unit starts acting ..
    guidance_end: float  # .. and stops
    control_mode: str  # Balanced | My prompt is more important | ControlNet is more important

    def signature(self) -> tuple:
        """What frames must share to be denoised in one call (lockstep): all but the picture."""
        return (self.model, round(self.weight, 6), round(self.guidance_start, 6), round(self.guidance_end, 6),
                self.control_mode)


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
    # ControlNet units acting on this frame (ControlInput entries, in unit order).
    control: tuple = ()
    # Inpainting: True where the frame is repainted (H x W bool); None repaints everything. Outside the
    # mask the backend keeps the prepared frame; the loop pastes it back through the blurred mask.
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class RenderContext:
    """What a backend needs to know once per render (not per frame)."""

    width: int
    height: int
    image_prompt: Path | None = None
    image_prompt_mode: str = "all"  # all | style | layout
    controlnets: tuple = ()  # (setting, source) of each ControlNet the render's units use, loaded in begin()


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
