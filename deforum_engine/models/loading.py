"""Loading diffusers pipelines, once per process (what loads on top of them, IP-Adapters and LoRAs:
adapters.py).

`model` may be
- a Hugging Face hub id (`stable-diffusion-v1-5/stable-diffusion-v1-5`): downloaded once into the
  hub cache; with `HF_HUB_OFFLINE=1` only the cache is used, and a model missing from it is an
  error that says so at once (no retries);
- a local folder in the diffusers layout (`model_index.json`, `unet/`, `vae/`, ...): what
  `save_pretrained` writes and what a hub snapshot looks like; works offline;
- a single `.safetensors` / `.ckpt` checkpoint (A1111 / ComfyUI style), loaded with diffusers'
  `from_single_file`. It holds weights only: the component configs come from `config=` (setting
  `model_config_dir`), a local diffusers folder of the same family (any SD 1.5 / SDXL snapshot, or
  `hf download <repo> --include "*.json" "*.txt" --local-dir FOLDER`). Online, diffusers fetches them
  from the hub instead; offline, `config=` is required.

Stable Diffusion 1.x / 2.x and SDXL (turbo and LCM variants included) load through diffusers'
auto-pipelines: one text-to-image pipeline, and an image-to-image pipeline sharing its weights.

Safety checker: used when the model ships one (SD 1.x hub repos do; SDXL and single-file
checkpoints do not); `safety_checker=False` turns it off. A flagged frame comes back black.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.models.cache import cached_model

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # SD 1.5: the model Deforum presets were tuned on
FAST_MODEL = "stabilityai/sd-turbo"  # SD 2.1 distilled: 1-4 steps, cfg_scale about 1, 512x512
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_DTYPES = {
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float32": "float32", "fp32": "float32", "float": "float32",
}
_POINT_LOCAL = (
    "point --model (setting `model`) at a local diffusers folder (with model_index.json) "
    "or a .safetensors checkpoint plus `model_config_dir` (a local diffusers folder of its family)"
)


@dataclass
class Pipelines:
    """A loaded model: a text-to-image and an image-to-image pipeline sharing the same weights."""

    txt2img: Any
    img2img: Any
    model: str
    family: str  # "sd" (1.x / 2.x) or "sdxl"
    device: str
    dtype: Any
    scheduler_config: Any = None  # the model's own scheduler config, the base for every sampler
    ip_adapter: str | None = None  # the IP-Adapter currently loaded into the UNet
    loras: dict[str, str] = field(default_factory=dict)  # LoRA file -> adapter name, each loaded once
    active_loras: tuple | None = ()  # the ActiveLora set switched on now (empty: LoRAs off; None: unknown)


TINY_VAES = {"sd": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}  # TAESD weights per family


def hub_offline() -> bool:
    """True when only local files may be used: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set, or the
    hub cannot be reached at all (then huggingface_hub would retry for a minute before failing)."""
    return _offline_by_setting() or not _hub_reachable()


def _offline_by_setting() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


@functools.cache
def _hub_reachable() -> bool:
    """One quick connection to the hub's host (3 s at most), checked once per process."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=3).close()
        return True
    except OSError:
        return False


def resolve_device(device: str | None = None) -> str:
    """The torch device to render on: `device` if given (and present), else cuda, mps or cpu."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    device = str(device).lower()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"device: {device!r} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("device: 'mps' asked for, but Apple MPS is not available; use 'cpu' or 'auto'")
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise SettingsError(f"device: {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(device: str, dtype: Any = None):
    """The weights' dtype: `dtype` if given (a torch.dtype or a name), else fp16 on CUDA / MPS, fp32 on CPU."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.float16 if device.split(":")[0] in ("cuda", "mps") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise SettingsError(f"dtype: {dtype!r} is not a dtype; use auto, float16, bfloat16 or float32")
    return getattr(torch, name)


