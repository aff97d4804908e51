"""The /deforum_api's own overhead per job, as the extension's clients see it.

Starts `deforum-engine serve --preview` in its own process on a loopback port and, for N jobs of a
small Deforum settings file (motion previews, 64x64, 4 frames), measures:
- accept: POST /deforum_api/batches until the 202 answer (the settings file read, checked, planned
  and its folder written);
- status: one GET /deforum_api/jobs/{id} (the status model with phases, the folder's saved state);
- job wall time: POST until the status leaves ACCEPTED (polled every 5 ms), beside the same render
  run in-process with `render()` (the engine alone): the difference is what the API and its queue add.

    python benchmarks/bench_deforum_api.py [--jobs 20] [--frames 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_studio import server

DEFORUM = {"W": 64, "H": 64, "seed": 3, "use_init": False, "animation_mode": "2D", "fps": 15,
           "prompts": {"0": "a lighthouse"}, "zoom": "0:(1.01)", "batch_name": "bench"}
OPTIONS = {"deforum_save_gen_info_as_srt": True, "deforum_save_gen_info_as_srt_params": ["Zoom", "Prompt"]}


def in_process(frames: int, runs: int) -> float:
    """Median seconds of the same render with render() in this process (preview backend)."""
    from deforum_engine.config.importers.deforum import import_deforum
    from deforum_engine.config.settings import validate_settings
    from deforum_engine.rendering.recipe import render

    settings = validate_settings(import_deforum({**DEFORUM, "max_frames": frames}, "bench").settings)
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            start = time.perf_counter()
            render(settings, out=Path(folder) / f"r{run}", preview=True, quiet=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def through_api(frames: int, jobs: int) -> dict[str, float]:
    accept, status, wall = [], [], []
    with tempfile.TemporaryDirectory() as data, server(Path(data), "--preview") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(jobs):
            start = time.perf_counter()
            answer = client.post("/deforum_api/batches", json={
                "deforum_settings": {**DEFORUM, "max_frames": frames}, "options_overrides": OPTIONS})
            accept.append(time.perf_counter() - start)
            job_id = answer.json()["job_ids"][0]
            while True:
                asked = time.perf_counter()
                state = client.get(f"/deforum_api/jobs/{job_id}").json()
                status.append(time.perf_counter() - asked)
                if state["status"] != "ACCEPTED":
                    break
                time.sleep(0.005)
            wall.append(time.perf_counter() - start)
            assert state["status"] == "SUCCEEDED", state
    return {"accept": statistics.median(accept), "status": statistics.median(status), "wall": statistics.median(wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    api = through_api(args.frames, args.jobs)
    alone = in_process(args.frames, max(5, args.jobs // 2))
    print(f"{args.jobs} jobs of {args.frames} preview frames at 64x64 (.srt on), medians:")
    print(f"  POST /deforum_api/batches -> 202: {api['accept'] * 1000:.1f} ms")
    print(f"  GET /deforum_api/jobs/{{id}}: {api['status'] * 1000:.1f} ms")
    print(f"  job, POST to SUCCEEDED: {api['wall'] * 1000:.1f} ms; render() in-process: {alone * 1000:.1f} ms; "
          f"the API's own overhead: {(api['wall'] - alone) * 1000:.1f} ms per job")


if __name__ == "__main__":
    main()
