"""Batch throughput: preview renders per minute with 1 and 2 workers (local processes, and Ray).

    python benchmarks/bench_batch.py [--jobs 8] [--frames 60] [--size 256] [--ray]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from deforum_engine.batch.local import run_batch


def make_jobs(folder: Path, count: int, frames: int, size: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"job{index}.json"
        path.write_text(json.dumps({"W": size, "H": size, "max_frames": frames, "seed": index,
                                    "motion_preset": "spiral_in", "video_preset": "veryfast"}))
        paths.append(path)
    return paths


def throughput(paths: list[Path], out: Path, executor: str, workers: int) -> float:
    start = time.perf_counter()
    report = run_batch(paths, out, preview=True, executor=executor, workers=workers)
    seconds = time.perf_counter() - start
    assert report.ok, report.summary()
    return len(paths) / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ray", action="store_true", help="also measure the Ray executor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jobs(Path(tmp), args.jobs, args.frames, args.size)
        print(f"{args.jobs} preview jobs of {args.frames} frames at {args.size}x{args.size}")
        runs = [("local", 1), ("local", 2)] + ([("ray", 1), ("ray", 2)] if args.ray else [])
        for executor, workers in runs:
            if executor == "ray":
                import ray

                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            try:
                rate = throughput(paths, Path(tmp) / f"{executor}{workers}", executor, workers)
            finally:
                if executor == "ray":
                    ray.shutdown()
            print(f"{executor:>5} executor, {workers} worker(s): {rate:6.1f} renders per minute")


if __name__ == "__main__":
    main()
