"""Lockstep renders against one-by-one renders on the same model: throughput in frames per second.

    python benchmarks/bench_lockstep.py [--renders 4] [--frames 8] [--size 64]

Uses the tiny random-weight test model (tests/tiny_models.py) on the CPU here; on a GPU, point
--model at an SD-shaped folder to measure the batching gain where it matters.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402

from deforum_engine.backends.diffusers import DiffusersBackend  # noqa: E402
from deforum_engine.batch.jobs import render_in_lockstep  # noqa: E402
from deforum_engine.rendering.recipe import render  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", help="a diffusers folder (default: build the tiny test model)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tiny_models import build_tiny_sd

            model = str(build_tiny_sd(Path(tmp) / "tiny"))
        jobs = [validate_settings({"W": args.size, "H": args.size, "max_frames": args.frames, "seed": seed,
                                   "steps": 8, "strength_schedule": "0:(0.5)", "model": model,
                                   "safety_checker": False, "video_preset": "ultrafast"})
                for seed in range(args.renders)]
        backend = DiffusersBackend(model, safety_checker=False)
        render(jobs[0], out=Path(tmp) / "warm", backend=backend, quiet=True)  # load the model, warm up
        start = time.perf_counter()
        for index, settings in enumerate(jobs):
            render(settings, out=Path(tmp) / f"solo{index}", backend=backend, quiet=True)
        solo = time.perf_counter() - start
        start = time.perf_counter()
        render_in_lockstep([(s, Path(tmp) / f"lock{i}") for i, s in enumerate(jobs)], backend)
        lockstep = time.perf_counter() - start
    total = args.renders * args.frames
    print(f"{args.renders} renders x {args.frames} frames at {args.size}x{args.size}, 4 denoising steps each, "
          f"{torch.get_num_threads()} threads, device {backend.pipelines.device}")
    print(f"one by one: {total / solo:6.2f} frames/s ({solo:.1f} s)")
    print(f"lockstep:   {total / lockstep:6.2f} frames/s ({lockstep:.1f} s), {solo / lockstep:.2f}x")


if __name__ == "__main__":
    main()
