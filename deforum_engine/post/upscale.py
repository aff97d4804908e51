"""Upscaling frames with a Real-ESRGAN network, in tiles so memory stays bounded at any size.

Each tile is run with `overlap` pixels of its neighbours around it and only its own part is kept, so
tiles join without seams: wherever the network's reach is within the overlap, a tiled upscale equals
an untiled one (tests: within 1 level of 255). The model's own factor (x4 for Deforum's models) is
brought to `r_upscale_factor` (x2, x3, x4) with a Lanczos resize, as Real-ESRGAN's `outscale` does.

Deforum runs the realesrgan-ncnn-vulkan binary on copies of the frames; the engine runs the same
published networks in torch, on the render folder's frames or any video, and writes
`<name>_Upscaled_x2.mp4` (and its frames in `upscaled_frames_x2/` when r_upscale_keep_imgs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.post.frames import FrameSink, FrameSource

TILE = 256  # input pixels per tile side
OVERLAP = 32  # input pixels of context around each tile
FACTORS = {"x2": 2, "x3": 3, "x4": 4}


@dataclass(frozen=True)
class Upscaling:
    """What to make: frames `factor` times larger, kept as PNGs or not."""

    factor: int = 2
    keep_frames: bool = True
    tile: int = TILE
    overlap: int = OVERLAP

    def __post_init__(self):
        if self.factor not in FACTORS.values():
            raise SettingsError(f"r_upscale_factor: x{self.factor} is not one of {', '.join(FACTORS)}")

    @property
    def suffix(self) -> str:
        return f"_Upscaled_x{self.factor}"

    def frames_dir(self, source: FrameSource) -> Path:
        return source.out_dir / f"upscaled_frames_x{self.factor}"


def parse_factor(value: str | int) -> int:
    """`x2` / `x3` / `x4` (Deforum's r_upscale_factor) or 2 / 3 / 4."""
    text = str(value).strip().lower()
    factor = FACTORS.get(text, FACTORS.get(f"x{text}"))
    if factor is None:
        raise SettingsError(f"r_upscale_factor: {value!r} is not one of {', '.join(FACTORS)}")
    return factor


def upscale_source(source: FrameSource, job: Upscaling, model, device: str = "cpu") -> Path:
    """Write `<name>_Upscaled_xF.mp4` beside the source, soundtrack kept; returns the video."""
    video = source.product(job.suffix)
    size = (source.width * job.factor, source.height * job.factor)
    frames_dir = job.frames_dir(source) if job.keep_frames else None
    with FrameSink(video, size, source.fps, source.count, source.audio, frames_dir, source.crf, source.preset) as sink:
        for frame in source.frames():
            sink.write(upscale_image(model, frame, job.factor, job.tile, job.overlap, device))
    return video


def upscale_image(model, image: np.ndarray, factor: int, tile: int = TILE, overlap: int = OVERLAP,
                  device: str = "cpu") -> np.ndarray:
    """An RGB uint8 image `factor` times larger: the network in tiles, then a Lanczos resize to the factor."""
    import torch
    from torch.nn import functional as F

    height, width = image.shape[:2]
    mod = model.spec.unshuffle
    data = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float() / 255
    padded = F.pad(data, (0, -width % mod, 0, -height % mod), mode="reflect") if mod > 1 else data
    with torch.inference_mode():
        out = run_tiled(model, padded, _multiple(tile, mod), _multiple(overlap, mod))
    scale = model.spec.scale
    out = out[0, :, :height * scale, :width * scale].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    if scale != factor:
        out = cv2.resize(out, (width * factor, height * factor), interpolation=cv2.INTER_LANCZOS4)
    return out


def _multiple(value: int, mod: int) -> int:
    return max(mod, value // mod * mod)


def run_tiled(model, image, tile: int, overlap: int):
    """The model on (1, 3, H, W) `image` tile by tile, each with `overlap` pixels of context."""
    scale = model.spec.scale
    _, channels, height, width = image.shape
    out = image.new_zeros((1, channels, height * scale, width * scale))
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
            result = model(image[:, :, y0:y1, x0:x1])
            oy, ox = (top - y0) * scale, (left - x0) * scale
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] = \
                result[:, :, oy:oy + (bottom - top) * scale, ox:ox + (right - left) * scale]
    return out
