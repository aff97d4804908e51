"""Milliseconds per call of each per-frame image step, and of the whole chain, at 512² and 1024².

Run: PYTHONPATH=. python benchmarks/bench_frame_steps.py [--repeats 50] [--sizes 512 1024]
Prints the median and the fastest of `repeats` calls on a textured, grainy RGB frame. The
machine's load average is printed too: on a shared machine the medians stretch, the minima less.
"""
import argparse
import os
import time

import cv2
import numpy as np

from deforum_engine.frame.adjust import adjust_contrast, unsharp_mask
from deforum_engine.frame.color import color_reference, match_color
from deforum_engine.frame.noise import add_noise
from deforum_engine.frame.motion import PerspectiveFlip, motion_matrix
from deforum_engine.frame.warp import warp_frame


def test_frame(size: int, seed: int) -> np.ndarray:
    """A colourful frame with soft shapes and fine grain, like a diffused image."""
    rng = np.random.default_rng(seed)
    blobs = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    base = cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def timed_ms(step, repeats: int, clock=time.perf_counter) -> tuple[float, float]:
    """Median and minimum time of step() in ms on `clock`, after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = clock()
        step()
        times.append(clock() - start)
    return 1e3 * float(np.median(times)), 1e3 * min(times)


def steps_for(size: int) -> dict:
    """The benchmarked calls at one frame size, by name."""
    image = test_frame(size, 0)
    ref = {mode: color_reference(test_frame(size, 1), mode) for mode in ("RGB", "HSV", "LAB")}
    move = {"angle": 0.5, "zoom": 1.0025, "translation_x": 1.5, "translation_y": -0.75}
    motion = motion_matrix(size, size, **move)
    flip = PerspectiveFlip(theta=0.3, phi=1.0, gamma=-0.5, fv=53)
    flipped = motion_matrix(size, size, **move, perspective=flip)

    def chain():
        frame = warp_frame(image, motion, "replicate")
        frame = match_color(frame, ref["LAB"])
        frame = adjust_contrast(frame, 0.98)
        frame = unsharp_mask(frame, 5, 1.0, 0.1, 0)
        return add_noise(frame, 0.065, seed=7, noise_type="perlin")

    return {
        "warp zoom+angle+translation": lambda: warp_frame(image, motion, "replicate"),
        "warp with perspective flip": lambda: warp_frame(image, flipped, "replicate"),
        "match color LAB": lambda: match_color(image, ref["LAB"]),
        "match color HSV": lambda: match_color(image, ref["HSV"]),
        "match color RGB": lambda: match_color(image, ref["RGB"]),
        "contrast 0.98": lambda: adjust_contrast(image, 0.98),
        "unsharp k5 s1 a0.1": lambda: unsharp_mask(image, 5, 1.0, 0.1, 0),
        "unsharp k5 s1 a0.1 threshold 5": lambda: unsharp_mask(image, 5, 1.0, 0.1, 5),
        "noise perlin 0.065": lambda: add_noise(image, 0.065, seed=7, noise_type="perlin"),
        "noise uniform 0.065": lambda: add_noise(image, 0.065, seed=7, noise_type="uniform"),
        "chain: warp+LAB+contrast+unsharp+perlin": chain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument(
        "--cpu-time", action="store_true",
        help="one OpenCV thread, timed by this thread's CPU clock (single-core cost; steadier "
        "than wall time on a shared machine)",
    )
    args = parser.parse_args()
    clock = time.thread_time if args.cpu_time else time.perf_counter
    if args.cpu_time:
        cv2.setNumThreads(1)
    print(f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results = {}
    for size in args.sizes:
        steps = steps_for(size)
        results[size] = {name: timed_ms(step, args.repeats, clock) for name, step in steps.items()}
    print("| step (ms per call) | " + " | ".join(f"{s}² median (min)" for s in args.sizes) + " |")
    print("|---|" + "---:|" * len(args.sizes))
    for name in results[args.sizes[0]]:
        cells = [f"{results[s][name][0]:.2f} ({results[s][name][1]:.2f})" for s in args.sizes]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
