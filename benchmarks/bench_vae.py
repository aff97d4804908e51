"""Full SD autoencoder against TAESD at SD 1.5 sizes (random weights: the architecture sets the cost).

    python benchmarks/bench_vae.py [--size 512] [--threads 2]

Prints ms to encode a frame and to decode one, for AutoencoderKL with Stable Diffusion 1.5's
configuration and for AutoencoderTiny (TAESD), on the CPU (or CUDA when present).
"""
import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    image = torch.rand(1, 3, args.size, args.size, device=device, dtype=dtype) * 2 - 1
    latents = torch.randn(1, 4, args.size // 8, args.size // 8, device=device, dtype=dtype)
    print(f"{device}, {dtype}, {args.size}x{args.size}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, vae in (("AutoencoderKL (SD 1.5)", AutoencoderKL(**SD15_VAE)), ("AutoencoderTiny (TAESD)", AutoencoderTiny())):
        vae = vae.to(device, dtype).eval()
        with torch.inference_mode():
            encode = timed(lambda: vae.encode(image), args.repeats)
            decode = timed(lambda: vae.decode(latents), args.repeats)
        print(f"{name:<26} encode {encode:8.1f} ms   decode {decode:8.1f} ms")


if __name__ == "__main__":
    main()
