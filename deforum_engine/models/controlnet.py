"""ControlNet models: checked before any model loads, loaded once per process into the models cache.

A unit's `model` is
- a Hugging Face hub id (`lllyasviel/control_v11p_sd15_canny`): from the hub cache when offline;
- a local diffusers folder (`config.json` + weights, as `save_pretrained` and the hub lay it out);
- a single `.safetensors` / `.pth` file, in the original (A1111 extension) layout or diffusers'. A
  ControlNet copies the encoder of the UNet it was trained for, so its configuration is taken from
  the render model's UNet: no config download, offline included.
Its family must match the render's model: SD 1.x (768-wide cross-attention), SD 2.x (1024) or SDXL
(2048). `check_controlnets` compares the widths from the config files (or a single file's header)
before any weights load; `load_controlnet` loads the weights when the backend starts.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.models.cache import cached_model
from deforum_engine.models.loading import DEFAULT_MODEL, Pipelines, hub_offline

CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin")
FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
CONDITIONING_CHANNELS = (16, 32, 96, 256)  # the conditioning encoder's widths (diffusers' and the original's)


def family_name(width: int | None) -> str:
    if width is None:
        return "an unknown family"
    return FAMILY_BY_WIDTH.get(width, f"a {width}-wide model")


def resolve_controlnet(model: str, setting: str) -> str:
    """An existing local file or folder as an absolute path, or a hub id; SettingsError for a missing path."""
    text = os.fspath(model).strip()
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() not in CONTROLNET_SUFFIXES:
            raise SettingsError(f"{setting}: {path} is not a ControlNet file ({', '.join(CONTROLNET_SUFFIXES)})")
        if path.is_dir() and not (path / "config.json").is_file():
            raise SettingsError(f"{setting}: {path} is not a diffusers ControlNet folder (no config.json); give a "
                                "folder saved with save_pretrained / downloaded from the hub, or a single weights file")
        return str(path.resolve())
    if text.startswith((".", "/", "~", "\\")) or text.lower().endswith(CONTROLNET_SUFFIXES) or text.count("/") != 1:
        raise SettingsError(f"{setting}: {text} does not exist; give a ControlNet hub id, a diffusers folder "
                            "or a .safetensors file")
    return text


def controlnet_width(source: str, setting: str) -> int | None:
    """A ControlNet's cross-attention width, read without loading its weights (None when the file does not say)."""
    path = Path(source)
    if path.is_dir():
        return _config_width(json.loads((path / "config.json").read_text()))
    if path.is_file():
        return _file_width(path)
    return _config_width(_hub_config(source, setting))


def _config_width(config: dict) -> int | None:
    width = config.get("cross_attention_dim")
    return int(width) if isinstance(width, int) else None


def _hub_config(source: str, setting: str) -> dict:
    """A hub ControlNet's config.json (from the cache only, when offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(source, "config.json", local_files_only=hub_offline())).read_text())
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        if hub_offline():
            raise SettingsError(f"{setting}: the ControlNet {source!r} is not in the local Hugging Face cache and the "
                                "hub is offline (HF_HUB_OFFLINE=1); download it first, or give a local folder or "
                                ".safetensors file") from None
        raise SettingsError(f"{setting}: the ControlNet {source!r} could not be found on the Hugging Face hub "
                            f"({error})") from None


def _file_width(path: Path) -> int | None:
    """The width of the first cross-attention key projection in a .safetensors header (other formats: None)."""
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if key.endswith("attn2.to_k.weight"):
                return int(handle.get_slice(key).get_shape()[1])
    return None


def render_model_width(model: str | None, config_dir: Any = None) -> int | None:
    """The render model's UNet cross-attention width, from its files (None when they do not say, or the
    model is a hub id not in the cache: loading it then reports that)."""

    source = Path(os.fspath(model if model is not None else DEFAULT_MODEL)).expanduser()
    if source.is_file():
        config = Path(config_dir) / "unet" / "config.json" if config_dir else None
        return _config_width(json.loads(config.read_text())) if config and config.is_file() else _file_width(source)
    if source.is_dir():
        config = source / "unet" / "config.json"
        return _config_width(json.loads(config.read_text())) if config.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(model or DEFAULT_MODEL), "unet/config.json")
    return _config_width(json.loads(Path(cached).read_text())) if isinstance(cached, str) else None


def unet_width(pipes: Pipelines) -> int:
    return int(pipes.txt2img.unet.config.cross_attention_dim)


def check_family(width: int | None, model_width: int | None, setting: str, source: str, model: str) -> None:
    """SettingsError naming the unit when a ControlNet's family is not the render model's."""
    if width is None or model_width is None or width == model_width:
        return
    raise SettingsError(f"{setting}: the ControlNet {source} is for {family_name(width)} ({width}-wide cross-attention) "
                        f"but the model {model} is {family_name(model_width)} ({model_width}-wide); "
                        "use a ControlNet trained for the render's model family")


def load_controlnet(source: str, pipes: Pipelines, setting: str):
    """The ControlNet at `source` on the pipelines' device and dtype, loaded once per process."""
    def load():
        check_family(controlnet_width(source, setting), unet_width(pipes), setting, source, pipes.model)
        net = _load_file(Path(source), pipes, setting) if Path(source).is_file() else _load_pretrained(source, pipes, setting)
        check_family(int(net.config.cross_attention_dim), unet_width(pipes), setting, source, pipes.model)
        return net.to(pipes.device).eval()

    return cached_model("controlnet", (source, pipes.model, pipes.device, str(pipes.dtype)), load)


def _load_pretrained(source: str, pipes: Pipelines, setting: str):
    from diffusers import ControlNetModel

    try:
        return ControlNetModel.from_pretrained(source, torch_dtype=pipes.dtype,
                                               local_files_only=Path(source).is_dir() or hub_offline())
    except (OSError, ValueError) as error:
        raise RenderError(f"{setting}: the ControlNet {source} could not be loaded ({error})") from error


def _load_file(path: Path, pipes: Pipelines, setting: str):
    """A single-file ControlNet, configured as a copy of the render model's UNet encoder."""
    from diffusers import ControlNetModel

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps(controlnet_config(pipes)))
        try:
            return ControlNetModel.from_single_file(str(path), config=folder, local_files_only=True,
                                                    torch_dtype=pipes.dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise RenderError(f"{setting}: {path} could not be loaded as a ControlNet for the model {pipes.model} "
                              f"({error}); if it is for another model family or a smaller ControlNet variant, "
                              "give its diffusers folder instead") from error


def controlnet_config(pipes: Pipelines) -> dict:
    """The config of a ControlNet for the render's UNet: its encoder settings, and a conditioning encoder
    that down-samples the control picture to the latent size (three halvings for the usual 8x VAE)."""
    import inspect

    from diffusers import ControlNetModel

    unet = dict(pipes.txt2img.unet.config)
    names = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    config = {name: unet[name] for name in names if name in unet}
    halvings = max(0, int(pipes.txt2img.vae_scale_factor).bit_length() - 1)
    config["conditioning_embedding_out_channels"] = list(CONDITIONING_CHANNELS[: halvings + 1])
    config["_class_name"] = "ControlNetModel"
    return config
