"""Shared pieces of the studio tests: image files of every kind, a tiny model with a safety checker,
the job waiters. A plain module (not fixtures) so the real-server tests and the benchmark can use it."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from polling import wait_for

FLAGGED_SEED = 99  # the seed of the picture the tiny safety checker is built to flag


def picture(width: int = 64, height: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random picture (RGB uint8)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def flagged_picture() -> np.ndarray:
    """Red with black stripes: the picture the tiny safety checker flags."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :, 0] = 255
    image[::8] = 0
    return image


def encoded(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return buffer.getvalue()


def png_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """A PNG whose header claims width x height pixels (over the engine's 40 megapixel limit), in 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def wait_for_job(get_status, statuses=("finished", "failed", "cancelled"), timeout: float = 60.0, every: float = 0.02,
                 until=None) -> dict:
    """Poll `get_status()` (a job's status dict) until its status is in `statuses` (or `until(status)`)."""
    return wait_for(get_status, until or (lambda status: status["status"] in statuses), timeout, every)


def read_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted((folder / "frames").glob("*.png"))]


def build_tiny_sd_with_checker(folder: Path, base: Path) -> Path:
    """The tiny SD pipeline plus a tiny StableDiffusionSafetyChecker (and its CLIPImageProcessor) whose one
    live concept is the embedding of `flagged_picture()`: that picture is flagged, other pictures are not."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    pipe = StableDiffusionPipeline.from_pretrained(str(base), safety_checker=None, requires_safety_checker=False)
    layers = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config=dict(**layers, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
                        vision_config=dict(**layers, image_size=32, patch_size=8), projection_dim=32)
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config).eval()
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixels = extractor(Image.fromarray(flagged_picture()), return_tensors="pt").pixel_values
    with torch.no_grad():
        concept = checker.visual_projection(checker.vision_model(pixels)[1])[0]
        checker.concept_embeds.copy_(-concept.expand_as(checker.concept_embeds))  # opposite: never close
        checker.concept_embeds[0] = concept
        checker.concept_embeds_weights.fill_(1.0)
        checker.concept_embeds_weights[0] = 0.95  # flagged when the cosine to the concept passes 0.95
        checker.special_care_embeds.copy_(-concept.expand_as(checker.special_care_embeds))
        checker.special_care_embeds_weights.fill_(1.0)
    components = {**pipe.components, "safety_checker": checker, "feature_extractor": extractor}
    StableDiffusionPipeline(**components, requires_safety_checker=True).save_pretrained(str(folder))
    return folder