def load_pipeline(
    model: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    safety_checker: bool = True,
    config: str | os.PathLike | None = None,
    tiny_vae: str | os.PathLike | bool | None = None,
    compile_unet: bool = False,
) -> Pipelines:
    """Load `model` once per process (hub id, diffusers folder or single checkpoint file).

    `compile_unet` wraps the UNet in torch.compile (worth it on GPUs for long renders; the first
    frame pays the compile time). `tiny_vae` swaps the autoencoder for a tiny one (TAESD, diffusers' AutoencoderTiny): True for
    the family's default weights, or a hub id / local folder. It decodes and encodes many times
    faster and is lossy (slightly softer detail). Calling again with the same arguments returns the
    same Pipelines object.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(device, dtype)
    source = _resolve_source(model if model is not None else DEFAULT_MODEL)
    config_dir = _check_config_dir(config) if config is not None else None
    tiny = None if not tiny_vae else (True if tiny_vae is True else _resolve_source(tiny_vae))
    key = (source, device, str(dtype), bool(safety_checker), config_dir, tiny, bool(compile_unet))

    def load() -> Pipelines:
        pipes = _load(source, device, dtype, bool(safety_checker), config_dir)
        if tiny:
            _use_tiny_vae(pipes, TINY_VAES[pipes.family] if tiny is True else tiny)
        if compile_unet:
            _compile_unet(pipes)
        return pipes

    return cached_model("pipeline", key, load)


def _compile_unet(pipes: Pipelines) -> None:
    """torch.compile the shared UNet; the compilation itself happens on the first frame."""
    import torch

    compiled = torch.compile(pipes.txt2img.unet)
    for pipe in (pipes.txt2img, pipes.img2img):
        pipe.register_modules(unet=compiled)


def _use_tiny_vae(pipes: Pipelines, source: str) -> None:
    """Put a tiny autoencoder (TAESD) in both pipelines, in place of the model's own."""
    from diffusers import AutoencoderTiny

    vae = _from_pretrained(AutoencoderTiny, source, dtype=pipes.dtype).to(pipes.device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    for pipe in (pipes.txt2img, pipes.img2img):
        pipe.register_modules(vae=vae)
        pipe.vae_scale_factor = factor
        pipe.image_processor.config.vae_scale_factor = factor


def _resolve_source(model: str | os.PathLike) -> str:
    """An existing local path as an absolute string, or a hub id; SettingsError for a missing path."""
    text = os.fspath(model).strip()
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    looks_like_path = text.startswith((".", "/", "~", "\\")) or text.lower().endswith(SINGLE_FILE_SUFFIXES)
    if looks_like_path or text.count("/") > 1 or "\\" in text:
        raise SettingsError(f"model: {text} does not exist; give a diffusers folder, a checkpoint file or a hub id")
    return text


def _check_config_dir(config: str | os.PathLike) -> str:
    path = Path(config).expanduser()
    if not (path / "model_index.json").is_file():
        raise SettingsError(
            f"model_config_dir: {path} is not a diffusers model folder (no model_index.json); "
            "give a local folder of the checkpoint's family, e.g. a Stable Diffusion 1.5 snapshot"
        )
    return str(path.resolve())


def _without_torchvision_notes(record: logging.LogRecord) -> bool:
    """transformers notes, once per image processor, that it falls back to its PIL twin without
    torchvision; the engine never installs torchvision (it breaks torch's pinned build), so that
    fallback is the intended one and the notes only worry people."""
    return "requires torchvision (not installed)" not in record.getMessage()


def _quiet_torchvision_fallback() -> None:
    logging.getLogger("transformers.utils.import_utils").addFilter(_without_torchvision_notes)


def _load(source: str, device: str, dtype: Any, safety_checker: bool, config_dir: str | None) -> Pipelines:
    """Load the pipelines for `source`, move them to `device`, check the tokenizers."""
    _quiet_torchvision_fallback()
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    path = Path(source)
    if path.is_file():
        base, index = _load_single_file(path, dtype, config_dir)
        family = _family(source, index)
    else:
        index = _read_model_index(source)
        family = _family(source, index)  # before any weights load: refuse other model families cheaply
        kwargs = _safety_kwargs(index, safety_checker)
        base = _from_pretrained(AutoPipelineForText2Image, source, dtype=dtype, **kwargs)
    txt2img = AutoPipelineForText2Image.from_pipe(base)
    img2img = AutoPipelineForImage2Image.from_pipe(base)
    for pipe in (txt2img, img2img):
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
    if device.startswith("cuda"):
        import torch

        base.unet.to(memory_format=torch.channels_last)  # faster convolutions on tensor cores; shared by both
    _check_tokenizers(source, txt2img)
    return Pipelines(
        txt2img=txt2img, img2img=img2img, model=source, family=family, device=device, dtype=dtype,
        scheduler_config=base.scheduler.config,
    )


def _read_model_index(source: str) -> dict:
    """model_index.json of a local folder or hub id (from the cache only, when offline)."""
    path = Path(source)
    if path.is_dir():
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise SettingsError(
                f"model: {source} is not a diffusers model folder (no model_index.json); "
                "give a folder saved with save_pretrained / downloaded from the hub, or a .safetensors checkpoint"
            )
        return json.loads(index_file.read_text())
    from diffusers import DiffusionPipeline

    try:
        return dict(DiffusionPipeline.load_config(source, local_files_only=hub_offline()))
    except (OSError, ValueError) as error:
        raise _hub_error(source, error) from error


def _hub_error(source: str, error: Exception) -> RenderError:
    if _offline_by_setting():
        return RenderError(
            f"model {source!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1), so it cannot be downloaded; {_POINT_LOCAL}"
        )
    if not _hub_reachable():
        return RenderError(
            f"model {source!r} is not in the local Hugging Face cache, and the Hugging Face hub cannot be "
            f"reached from this machine (no network), so it cannot be downloaded; {_POINT_LOCAL}"
        )
    return RenderError(f"model {source!r} could not be loaded from the Hugging Face hub ({error}); {_POINT_LOCAL}")


def _from_pretrained(pipeline_class: Any, source: str, **kwargs: Any):
    """pipeline_class.from_pretrained, local-only for folders and offline mode, with clear errors."""
    local_only = Path(source).is_dir() or hub_offline()
    try:
        return pipeline_class.from_pretrained(source, local_files_only=local_only, **kwargs)
    except (OSError, ValueError) as error:
        if Path(source).is_dir():
            raise RenderError(f"model folder {source} could not be loaded ({error})") from error
        raise _hub_error(source, error) from error


def _safety_kwargs(index: dict, safety_checker: bool) -> dict:
    """Pipeline kwargs that drop the safety checker when it is turned off (and the model has that slot)."""
    if "safety_checker" in index and not safety_checker:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _load_single_file(path: Path, dtype: Any, config_dir: str | None):
    """from_single_file for a .safetensors / .ckpt checkpoint; offline it needs a local config folder."""
    import diffusers

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise SettingsError(f"model: {path} is a file but not a .safetensors or .ckpt checkpoint")
    if config_dir is None and hub_offline():
        raise SettingsError(
            f"model: {path} is a single-file checkpoint; offline (HF_HUB_OFFLINE=1) it needs the model's "
            "configs from a local diffusers folder of the same family: --set model_config_dir=FOLDER "
            "(setting `model_config_dir`), e.g. a Stable Diffusion 1.5 snapshot"
        )
    index = json.loads((Path(config_dir) / "model_index.json").read_text()) if config_dir else {}
    class_name = index.get("_class_name") or _guess_single_file_class(path)
    pipeline_class = getattr(diffusers, class_name)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config_dir:
        kwargs.update(config=config_dir, local_files_only=True)
    if "safety_checker" in index:
        kwargs.update(safety_checker=None)  # a single checkpoint ships no safety checker
    try:
        return pipeline_class.from_single_file(str(path), **kwargs), {"_class_name": class_name}
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise RenderError(f"model: {path} could not be loaded as a {class_name} checkpoint ({error})") from error


def _guess_single_file_class(path: Path) -> str:
    """StableDiffusionXLPipeline for SDXL checkpoints (two text encoders), else StableDiffusionPipeline."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            if any(key.startswith("conditioner.embedders.1") for key in handle.keys()):
                return "StableDiffusionXLPipeline"
    return "StableDiffusionPipeline"


def _family(source: str, index: dict) -> str:
    """'sdxl' or 'sd' from the pipeline class name; SettingsError for other model families."""
    class_name = str(index.get("_class_name", ""))
    if "XL" in class_name:
        return "sdxl"
    if class_name.startswith(("StableDiffusion", "LatentConsistencyModel")):
        return "sd"
    raise SettingsError(
        f"model: {source} is a {class_name or 'unknown'} model; this engine renders with Stable Diffusion "
        "1.x / 2.x and SDXL models (turbo and LCM variants included)"
    )


def _check_tokenizers(source: str, pipe: Any) -> None:
    """Refuse tokenizers that loaded empty (transformers can do that offline instead of raising)."""
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer = getattr(pipe, name, None)
        if tokenizer is None:
            continue
        if len(tokenizer) <= 2 or not 0 < tokenizer.model_max_length <= 100_000:
            raise RenderError(
                f"model {source}: its {name} loaded empty ({len(tokenizer)} tokens, model_max_length "
                f"{tokenizer.model_max_length}); the tokenizer files are missing or could not be downloaded. "
                f"Re-download the model, or {_POINT_LOCAL}"
            )


def folder_or_hub_id(value: str | os.PathLike, setting: str, folder: str) -> str:
    """An existing local folder as an absolute path, or a hub id; SettingsError for a file or a
    missing path. `folder` says what the folder must hold, for the message."""
    text = os.fspath(value).strip()
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SettingsError(f"{setting}: {path} is a file; give {folder} or a hub id")
        return str(path.resolve())
    if text.startswith((".", "/", "~", "\\")) or text.count("/") > 1:
        raise SettingsError(f"{setting}: {text} does not exist; give {folder} or a hub id")
    return text


def read_weights_file(path: Path, what: str, layout: str, unwrap: tuple[str, ...] = ()) -> dict:
    """The tensors of a published weights file (`.safetensors`, or a `.pth` / `.pkl` read without running
    pickled code), the first of `unwrap`'s keys it nests them under taken out and DistributedDataParallel's
    `module.` prefix removed; a SettingsError naming `what` and the `layout` to give when it cannot be read."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for a damaged or foreign file
        raise SettingsError(f"{what} {path} cannot be read ({type(err).__name__}: {err}); give {layout}") from err
    if not isinstance(data, dict):
        raise SettingsError(f"{what} {path} holds no state dict; give {layout}")
    state = next((data[key] for key in unwrap if key in data), data)
    return {key.removeprefix("module."): value for key, value in state.items()}


def hub_file(repo: str, filename: str, setting: str, layout: str) -> Path:
    """`filename` of hub repo `repo`: from the cache when offline (HF_HUB_OFFLINE), else downloaded once."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = hub_offline()
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=offline))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        where = ("is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1)" if offline
                 else f"could not be downloaded ({type(err).__name__})")
        raise RenderError(f"{setting}: {repo}/{filename} {where}; set {setting} to {layout}") from err
