"""The studio as a client sees it: time to first frame, frames/s streamed, server memory after 20 renders.

Starts `deforum-engine serve` in its own process on a loopback port (a motion-preview server, and
with --model a server with the tiny random-weight SD model from tests/tiny_models.py), then:
- time to first frame: POST /api/jobs until the first `frame` event arrives on the job's stream;
- frames/s streamed: frames a client shows (a `frame` event, then the image it names fetched) per
  second of a render, beside the render's own frames/s;
- memory: the server's resident set (VmRSS) when idle, and after 20 renders one after another.

    python benchmarks/bench_studio.py [--size 512] [--frames 150] [--model-too]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def server(data: Path, *options: str):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    process = subprocess.Popen([sys.executable, "-m", "deforum_engine.cli", "serve", "--data", str(data),
                                "--port", str(port), *options], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                health = httpx.get(f"{url}/api/health", timeout=1).json()
                if health["preview_only"] or health["model_loaded"] or health["model_error"]:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def watch(url: str, document: dict, preview: bool, fetch_frames: bool) -> dict:
    """Create a render and follow its event stream as the page does; timings in seconds."""
    with httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        job = client.post(f"/api/jobs?preview={str(preview).lower()}", json=document).json()
        first = None
        shown = 0
        name = None
        with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: ") and name == "frame":
                    first = first if first is not None else time.perf_counter() - started
                    if fetch_frames:
                        assert client.get(json.loads(line[6:])["url"]).status_code == 200
                    shown += 1
                elif line.startswith("data: ") and name == "end":
                    break
        total = time.perf_counter() - started
        status = client.get(f"/api/jobs/{job['id']}").json()
    assert status["status"] == "finished", status
    rendering = status["finished"] - status["started"]
    return {"first_frame": first, "shown": shown, "seconds": total, "render_fps": status["frames"] / rendering,
            "streamed_fps": shown / rendering}


def engine_baseline(document: dict, preview: bool, folder: Path) -> tuple[float, float]:
    """The same render through the Python API in this process: (seconds to the first frame, frames/s)."""
    from deforum_engine import render
    from deforum_engine.config.settings import validate_settings

    started = time.perf_counter()
    first = []
    settings = validate_settings(document, "benchmark")
    result = render(settings, out=folder, preview=preview, quiet=True,
                    on_frame=lambda index, image: first.append(time.perf_counter() - started) if not first else None)
    return first[0], result.frames / result.seconds


def preview_figures(size: int, frames: int) -> None:
    with tempfile.TemporaryDirectory() as folder, server(Path(folder) / "data", "--preview") as (url, pid):
        idle = rss_mb(pid)
        small = {"W": 64, "H": 64, "max_frames": 2}
        watch(url, small, True, False)  # warm: first ffmpeg start, imports
        first = [watch(url, {**small, "seed": n}, True, False)["first_frame"] for n in range(5)]
        print(f"preview server: time to first frame (64x64, warm) median {sorted(first)[2] * 1000:.0f} ms")
        document = {"W": size, "H": size, "max_frames": frames, "motion_preset": "spiral_in", "video_preset": "veryfast"}
        run = watch(url, document, True, True)
        print(f"preview {size}x{size}, {frames} frames: first frame {run['first_frame'] * 1000:.0f} ms, render "
              f"{run['render_fps']:.1f} frames/s, streamed to the client {run['streamed_fps']:.1f} frames/s "
              f"({run['shown']} of {frames} frames shown, each fetched as the page does, JPEG)")
        first, rate = engine_baseline(document, True, Path(folder) / "baseline")
        print(f"  the same render through render() in-process: first frame {first * 1000:.0f} ms, {rate:.1f} frames/s")
        for n in range(20):
            watch(url, {"W": 256, "H": 256, "max_frames": 30, "seed": n, "motion_preset": "zoom_in"}, True, False)
        print(f"preview server RSS: {idle:.0f} MB idle, {rss_mb(pid):.0f} MB after 20+7 renders (256x256 x 30 frames)")


def model_figures() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tiny_sd

    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_sd(Path(folder) / "tiny-sd")
        with server(Path(folder) / "data", "--model", str(model)) as (url, pid):
            loaded = rss_mb(pid)
            document = {"W": 64, "H": 64, "max_frames": 8, "steps": 4, "video_preset": "veryfast"}
            watch(url, document, False, False)
            runs = [watch(url, {**document, "seed": n}, False, True) for n in range(20)]
            first = sorted(run["first_frame"] for run in runs)[10]
            fps = sorted(run["render_fps"] for run in runs)[10]
            print(f"tiny-model server: time to first frame (model loaded) median {first * 1000:.0f} ms, "
                  f"render {fps:.1f} frames/s at 64x64 with 4 steps")
            print(f"tiny-model server RSS: {loaded:.0f} MB with the model loaded, {rss_mb(pid):.0f} MB after 21 renders")
        import torch

        torch.set_num_threads(1)
        engine_baseline({**document, "model": str(model)}, False, Path(folder) / "warm")  # loads the model
        first, rate = engine_baseline({**document, "model": str(model)}, False, Path(folder) / "baseline")
        print(f"  the same render through render() in-process, model loaded: first frame {first * 1000:.0f} ms, "
              f"{rate:.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--model-too", action="store_true", help="also a server with the tiny SD model")
    args = parser.parse_args()
    preview_figures(args.size, args.frames)
    if args.model_too:
        model_figures()


if __name__ == "__main__":
    main()
