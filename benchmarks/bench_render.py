"""Whole preview renders: ms per frame at 512x512 and 1024x1024, against the H.264 encoder alone,
and the memory over a long render.

    python benchmarks/bench_render.py            # 512 and 1024, presets medium and veryfast
    python benchmarks/bench_render.py --memory   # adds a 1,000-frame render at 512x512, RSS sampled

Settings are the heavy Deforum 2D chain: motion with perspective flip, LAB coherence, contrast,
anti-blur and perlin noise, PNG frames and the video streamed while rendering.
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from deforum_engine.rendering.recipe import render
from deforum_engine.output import VideoWriter, read_frame
from deforum_engine.config.settings import validate_settings


def heavy_settings(size: int, frames: int, preset: str) -> dict:
    return {
        "W": size, "H": size, "max_frames": frames, "seed": 1, "video_preset": preset,
        "zoom": "0:(1.01)", "angle": "0:(0.5)", "translation_x": "0:(1)",
        "enable_perspective_flip": True, "perspective_flip_phi": "0:(0.5*sin(t/10))",
        "color_coherence": "LAB", "contrast_schedule": "0:(1.01)", "amount_schedule": "0:(0.2)",
        "noise_schedule": "0:(0.04)", "noise_type": "perlin",
    }


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def render_ms(size: int, frames: int, preset: str, out: Path, on_frame=None) -> float:
    settings = validate_settings(heavy_settings(size, frames, preset))
    start = time.perf_counter()
    render(settings, out=out, preview=True, quiet=True, on_frame=on_frame)
    return (time.perf_counter() - start) * 1000 / frames


def encoder_only_ms(folder: Path, size: int, frames: int, preset: str) -> float:
    """The same frames through the same encoder settings, with no loop: the floor a render can reach."""
    images = [read_frame(path) for path in sorted((folder / "frames").glob("*.png"))[:frames]]
    start = time.perf_counter()
    with VideoWriter(folder / "encoder-only.mp4", size, size, 15, crf=17, preset=preset) as video:
        for image in images:
            video.write(image)
    return (time.perf_counter() - start) * 1000 / len(images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'size':>9} {'preset':>9} {'render ms/frame':>16} {'encoder alone':>14}")
        for size in (512, 1024):
            frames = args.frames if size == 512 else args.frames // 2
            for preset in ("veryfast", "medium"):
                out = Path(tmp) / f"r{size}{preset}"
                total = render_ms(size, frames, preset, out)
                encoder = encoder_only_ms(out, size, frames, preset)
                print(f"{size}x{size} {preset:>9} {total:>16.1f} {encoder:>14.1f}")
        if args.memory:
            samples = []
            out = Path(tmp) / "memory"
            total = render_ms(512, 1000, "veryfast", out,
                              on_frame=lambda i, image: samples.append(rss_mb()) if i % 100 == 0 else None)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"1,000 frames at 512x512: {total:.1f} ms/frame; RSS every 100 frames (MB): "
                  + ", ".join(f"{s:.0f}" for s in samples) + f"; process peak {peak:.0f} MB")
            growth = np.polyfit(np.arange(len(samples)), samples, 1)[0]
            print(f"RSS trend: {growth:+.2f} MB per 100 frames")


if __name__ == "__main__":
    main()
