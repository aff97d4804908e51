"""Prompt costs: a 100,000-frame plan whose prompts use Deforum's backtick maths, and the time to
embed one distinct prompt (plain, weighted, long, AND) on the tiny SD model.

    python benchmarks/bench_prompts.py

The tiny model's text encoder is 2 layers of width 32, so its embedding times show the engine's
own work (parsing, chunking, weighting) more than the encoder's: on SD 1.5 the encoder dominates.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from deforum_engine.plan.frame_plan import build_plan  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402

PLANS = {
    "two switching sub-prompts (2 distinct texts per key)":
        {"0": "a cat:`where(t%240 < 120, 1, 0)` AND a dog:`where(t%240 < 120, 0, 1)`"},
    "a weight that changes every frame (100,000 distinct texts)":
        {"0": "a cat:`0.5 + 0.5*sin(t/30)` AND a dog:`0.5 - 0.5*sin(t/30)`"},
}
PROMPTS = {
    "plain (diffusers' encode_prompt)": "a lighthouse on a cliff, stormy sea",
    "weighted": "a (lighthouse:1.3) on a cliff, [stormy] sea",
    "long: 3 chunks": "a lighthouse on a cliff, stormy sea, " * 6,
    "AND, 2 sub-prompts": "a lighthouse:0.6 AND a stormy sea:0.4",
}


def median_ms(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def plans() -> None:
    for label, prompts in PLANS.items():
        settings = validate_settings({"max_frames": 100_000, "seed": 1, "prompts": prompts})
        build_plan(settings)  # compile the expressions once
        print(f"100,000-frame plan, {label}: {median_ms(lambda: build_plan(settings), 5):.0f} ms median")


def embeddings() -> None:
    import torch

    from deforum_engine.backends.base import RenderContext
    from deforum_engine.backends.diffusers import DiffusersBackend
    from tiny_models import build_tiny_sd

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        backend = DiffusersBackend(str(build_tiny_sd(Path(folder))), safety_checker=False)
        backend.begin(RenderContext(width=64, height=64))
        for label, prompt in PROMPTS.items():
            def once():
                backend._prompts.clear()
                backend._texts.clear()
                backend._encoded(prompt, "blurry, low quality")
            once()
            print(f"embed one distinct prompt, {label}: {median_ms(once, 30):.2f} ms median (tiny SD)")


if __name__ == "__main__":
    plans()
    embeddings()
