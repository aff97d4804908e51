"""Build a 100,000-frame plan with 20 schedules and print the time (target: under 100 ms on 2 cores).

    python benchmarks/bench_plan.py
"""
import statistics
import time

from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.config.settings import validate_settings

SETTINGS = {
    "max_frames": 100_000,
    "seed": 42,
    "seed_behavior": "ladder",
    "zoom": "0:(1.0025+0.002*sin(1.25*3.14*t/30))",
    "angle": "0:(0), 300:(2), 900:(0.5*sin(t/40)), 5000:(-1)",
    "translation_x": "0:(3*cos(2*pi*t/120))",
    "translation_y": "0:(3*sin(2*pi*t/120)), 50000:(0)",
    "transform_center_x": "0:(0.5), 60000:(0.3)",
    "transform_center_y": "0:(0.5+0.1*sin(t/300))",
    "perspective_flip_theta": "0:(0), 1000:(1), 2000:(0)",
    "perspective_flip_phi": "0:(where(t%240 < 120, 0.5, -0.5))",
    "perspective_flip_gamma": "0:(0)",
    "perspective_flip_fv": "0:(53)",
    "enable_perspective_flip": True,
    "noise_schedule": "0:(0.065), 40000:(0.02)",
    "strength_schedule": "0:(0.65), 100:(0.55+0.1*sin(t/50))",
    "contrast_schedule": "0:(1.0)",
    "cfg_scale_schedule": "0:(7), 20000:(9), 80000:(6)",
    "steps_schedule": "0:(25), 50000:(30)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "kernel_schedule": "0:(5)",
    "sigma_schedule": "0:(1)",
    "amount_schedule": "0:(0.1), 70000:(0.2)",
    "threshold_schedule": "0:(0)",
    "prompts": {"0": "a forest --neg fog", "25000": "a city", "max_f/2": "the sea", "75000": "space"},
}


def main() -> None:
    settings = validate_settings(SETTINGS)
    build_plan(settings)  # warm numexpr's compile cache, as a second render in one process would be
    times = []
    for _ in range(7):
        start = time.perf_counter()
        plan = build_plan(settings)
        times.append((time.perf_counter() - start) * 1000)
    schedules = sum(1 for key in SETTINGS if key not in ("max_frames", "seed", "seed_behavior", "prompts",
                                                        "enable_perspective_flip"))
    print(f"plan of {plan.frame_count:,} frames, {schedules} schedules + prompts and seeds: "
          f"median {statistics.median(times):.1f} ms, best {min(times):.1f} ms (after one warm-up build "
          f"that compiles the expressions)")


if __name__ == "__main__":
    main()
