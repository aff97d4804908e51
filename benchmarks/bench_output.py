"""Output costs per frame: PNG encoding, FrameWriter throughput, x264 encoding.

Run: PYTHONPATH=. python benchmarks/bench_output.py [--frames N]
Frames are smoothed noise (textured like real renders), since flat colour compresses for free.
"""
import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from deforum_engine.output import FrameWriter, RenderFolder, ResumeState, VideoWriter, encode_png


def noisy_frames(size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Smoothed noise that drifts a little from frame to frame, like a slow zoom."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2.0)
    frames = []
    for i in range(count):
        shifted = np.roll(base, shift=(i, 2 * i), axis=(0, 1))
        grain = rng.integers(-6, 7, shifted.shape, dtype=np.int16)
        frames.append(np.clip(shifted + grain, 0, 255).astype(np.uint8))
    return frames


def ms_per_call(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1000


def pil_png(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def bench_png(frames: list[np.ndarray]) -> None:
    for name, fn in [("cv2 default (what we use)", encode_png),
                     ("cv2 explicit level 1", lambda im: encode_png(im, 1)),
                     ("PIL default (level 6)", pil_png)]:
        size_kb = len(fn(frames[0])) / 1024
        print(f"  PNG {name:28s} {ms_per_call(fn, frames):7.1f} ms/frame  {size_kb:7.0f} KiB")


def bench_frame_writer(frames: list[np.ndarray], root: Path) -> None:
    """Frames/s through FrameWriter (PNG + fsync + resume state with two frame-sized arrays)."""
    folder = RenderFolder(root / "writer")
    start = time.perf_counter()
    put_time = 0.0
    with FrameWriter(folder) as writer:
        for i, frame in enumerate(frames):
            t = time.perf_counter()
            writer.put(i, frame, ResumeState(i + 1, {"prev": frame, "color_ref": frames[0]}))
            put_time += time.perf_counter() - t
    total = (time.perf_counter() - start) / len(frames) * 1000
    print(f"  FrameWriter (PNG+state, fsync) {total:7.1f} ms/frame  "
          f"({put_time / len(frames) * 1000:.1f} ms of it blocking in put, queue of 8)")


def bench_x264(frames: list[np.ndarray], root: Path) -> None:
    size = frames[0].shape[1]
    for preset in ("medium", "veryfast"):
        path = root / f"x264_{preset}.mp4"
        start = time.perf_counter()
        with VideoWriter(path, size, size, 24, crf=18, preset=preset) as video:
            for frame in frames:
                video.write(frame)
        seconds = time.perf_counter() - start
        print(f"  x264 {preset:9s} crf 18           {seconds / len(frames) * 1000:7.1f} ms/frame  "
              f"{len(frames) / seconds:6.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.frames} frames per measurement")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (512, 1024):
            frames = noisy_frames(size, args.frames)
            print(f"{size}x{size}:")
            bench_png(frames[:16])
            bench_frame_writer(frames, Path(tmp) / str(size))
            bench_x264(frames, Path(tmp))


if __name__ == "__main__":
    main()
