"""NSFW screening of image prompts with the loaded model's own safety checker, before a render starts.

The seed product screens image uploads; here the screen is the checker the model ships (SD 1.x
hub repos have `safety_checker` + `feature_extractor`). A model without one (SDXL, single-file
checkpoints, a model loaded with the checker off) cannot screen, and renders unscreened.
"""
from __future__ import annotations

from pathlib import Path

from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import load_image


def can_screen(pipelines) -> bool:
    pipe = pipelines.txt2img
    return getattr(pipe, "safety_checker", None) is not None and getattr(pipe, "feature_extractor", None) is not None


def screen_image(pipelines, path: Path, label: str) -> None:
    """SettingsError when the model's safety checker flags the image; nothing when it passes."""
    if not can_screen(pipelines):
        return
    import numpy as np
    import torch
    from PIL import Image

    pipe = pipelines.txt2img
    image = load_image(path)
    pixels = pipe.feature_extractor(Image.fromarray(image), return_tensors="pt").pixel_values
    pixels = pixels.to(device=pipelines.device, dtype=pipelines.dtype)
    with torch.no_grad():
        _, flagged = pipe.safety_checker(clip_input=pixels, images=[image.astype(np.float32) / 255.0])
    if flagged[0]:
        raise SettingsError(
            f"image_prompt: {label} was flagged as NSFW by the model's safety checker; choose another image"
        )
