"""The cost of a ControlNet unit per diffused frame: one canny unit against none, through render().

    python benchmarks/bench_controlnet.py [--frames 8] [--size 64] [--steps 8] [--threads 1]

Uses the tiny random-weight test model and a ControlNet copied from its UNet (tests/tiny_models.py)
on the CPU. A ControlNet is the UNet's encoder plus the middle block, so on real models one unit adds
roughly half a UNet call per step inside its guidance window; `bench_gpu.py --controlnet` measures
that for SD 1.5 and SDXL shapes on a GPU. Also times the same unit with its guidance window on half
of the steps, and the canny preprocessor alone.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from deforum_engine import render  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402


def per_frame(settings, folder: Path, frames: int) -> float:
    """Seconds per frame of a render (after a 2-frame warm-up render that loads everything)."""
    render(settings.model_copy(update={"max_frames": 2}), out=folder.with_name(folder.name + "-warm"), quiet=True)
    start = time.perf_counter()
    render(settings, out=folder, quiet=True)
    return (time.perf_counter() - start) / frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tiny_models import build_tiny_controlnet, build_tiny_sd

    from deforum_engine.control.preprocess import canny

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, net = build_tiny_sd(tmp / "sd"), build_tiny_controlnet(tmp / "cn") / "folder"
        picture = np.zeros((args.size, args.size, 3), dtype=np.uint8)
        picture[args.size // 4: 3 * args.size // 4, args.size // 4: 3 * args.size // 4] = 255
        Image.fromarray(picture).save(tmp / "square.png")
        base = {"W": args.size, "H": args.size, "max_frames": args.frames, "seed": 1, "steps": args.steps,
                "strength_schedule": "0:(0.5)", "model": str(model), "safety_checker": False,
                "video_preset": "ultrafast"}
        unit = {"cn_1_enabled": True, "cn_1_model": str(net), "cn_1_module": "canny", "cn_1_vid_path": str(tmp / "square.png"),
                "cn_1_threshold_a": 100, "cn_1_threshold_b": 200, "cn_1_processor_res": args.size}
        none = per_frame(validate_settings(base), tmp / "none", args.frames)
        one = per_frame(validate_settings({**base, **unit}), tmp / "one", args.frames)
        half = per_frame(validate_settings({**base, **unit, "cn_1_guidance_end": 0.5}), tmp / "half", args.frames)
        start = time.perf_counter()
        for _ in range(100):
            canny(picture, 100, 200)
        preprocess = (time.perf_counter() - start) / 100
    steps = int(0.5 * args.steps) + 1
    print(f"tiny model, {args.size}x{args.size}, {args.frames} frames, {steps} denoising steps per img2img frame, "
          f"{args.threads} torch thread(s)")
    print(f"no unit:               {none * 1000:7.1f} ms per frame")
    print(f"one canny unit:        {one * 1000:7.1f} ms per frame ({one / none:.2f}x)")
    print(f"unit, window 0 .. 0.5: {half * 1000:7.1f} ms per frame ({half / none:.2f}x)")
    print(f"canny preprocessor:    {preprocess * 1000:7.3f} ms per {args.size}x{args.size} picture")


if __name__ == "__main__":
    main()
