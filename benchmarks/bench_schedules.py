"""Schedule evaluation speed: 20 realistic schedules over 100,000 frames.

Run: `python benchmarks/bench_schedules.py`. Prints the median time of evaluating all 20 (target:
under 100 ms on a 2-core machine), the slowest schedules, and, separately, a schedule with a
keyframe on every frame (the shape of exported keyframe data).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deforum_engine.schedules import evaluate_schedule  # noqa: E402

FRAMES = 100_000
REPEATS = 7
SCHEDULES = {
    "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))",
    "angle": "0:(0), 25000:(0.5*sin(t/90)), 75000:(0)",
    "translation_x": "0:(10*sin(2*3.14*t/10))",
    "translation_y": "0:(0), 30000:(5), 60000:(-5), 99999:(0)",
    "transform_center_x": "0: (0.5)",
    "transform_center_y": "0: (0.5)",
    "perspective_flip_theta": "0:(0)",
    "perspective_flip_phi": "0:(t%15)",
    "perspective_flip_gamma": "0:(1+0.05*where(beat%1<0.1, 1, 0))",
    "perspective_flip_fv": "0: (53)",
    "noise_schedule": "0: (0.065), 50000: (0.04)",
    "strength_schedule": "0: (0.65), 20000: (0.55+0.1*cos(t/40)), 80000: (0.7)",
    "contrast_schedule": "0: (1.0)",
    "cfg_scale_schedule": "0:(7), 50000:(9), 99999:(7)",
    "kernel_schedule": "0: (5)",
    "sigma_schedule": "0: (1.0)",
    "amount_schedule": "0: (0.1), 10000: (where(t%300<10, 0.3, 0.1))",
    "threshold_schedule": "0: (0)",
    "steps_schedule": "0: (25), 50000: (30)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
}
OPTIONS = {"seed": 42, "fps": 15, "variables": {"bpm": 120}}


def time_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    for name, text in SCHEDULES.items():  # warm-up: numexpr compiles each expression once
        evaluate_schedule(text, FRAMES, setting=name, **OPTIONS)
    per_schedule = {name: [] for name in SCHEDULES}
    totals = []
    for _ in range(REPEATS):
        total = 0.0
        for name, text in SCHEDULES.items():
            elapsed = time_ms(lambda: evaluate_schedule(text, FRAMES, setting=name, **OPTIONS))
            per_schedule[name].append(elapsed)
            total += elapsed
        totals.append(total)
    print(f"{len(SCHEDULES)} schedules x {FRAMES:,} frames: median {statistics.median(totals):.1f} ms "
          f"(min {min(totals):.1f}, max {max(totals):.1f}, {REPEATS} runs; target < 100 ms)")
    slowest = sorted(per_schedule, key=lambda name: -statistics.median(per_schedule[name]))[:5]
    for name in slowest:
        print(f"  {name:24s} {statistics.median(per_schedule[name]):6.2f} ms")
    every_frame = ", ".join(f"{frame}:({1 + 0.0001 * frame:.4f})" for frame in range(FRAMES))
    print(f"a keyframe on each of {FRAMES:,} frames: {time_ms(lambda: evaluate_schedule(every_frame, FRAMES)):.0f} ms")


if __name__ == "__main__":
    main()
