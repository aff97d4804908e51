"""Video in: optical flow per frame pair (DIS Medium, DIS Fine, Farneback) at 512x512 and 1024x576,
the clip decode rate at 512x512, and the hybrid steps (composite with a Difference mask, Affine
matrix, consistency-checked flow).

Run: PYTHONPATH=.:tests python benchmarks/bench_video.py [--repeats 10] [--frames 300]
Flow and step figures are the median and the fastest of `repeats` calls on a panned texture; the
decode figure streams a `frames`-frame 512x512 H.264 clip made first in a temporary folder. The
render figures (Video Input and hybrid previews vs a plain 2D preview) are printed by --render SIZE.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from video_clips import panned_frames, write_clip  # noqa: E402

from deforum_engine import render  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from deforum_engine.video.clip import frame_map, probe_clip, read_frames  # noqa: E402
from deforum_engine.video.flow import OPENCV_METHODS, choose_flow, consistent_flow  # noqa: E402
from deforum_engine.video.hybrid import MaskValues, hybrid_composite, motion_matrix  # noqa: E402


def timed_ms(step, repeats: int) -> tuple[float, float]:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), 1e3 * min(times)


def flow_figures(repeats: int) -> None:
    print("optical flow, ms per frame pair (median / best):")
    for width, height in ((512, 512), (1024, 576)):
        a, b = panned_frames(2, width, height)
        for method in OPENCV_METHODS:
            flow = choose_flow(method, "bench")
            median, best = timed_ms(lambda flow=flow, a=a, b=b: flow(a, b), repeats)
            print(f"  {method:<11} {width}x{height}: {median:7.1f} / {best:7.1f}")


def step_figures(repeats: int) -> None:
    a, b = panned_frames(2, 512, 512)
    steps = {
        "composite, Difference mask, contrast + auto-contrast": lambda: hybrid_composite(
            a, b, "Difference", 0.5, MaskValues(contrast=1.5, auto_contrast=True, cutoff_low=5, cutoff_high=95)),
        "Affine matrix (SIFT + RANSAC)": lambda: motion_matrix(a, b, "Affine"),
        "DIS Medium flow with consistency check": lambda: consistent_flow(a, b, choose_flow("DIS Medium", "b"), 2),
    }
    print("hybrid steps at 512x512, ms per frame (median / best):")
    for name, step in steps.items():
        median, best = timed_ms(step, repeats)
        print(f"  {name:<42} {median:7.1f} / {best:7.1f}")


def decode_figure(frames: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        pictures = panned_frames(min(frames, 60), 512, 512)
        path = write_clip(Path(folder) / "bench.mp4", [pictures[i % len(pictures)] for i in range(frames)], crf=18)
        clip = probe_clip(path, "bench")
        start = time.perf_counter()
        count = sum(1 for _ in read_frames(clip, frame_map(clip, 1, 0, -1)))
        seconds = time.perf_counter() - start
        print(f"decode 512x512 H.264, streamed: {count / seconds:.0f} frames/s ({count} frames in {seconds:.2f} s)")


def render_figures(size: int, frames: int) -> None:
    """Motion previews, ms per frame: plain 2D, Video Input, 2D with hybrid motion (flow, Affine)."""
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(Path(folder) / "clip.mp4", panned_frames(frames, size, size), crf=18)
        base = {"W": size, "H": size, "max_frames": frames, "seed": 1, "video_preset": "ultrafast"}
        cases = {
            "plain 2D preview": {},
            "Video Input preview": {"animation_mode": "Video Input", "video_init_path": str(clip)},
            "2D + hybrid motion, Optical Flow (DIS Medium)": {"hybrid_motion": "Optical Flow", "video_init_path":
                                                               str(clip), "hybrid_flow_method": "DIS Medium"},
            "2D + hybrid motion, Affine": {"hybrid_motion": "Affine", "video_init_path": str(clip)},
            "2D + hybrid composite Normal, Difference mask": {"hybrid_composite": "Normal", "video_init_path":
                                                               str(clip), "hybrid_comp_mask_type": "Difference"},
        }
        print(f"motion previews at {size}x{size}, {frames} frames, ms per frame (render() wall time):")
        for number, (name, values) in enumerate(cases.items()):
            settings = validate_settings({**base, **values})
            start = time.perf_counter()
            render(settings, out=Path(folder) / f"r{number}", preview=True, quiet=True)
            print(f"  {name:<48} {1e3 * (time.perf_counter() - start) / frames:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--render", type=int, default=0, metavar="SIZE", help="also time previews at SIZE x SIZE")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    flow_figures(args.repeats)
    step_figures(args.repeats)
    decode_figure(args.frames)
    if args.render:
        render_figures(args.render, 30)


if __name__ == "__main__":
    main()
