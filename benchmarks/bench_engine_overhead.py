"""Engine overhead: DiffusersBackend.generate against a bare diffusers img2img loop.

Both run the same feedback loop on the same tiny random-weight SD model (tests/tiny_models.py):
N frames, each img2img of the previous output with the same prompt, steps, strength, sampler and
per-frame seeds. The bare loop is what a user would write: prompt strings (re-encoded every
frame), the previous frame in as a float array, numpy out. (A PIL image in gives a tensor in a
different memory layout, and convolutions then differ by about 1e-6: a pixel now and then would
round the other way.) It is given the same num_inference_steps the engine chooses, so
both run exactly the same denoising steps, and the frames must come out identical.

    python benchmarks/bench_engine_overhead.py [--frames 30] [--size 64] [--steps 4] [--denoise 0.65]

Prints ms/frame for both and the ratio engine / bare (target <= 1.10).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deforum_engine.backends.base import FrameRequest, RenderContext  # noqa: E402
from deforum_engine.backends.diffusers import DiffusersBackend  # noqa: E402
from deforum_engine.prompts.samplers import step_counts  # noqa: E402
from tiny_models import build_tiny_sd  # noqa: E402

PROMPT, NEGATIVE, SAMPLER = "a lighthouse on a cliff, stormy sea", "blurry, low quality", "Euler a"


def engine_loop(backend: DiffusersBackend, start: np.ndarray, args) -> list[np.ndarray]:
    """N frames through the engine's backend."""
    frames, image = [], start
    for index in range(args.frames):
        request = FrameRequest(
            index=index, image=image, prompt=PROMPT, negative_prompt=NEGATIVE, seed=1000 + index,
            steps=args.steps, cfg_scale=7.0, denoise=args.denoise, sampler=SAMPLER,
        )
        image = backend.generate(request)
        frames.append(image)
    return frames


def bare_loop(pipe, start: np.ndarray, args) -> list[np.ndarray]:
    """The same N frames with plain diffusers calls."""
    num_inference_steps, _ = step_counts(args.steps, args.denoise)
    frames, image = [], start
    for index in range(args.frames):
        output = pipe(
            prompt=PROMPT, negative_prompt=NEGATIVE, image=image[None] / np.float32(255), strength=args.denoise,
            num_inference_steps=num_inference_steps, guidance_scale=7.0, output_type="np",
            generator=torch.Generator("cpu").manual_seed(1000 + index),
        )
        image = (output.images[0] * 255).round().astype(np.uint8)
        frames.append(image)
    return frames


def timed(loop, *loop_args) -> tuple[float, list[np.ndarray]]:
    started = time.perf_counter()
    frames = loop(*loop_args)
    return time.perf_counter() - started, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--denoise", type=float, default=0.65, help="img2img strength (1 - Deforum strength)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each loop")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import AutoPipelineForImage2Image, EulerAncestralDiscreteScheduler

    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_sd(Path(folder) / "tiny-sd")
        backend = DiffusersBackend(str(model), device="cpu")
        backend.begin(RenderContext(width=args.size, height=args.size))
        pipe = AutoPipelineForImage2Image.from_pretrained(str(model), local_files_only=True).to("cpu")
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    start = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)

    engine_loop(backend, start, argparse.Namespace(**{**vars(args), "frames": 2}))  # warm-up both
    bare_loop(pipe, start, argparse.Namespace(**{**vars(args), "frames": 2}))
    engine_times, bare_times = [], []
    for _ in range(args.repeats):
        seconds, engine_frames = timed(engine_loop, backend, start, args)
        engine_times.append(seconds)
        seconds, bare_frames = timed(bare_loop, pipe, start, args)
        bare_times.append(seconds)

    engine_ms = statistics.median(engine_times) / args.frames * 1000
    bare_ms = statistics.median(bare_times) / args.frames * 1000
    _, effective = step_counts(args.steps, args.denoise)
    identical = all(np.array_equal(a, b) for a, b in zip(engine_frames, bare_frames))
    print(f"{args.frames} frames, {args.size}x{args.size}, steps {args.steps}, denoise {args.denoise} "
          f"({effective} denoising steps), {SAMPLER}, {args.threads} thread(s), median of {args.repeats}")
    print(f"engine (DiffusersBackend.generate): {engine_ms:8.1f} ms/frame")
    print(f"bare diffusers img2img loop:        {bare_ms:8.1f} ms/frame")
    print(f"ratio engine / bare:                {engine_ms / bare_ms:8.3f}  (target <= 1.10)")
    print(f"frames identical: {identical}")


if __name__ == "__main__":
    main()
