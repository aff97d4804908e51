"""Milliseconds per call of the 3D warp, depth -> z, and a tiny depth model, at 512x512 and 1024x576.

Run: PYTHONPATH=. python benchmarks/bench_warp3d.py [--repeats 50]
The warp is timed over flat depth (use_depth_warping off, previews) and through a depth map, with
OpenCV's remap (what the CPU path runs) and torch's grid_sample on the CPU for comparison (what
runs on CUDA). The tiny model's figure is the cost of the loading/pre/post-processing path, not of
a real model (see bench_gpu.py --depth for real-size shapes).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_frame_steps import test_frame, timed_ms  # noqa: E402
from deforum_engine.models.depth import depth_to_z, load_depth_model  # noqa: E402
from deforum_engine.frame.motion3d import CameraStep, Lens, camera_move  # noqa: E402
from deforum_engine.frame.warp3d import _grid_sample, warp_3d, warp_3d_path  # noqa: E402

SIZES = ((512, 512), (1024, 576))
MOVE = camera_move(translation_x=0.5, translation_z=1.75, rotation_x=0.2, rotation_y=-0.3, rotation_z=0.1)


def frame(width: int, height: int) -> np.ndarray:
    return np.ascontiguousarray(test_frame(max(width, height), 0)[:height, :width])


def depth_map(width: int, height: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return (1.0 + (cols / width + rows / height) / 2).astype(np.float32)


def calls_for(width: int, height: int, tiny_model) -> dict:
    image, z = frame(width, height), depth_map(width, height)
    raw = torch.from_numpy(1.0 / z + 0.01 * np.random.default_rng(0).random(z.shape, dtype=np.float32))
    _, state = depth_to_z(raw, metric=False, normalization="steady")
    lens = Lens(70, 1.0)
    return {
        "warp 3D, flat depth, bicubic (OpenCV)": lambda: warp_3d(image, None, MOVE, lens),
        "warp 3D, depth map, bicubic (OpenCV)": lambda: warp_3d(image, z, MOVE, lens),
        "warp 3D, depth map, bilinear (OpenCV)": lambda: warp_3d(image, z, MOVE, lens, sampling_mode="bilinear"),
        "warp 3D along 4 frames (a cadence-4 key), depth map, bicubic":
            lambda: warp_3d_path(image, z, [CameraStep(MOVE, lens)] * 4),
        "warp 3D, depth map, bicubic (torch grid_sample, CPU)":
            lambda: _grid_sample(image, z, [CameraStep(MOVE, lens)], "border", "bicubic", "cpu")[0],
        "depth -> z, per_frame": lambda: depth_to_z(raw, metric=False, normalization="per_frame"),
        "depth -> z, steady": lambda: depth_to_z(raw, metric=False, normalization="steady", steady=state),
        "tiny DPT estimate (processor + model + resize)": lambda: tiny_model.predict(image),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (OpenCV keeps its own)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one OpenCV and one torch thread, timed by this thread's CPU clock (single-core "
                        "cost; steadier than wall time on a shared machine)")
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(1 if args.cpu_time else args.threads)
    if args.cpu_time:
        cv2.setNumThreads(1)
    clock = time.thread_time if args.cpu_time else time.perf_counter

    from tiny_depth import build_tiny_dpt

    with tempfile.TemporaryDirectory() as folder:
        tiny = load_depth_model(str(build_tiny_dpt(Path(folder))), device="cpu")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results = {size: {name: timed_ms(call, args.repeats, clock) for name, call in calls_for(*size, tiny).items()}
               for size in SIZES}
    print("| call (ms) | " + " | ".join(f"{w}x{h} median (min)" for w, h in SIZES) + " |")
    print("|---|" + "---:|" * len(SIZES))
    for name in results[SIZES[0]]:
        print(f"| {name} | " + " | ".join(f"{results[s][name][0]:.2f} ({results[s][name][1]:.2f})" for s in SIZES)
              + " |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
