"""GPU figures for benchmarks/README.md: SD 1.5-shaped (512x512) and SDXL-shaped (1024x1024) models with
random weights (the architecture, not the weights, sets the cost), rendered through the engine and
through a bare diffusers img2img loop making the same calls.

    python benchmarks/bench_gpu.py --family sd15 --peak-tflops 989      # H100 SXM dense fp16/bf16
    python benchmarks/bench_gpu.py --family sdxl --peak-tflops 989
    python benchmarks/bench_gpu.py --family tiny                        # runs anywhere: checks the script
    python benchmarks/bench_gpu.py --depth dpt-large                    # 3D mode: depth model + 3D warp
    python benchmarks/bench_gpu.py --depth tiny                         # runs anywhere: checks the depth rows
    python benchmarks/bench_gpu.py --post                               # RIFE and Real-ESRGAN (post/)
    python benchmarks/bench_gpu.py --family sd15 --controlnet           # one ControlNet unit against none

For each of Deforum's defaults (25 steps, strength 0.65, cfg 7) and a turbo setting (2 steps at
strength 0.5, so 1 UNet step, cfg off) it prints frames per second of the engine (`render`, full loop with motion, coherence, PNG
frames and video) and of the bare loop, the GPU memory peak, the UNet's FLOPs per step (counted with
torch's FlopCounterMode) and the share of the GPU's peak the denoising reaches.

With --depth it times 3D mode's per-frame extras instead: a random-weight depth model of a real
model's shapes (dpt-large: Deforum's "Midas-3-Hybrid", which loads DPT-Large; depth-anything-small:
Depth-Anything-V2-Small), saved and loaded through the engine's loader, estimating depth for a
512x512 and a 1024x576 frame (processor, model, resize), depth -> z, and the 3D warp on the device.

With --controlnet it times a render with one canny ControlNet unit (a random-weight ControlNet of the
family's shape: the UNet's encoder copied, as ControlNetModel.from_unet makes it) against the same
render without, for both settings, and the unit with its guidance window on the first half of the steps.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)



def timer(repeats: int):
    """A function call -> its ms per call: one warm-up, then `repeats` calls, the GPU synchronised around them."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def timed(call) -> float:
        call()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        sync()
        return 1e3 * (time.perf_counter() - start) / repeats

    return timed

def build_model(family: str, folder: Path, dtype: torch.dtype) -> tuple[Path, int]:
    """Save a random-weight pipeline of the family's shapes; returns (folder, frame size)."""
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if family == "tiny":
        from tiny_models import build_tiny_sd

        return build_tiny_sd(folder), 64
    from tiny_models import write_tiny_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = CLIPTokenizer.from_pretrained(write_tiny_tokenizer(folder / "tokenizer-src"), model_max_length=77)
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    with torch.device(device):  # random init on the GPU: seconds instead of minutes
        vae = AutoencoderKL(**SD_VAE)
        if family == "sd15":
            parts = dict(unet=UNet2DConditionModel(**SD15_UNET), text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)))
            pipe = StableDiffusionPipeline(vae=vae, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False, **parts)
            size = 512
        else:
            pipe = StableDiffusionXLPipeline(
                vae=vae, unet=UNet2DConditionModel(**SDXL_UNET), scheduler=scheduler,
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)), tokenizer=tokenizer,
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)), tokenizer_2=tokenizer,
            )
            size = 1024
    pipe.to(dtype=dtype).save_pretrained(folder / family)
    return folder / family, size


