"""What loads on top of a pipeline: the IP-Adapter (image prompts) with its CLIP image encoder, and
LoRAs switched on frame by frame. Each loads once per pipeline; a different one replaces it.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.models.loading import Pipelines, folder_or_hub_id, hub_offline

IP_ADAPTER_REPO = "h94/IP-Adapter"
IMAGE_ENCODER_SUBFOLDER = "models/image_encoder"  # ViT-H, used by the SD 1.5 and the SDXL "vit-h" adapters
IP_ADAPTER_WEIGHTS = {  # family -> (subfolder, weight file) in the h94/IP-Adapter layout
    "sd": ("models", "ip-adapter_sd15.safetensors"),
    "sdxl": ("sdxl_models", "ip-adapter_sdxl_vit-h.safetensors"),
}


def load_image_prompt_adapter(pipes: Pipelines, ip_adapter: str | os.PathLike | None = None) -> None:
    """Load an IP-Adapter and its CLIP image encoder into `pipes` (once; a different one replaces it).

    `ip_adapter` is a hub id or a local folder in the h94/IP-Adapter layout: weights in `models/`
    (SD 1.5: ip-adapter_sd15.safetensors) or `sdxl_models/` (SDXL: ip-adapter_sdxl_vit-h.safetensors),
    the ViT-H image encoder in `models/image_encoder/`. Default: h94/IP-Adapter.
    """
    source = folder_or_hub_id(ip_adapter if ip_adapter is not None else IP_ADAPTER_REPO, "ip_adapter",
                              "a folder in the h94/IP-Adapter layout")
    if pipes.ip_adapter == source:
        return
    if pipes.ip_adapter is not None:
        unload_image_prompt_adapter(pipes)
    subfolder, weight_name = IP_ADAPTER_WEIGHTS[pipes.family]
    _check_adapter_files(source, subfolder, weight_name)
    encoder = _load_image_encoder(source, pipes)
    pipes.img2img.register_modules(image_encoder=encoder)
    try:
        pipes.img2img.load_ip_adapter(
            source, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=None,
            local_files_only=Path(source).is_dir() or hub_offline(),
        )
    except (OSError, ValueError, KeyError) as error:
        raise RenderError(f"ip_adapter {source}: {subfolder}/{weight_name} could not be loaded ({error})") from error
    pipes.txt2img.register_modules(image_encoder=encoder, feature_extractor=pipes.img2img.feature_extractor)
    pipes.ip_adapter = source


def unload_image_prompt_adapter(pipes: Pipelines) -> None:
    """Restore the plain UNet attention (no image prompt) on both pipelines."""
    if pipes.ip_adapter is None:
        return
    pipes.img2img.unload_ip_adapter()
    pipes.txt2img.register_modules(image_encoder=None)
    pipes.ip_adapter = None


def _check_adapter_files(source: str, subfolder: str, weight_name: str) -> None:
    """Check the weights and encoder config exist (locally, or in the hub cache when offline)."""
    needed = (f"{subfolder}/{weight_name}", f"{IMAGE_ENCODER_SUBFOLDER}/config.json")
    if Path(source).is_dir():
        missing = [name for name in needed if not (Path(source) / name).is_file()]
        if missing:
            raise SettingsError(
                f"ip_adapter: {source} lacks {', '.join(missing)}; the folder must follow the h94/IP-Adapter "
                "layout (weights under models/ or sdxl_models/, the image encoder in models/image_encoder/)"
            )
        return
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        missing = [name for name in needed if not isinstance(try_to_load_from_cache(source, name), str)]
        if missing:
            raise RenderError(
                f"ip_adapter {source!r}: {', '.join(missing)} not in the local Hugging Face cache and the hub is "
                "offline (HF_HUB_OFFLINE=1); point --ip-adapter (setting `ip_adapter`) at a local folder in "
                "the h94/IP-Adapter layout"
            )


def _load_image_encoder(source: str, pipes: Pipelines):
    """The CLIP vision encoder from `<source>/models/image_encoder`, on the pipeline's device and dtype."""
    from transformers import CLIPVisionModelWithProjection

    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(
            source, subfolder=IMAGE_ENCODER_SUBFOLDER, dtype=pipes.dtype,
            local_files_only=Path(source).is_dir() or hub_offline(),
        )
    except (OSError, ValueError) as error:
        raise RenderError(f"ip_adapter {source}: the image encoder could not be loaded ({error})") from error
    return encoder.to(pipes.device)


def activate_loras(pipes: Pipelines, loras: tuple) -> None:
    """Switch `pipes` to this set of LoRAs (prompt_weights.ActiveLora) at their weights; () turns them off.

    Each file is loaded once per model with diffusers' load_lora_weights (A1111 / kohya and diffusers
    layouts), as an adapter of its own; switching sets only change adapter weights.
    """
    loras = tuple(loras)
    if loras == pipes.active_loras:
        return
    try:
        for lora in loras:
            _load_lora(pipes, lora.path)
    except RenderError:
        pipes.active_loras = None  # a failed load can leave other adapters on: set the next set in full
        raise
    pipe = pipes.txt2img  # shares its UNet and text encoders with img2img
    if not loras:
        pipe.disable_lora()
    else:
        if not pipes.active_loras:
            pipe.enable_lora()
        components = pipe.get_list_adapters()
        names = [pipes.loras[lora.path] for lora in loras]
        pipe.set_adapters(names, [_lora_weights(lora, name, components) for lora, name in zip(loras, names)])
    pipes.active_loras = loras


def _load_lora(pipes: Pipelines, path: str) -> None:
    if path in pipes.loras:
        return
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:
        raise RenderError(f"LoRA {path}: loading LoRAs needs the peft package (pip install 'peft>=0.17')")
    file = Path(path)
    name = f"{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}_{len(pipes.loras)}"  # unique, and readable in logs
    try:
        with warnings.catch_warnings():  # peft's note that a model now holds several adapters: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipes.txt2img.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name,
                                            local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise RenderError(f"LoRA {path} could not be loaded into this {pipes.family} model ({error}); "
                          f"is it a LoRA for {'SDXL' if pipes.family == 'sdxl' else 'Stable Diffusion 1.x / 2.x'}?") from error
    pipes.loras[path] = name


def _lora_weights(lora: Any, name: str, components: dict[str, list[str]]) -> float | dict[str, float]:
    """One weight, or per component when the text-encoder and UNet weights differ (`<lora:name:te:unet>`)."""
    if lora.text_encoder == lora.unet:
        return float(lora.unet)
    weights = {part: float(lora.unet if part == "unet" else lora.text_encoder)
               for part, adapters in components.items() if name in adapters}
    return weights