def unet_tflops_per_step(pipe, size: int, guided: bool) -> float:
    """FLOPs of one denoising step (two UNet rows with classifier-free guidance), in TFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2 if guided else 1
    unet = pipe.unet
    latents = torch.randn(batch, 4, size // 8, size // 8, device=unet.device, dtype=unet.dtype)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, device=unet.device, dtype=unet.dtype)
    extra = {}
    if unet.config.addition_embed_type == "text_time":
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(batch, 1280, device=unet.device, dtype=unet.dtype),
                                       "time_ids": torch.zeros(batch, 6, device=unet.device, dtype=unet.dtype)}}
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(latents, torch.tensor([500], device=unet.device), encoder_hidden_states=text, **extra)
    return counter.get_total_flops() / 1e12


DPT_LARGE = dict(image_size=384, patch_size=16, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                 intermediate_size=4096, backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024],
                 fusion_hidden_size=256)
DINOV2_SMALL = dict(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                    intermediate_size=1536, out_indices=[3, 6, 9, 12], reshape_hidden_states=False)
DEPTH_ANYTHING_SMALL = dict(reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
                            head_hidden_size=32)


def build_depth_model(shape: str, folder: Path) -> Path:
    """Save a random-weight depth model of `shape` with its processor (the hub repo's settings)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTConfig
    from transformers import DPTForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    if shape == "tiny":
        from tiny_depth import build_tiny_dpt

        return build_tiny_dpt(folder)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        if shape == "dpt-large":
            model = DPTForDepthEstimation(DPTConfig(**DPT_LARGE))
            processor = DPTImageProcessorPil(size={"height": 384, "width": 384}, keep_aspect_ratio=False,
                                             image_mean=[0.5] * 3, image_std=[0.5] * 3)
        else:
            config = DepthAnythingConfig(backbone_config=Dinov2Config(**DINOV2_SMALL), **DEPTH_ANYTHING_SMALL)
            model = DepthAnythingForDepthEstimation(config)
            processor = DPTImageProcessorPil(size={"height": 518, "width": 518}, keep_aspect_ratio=True,
                                             ensure_multiple_of=14, image_mean=[0.485, 0.456, 0.406],
                                             image_std=[0.229, 0.224, 0.225])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def depth_rows(shape: str, repeats: int) -> None:
    """ms per call of the depth estimate, depth -> z and the 3D warp at 512x512 and 1024x576."""
    from deforum_engine.models.depth import depth_to_z, load_depth_model
    from deforum_engine.frame.motion3d import Lens, camera_move
    from deforum_engine.frame.warp3d import warp_3d

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    timed = timer(repeats)

    with tempfile.TemporaryDirectory() as tmp:
        model = load_depth_model(str(build_depth_model(shape, Path(tmp))), device=device)
    parameters = sum(p.numel() for p in model.model.parameters()) / 1e6
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{shape}-shaped random depth model, {parameters:.1f}M parameters, {model.dtype}, {name}")
    move = camera_move(translation_z=1.75, rotation_y=0.3)
    for width, height in ((512, 512), (1024, 576)):
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        raw = model.predict(image)
        z, state = depth_to_z(raw, model.metric, "steady")
        torch.cuda.reset_peak_memory_stats() if cuda else None
        estimate = timed(lambda: model.predict(image))
        memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        to_z = timed(lambda: depth_to_z(raw, model.metric, "steady", state))
        warp = timed(lambda: warp_3d(image, z, move, Lens(70, 1.0), device=device))
        print(f"{width}x{height}: depth estimate {estimate:7.2f} ms, depth -> z {to_z:6.2f} ms, "
              f"3D warp {warp:6.2f} ms, GPU memory peak {memory:.2f} GiB")


def post_rows(repeats: int) -> None:
    """RIFE ms per in-between frame (x2) and Real-ESRGAN x4 per frame, published sizes, random weights."""
    from deforum_engine.post.interpolate import in_betweens
    from deforum_engine.post.rife import VARIANTS, build_ifnet
    from deforum_engine.post.upscale import run_tiled
    from deforum_engine.post.upscalers import UpscalerSpec, build_upscaler

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    timed = timer(repeats)

    print(f"post-processing, float32, {torch.cuda.get_device_name() if cuda else 'CPU'}, {repeats} repeats")
    rng = np.random.default_rng(0)
    for version in ("4.6", "4.25"):
        net = build_ifnet(VARIANTS[version]).to(device)
        for width, height in ((512, 512), (1024, 576), (1920, 1088)):
            a, b = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))
            print(f"RIFE {version} x2 {width}x{height}: {timed(lambda: in_betweens(net, a, b, 2, device)):8.1f} ms "
                  "per in-between frame (uint8 in and out)")
    for name, spec in (("realesr-animevideov3", UpscalerSpec("srvgg", 4, 64, 16)),
                       ("RealESRGAN_x4plus", UpscalerSpec("rrdb", 4, 64, 23))):
        model = build_upscaler(spec).to(device)
        image = torch.rand(1, 3, 512, 512, device=device)
        with torch.inference_mode():
            for tile in (256, 512):
                print(f"{name} 512x512 -> 2048x2048, tiles of {tile}: "
                      f"{timed(lambda: run_tiled(model, image, tile, 32)):8.1f} ms")


def bare_loop(pipe, frames: int, size: int, steps: int, strength: float, cfg: float) -> float:
    """Seconds per frame of a plain img2img feedback loop (no motion, no coherence, no files)."""
    image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    start = None
    for index in range(frames + 1):
        if index == 1:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            start = time.perf_counter()
        image = pipe(prompt="a lighthouse on a cliff", negative_prompt="blurry", image=image, strength=strength,
                     num_inference_steps=steps, guidance_scale=cfg, output_type="np",
                     generator=torch.Generator("cpu").manual_seed(index)).images
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return (time.perf_counter() - start) / frames


def build_controlnet(folder: Path, model: Path, device: str, dtype: torch.dtype) -> Path:
    """A random-weight ControlNet for `model`'s UNet, saved as a diffusers folder."""
    from diffusers import ControlNetModel

    from deforum_engine.models import controlnet as controlnets
    from deforum_engine.models import loading as models

    pipes = models.load_pipeline(str(model), device=device, safety_checker=False)
    with torch.device(device):
        net = ControlNetModel.from_config(controlnets.controlnet_config(pipes)).to(dtype)
    net.save_pretrained(str(folder))
    return folder


def controlnet_rows(folder: Path, size: int, frames: int, tmp: Path, dtype: torch.dtype) -> None:
    """Frames per second with one canny unit against none, for Deforum's defaults and a turbo setting."""
    from PIL import Image

    from deforum_engine import render
    from deforum_engine.config.settings import validate_settings

    cuda = torch.cuda.is_available()
    net = build_controlnet(tmp / "controlnet", folder, "cuda" if cuda else "cpu", dtype)
    picture = np.zeros((size, size, 3), dtype=np.uint8)
    picture[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    Image.fromarray(picture).save(tmp / "square.png")
    unit = {"cn_1_enabled": True, "cn_1_model": str(net), "cn_1_module": "canny", "cn_1_vid_path": str(tmp / "square.png"),
            "cn_1_threshold_a": 100, "cn_1_threshold_b": 200, "cn_1_processor_res": size}
    for label, steps, strength, cfg in (("Deforum defaults", 25, 0.65, 7.0), ("turbo", 2, 0.5, 1.0)):
        base = {"W": size, "H": size, "max_frames": frames, "seed": 1, "steps": steps,
                "strength_schedule": f"0:({strength})", "cfg_scale_schedule": f"0:({cfg})", "model": str(folder),
                "safety_checker": False, "video_preset": "veryfast"}
        timings = {}
        for name, extra in (("none", {}), ("unit", unit), ("half", {**unit, "cn_1_guidance_end": 0.5})):
            settings = validate_settings({**base, **extra})
            render(settings.model_copy(update={"max_frames": 2}), out=tmp / f"warm-{label}-{name}", quiet=True)
            torch.cuda.reset_peak_memory_stats() if cuda else None
            start = time.perf_counter()
            render(settings, out=tmp / f"{label}-{name}".replace(" ", "-"), quiet=True)
            timings[name] = (time.perf_counter() - start) / frames
        memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"{label:>17}: no unit {1 / timings['none']:6.2f} frames/s, one canny unit {1 / timings['unit']:6.2f} "
              f"frames/s ({timings['unit'] / timings['none']:.2f}x the time), window 0 .. 0.5 "
              f"{1 / timings['half']:6.2f} frames/s ({timings['half'] / timings['none']:.2f}x), "
              f"GPU memory peak with the unit {memory:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=["sd15", "sdxl", "tiny"], default="sd15")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense fp16 peak (H100 SXM: 989)")
    parser.add_argument("--depth", choices=["dpt-large", "depth-anything-small", "tiny"],
                        help="time 3D mode's depth model and warp instead of the diffusion rows")
    parser.add_argument("--post", action="store_true", help="time RIFE and Real-ESRGAN instead")
    parser.add_argument("--controlnet", action="store_true", help="time one ControlNet unit against none instead")
    args = parser.parse_args()
    if args.post:
        return post_rows(repeats=max(1, args.frames // 4))
    if args.depth:
        return depth_rows(args.depth, repeats=args.frames)
    from deforum_engine import render
    from deforum_engine.models import loading as models
    from deforum_engine.prompts.samplers import step_counts
    from deforum_engine.config.settings import validate_settings

    cuda = torch.cuda.is_available()
    dtype = torch.float16 if cuda else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        folder, size = build_model(args.family, Path(tmp), dtype)
        device = "cuda" if cuda else "cpu"
        name = torch.cuda.get_device_name() if cuda else "CPU"
        print(f"{args.family}-shaped random model, {size}x{size}, {dtype}, {name}, {args.frames} frames")
        if args.controlnet:
            return controlnet_rows(folder, size, args.frames, Path(tmp), dtype)
        for label, steps, strength, cfg in (("Deforum defaults", 25, 0.65, 7.0), ("turbo", 2, 0.5, 1.0)):
            settings = validate_settings({"W": size, "H": size, "max_frames": args.frames, "seed": 1, "steps": steps,
                                          "strength_schedule": f"0:({strength})", "cfg_scale_schedule": f"0:({cfg})",
                                          "model": str(folder), "safety_checker": False, "video_preset": "veryfast"})
            render(settings.model_copy(update={"max_frames": 2}), out=Path(tmp) / f"warm-{label}", quiet=True)
            torch.cuda.reset_peak_memory_stats() if cuda else None
            start = time.perf_counter()
            render(settings, out=Path(tmp) / label.replace(" ", "-"), quiet=True)
            engine = (time.perf_counter() - start) / args.frames
            memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            pipes = models.load_pipeline(str(folder), device=device, safety_checker=False)
            bare = bare_loop(pipes.img2img, args.frames, size, step_counts(steps, 1 - strength)[0], 1 - strength, cfg)
            real_steps = step_counts(steps, 1 - strength)[1]
            flops = unet_tflops_per_step(pipes.img2img, size, guided=cfg > 1) * real_steps
            share = flops / bare / args.peak_tflops if cuda else float("nan")
            print(f"{label:>17}: engine {1 / engine:6.2f} frames/s, bare loop {1 / bare:6.2f} frames/s "
                  f"({engine / bare:.2f}x), {real_steps} UNet steps/frame = {flops:.2f} TFLOP, "
                  f"{share:.1%} of peak (bare loop), GPU memory peak {memory:.1f} GiB")


if __name__ == "__main__":
    main()
