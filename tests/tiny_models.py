"""Tiny random-weight diffusers models for tests, saved in the same layouts as hub repos.

A pytest plugin (registered in conftest.py) with two session fixtures:
- `tiny_sd_dir`: a Stable Diffusion 1.x-shaped pipeline folder (model_index.json, unet/, vae/,
  text_encoder/, tokenizer/, scheduler/), as `save_pretrained` and the hub lay it out;
- `tiny_ip_adapter_dir`: an h94/IP-Adapter-shaped folder (models/ip-adapter_sd15.safetensors and
  models/image_encoder/) whose weights fit the tiny UNet;
- `tiny_sdxl_dir`: an SDXL-shaped pipeline folder (two text encoders and tokenizers, a text-time
  UNet with 64-wide cross-attention);
- `tiny_controlnet_dir`: a ControlNet for the tiny SD model (`ControlNetModel.from_unet` of the tiny
  UNet, random conditioning weights): `folder/` in the diffusers layout, and the same weights as one
  file with diffusers' key names (`controlnet.safetensors`) and with the original ones the A1111
  extension's files use (`control_original.safetensors`);
- `tiny_lora_dir`: LoRA files for the tiny SD model, in the A1111 / kohya layout (`style.safetensors`,
  UNet and text encoder) and the diffusers / peft layout (`unet_only.safetensors`).
Tests load them through `load_pipeline(str(folder))`, the path users take. Each component is built
after torch.manual_seed(0), so the weights are the same in every session. The builders are plain
functions so benchmarks can use them too. torch is imported inside them: other test files that
never ask for these fixtures do not pay for it.

Not built: a single-file (original LDM layout) checkpoint. from_single_file needs the original key
names, which would mean writing a diffusers -> LDM key converter just for tests.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

CROSS_ATTENTION_DIM = 32
IP_WEIGHT_NAME = "ip-adapter_sd15.safetensors"
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (printable bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte] = chr(256 + extra)
            extra += 1
    return [alphabet[byte] for byte in range(256)]


def write_tiny_tokenizer(folder: Path) -> Path:
    """A 514-token CLIP vocabulary (every byte, alone and word-final, plus start/end) and no merges.

    Any text tokenizes character by character, so no prompt ever hits an unknown token.
    """
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = byte_level_alphabet()
    tokens = alphabet + [char + "</w>" for char in alphabet] + list(_SPECIAL_TOKENS)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _seeded(build):
    import torch

    torch.manual_seed(0)
    return build()


def tiny_unet():
    """A 2-level UNet (32 / 64 channels), cross-attention width 32: SD 1.5's shape in miniature."""
    from diffusers import UNet2DConditionModel

    return _seeded(lambda: UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM, norm_num_groups=32,
    ))


def _tiny_vae():
    from diffusers import AutoencoderKL

    return _seeded(lambda: AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    ))


def _tiny_text_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=520, max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        layer_norm_eps=1e-5, **extra,
    )


def _tiny_text_encoder():
    from transformers import CLIPTextModel

    return _seeded(lambda: CLIPTextModel(_tiny_text_config()))


def _pinned_scheduler():
    """SD 1.5's own scheduler config, pinned (the pipeline would otherwise patch steps_offset)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
    )


def build_tiny_sd(folder: Path) -> Path:
    """Save a tiny SD 1.x text-to-image pipeline to `folder` in the hub layout; return the folder."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=tiny_unet(), vae=_tiny_vae(), text_encoder=_tiny_text_encoder(), tokenizer=_tiny_tokenizer(),
        scheduler=_pinned_scheduler(), safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder


def _tiny_tokenizer():
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as vocab_dir:
        return CLIPTokenizer.from_pretrained(str(write_tiny_tokenizer(Path(vocab_dir))), model_max_length=77)


def build_tiny_sdxl(folder: Path) -> Path:
    """Save a tiny SDXL text-to-image pipeline: two 32-wide text encoders (the second with a
    projection, for the pooled embedding), a UNet with SDXL's text-time conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + CROSS_ATTENTION_DIM, cross_attention_dim=2 * CROSS_ATTENTION_DIM,
        norm_num_groups=32,
    )
    text_encoder = _seeded(lambda: CLIPTextModel(_tiny_text_config()))
    text_encoder_2 = _seeded(lambda: CLIPTextModelWithProjection(_tiny_text_config(projection_dim=CROSS_ATTENTION_DIM)))
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=_tiny_tokenizer(),
        tokenizer_2=_tiny_tokenizer(), unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(str(folder))
    return folder


def build_tiny_controlnet(folder: Path) -> Path:
    """A ControlNet copied from the tiny UNet, saved as a diffusers folder (`folder/folder`) and as a
    single .safetensors file (`folder/controlnet.safetensors`). The copied encoder's zero convolutions
    start at zero, which would make any ControlNet a no-op: they get small random weights here, so
    the control picture changes the frames. The conditioning encoder halves once, like the tiny VAE."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    net = _seeded(lambda: ControlNetModel.from_unet(tiny_unet(), conditioning_embedding_out_channels=(16, 32)))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.3)
    net.save_pretrained(str(folder / "folder"))
    save_file(net.state_dict(), str(folder / "controlnet.safetensors"))
    save_file(original_controlnet_layout(net.state_dict(), layers=2), str(folder / "control_original.safetensors"))
    return folder


_RESNET_NAMES = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_FIXED_NAMES = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                "conv_in": "input_blocks.0.0", "controlnet_cond_embedding.conv_in": "input_hint_block.0",
                "controlnet_cond_embedding.conv_out": "input_hint_block.14", "controlnet_mid_block": "middle_block_out.0",
                "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
                "mid_block.resnets.1": "middle_block.2"}


def original_controlnet_layout(state: dict, layers: int) -> dict:
    """A diffusers ControlNet state dict under the original (lllyasviel / A1111 extension) key names,
    `control_model.input_blocks.1.0.in_layers.0.weight` and so on: what users' single files hold.
    The inverse of diffusers' own conversion, for `layers` resnets per down block."""
    import re

    def resnet(rest: str) -> str:
        for new, old in _RESNET_NAMES:
            rest = rest.replace(f"{new}.", f"{old}.", 1) if rest.startswith(f"{new}.") else rest
        return rest

    def rename(key: str) -> str:
        if match := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            block, kind, index, rest = match.groups()
            number = 1 + int(block) * (layers + 1) + int(index)
            return f"input_blocks.{number}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{number}.1.{rest}"
        if match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            return f"input_blocks.{(int(match.group(1)) + 1) * (layers + 1)}.0.op.{match.group(2)}"
        if match := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
            return f"input_hint_block.{2 * (int(match.group(1)) + 1)}.{match.group(2)}"
        if match := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
            return f"zero_convs.{match.group(1)}.0.{match.group(2)}"
        for new, old in _FIXED_NAMES.items():
            if key.startswith(new + "."):
                rest = key[len(new) + 1:]
                return f"{old}.{resnet(rest) if 'resnets' in new else rest}"
        raise KeyError(key)

    return {"control_model." + rename(key): value.contiguous() for key, value in state.items()}


def build_tiny_loras(folder: Path) -> Path:
    """LoRA files for the tiny SD model: `style.safetensors` in the A1111 / kohya layout (what
    people download: lora_unet_* / lora_te_* keys, lora_down / lora_up, alpha) on the UNet's
    attention and the text encoder's attention and MLP; `unet_only.safetensors` in the diffusers /
    peft layout (unet.*.lora_A / lora_B) on the UNet's attention only."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)

    def pair(module, rank=4):
        out_features, in_features = module.weight.shape
        down = torch.randn(rank, in_features, generator=generator) * 0.3
        return down, torch.randn(out_features, rank, generator=generator) * 0.3

    unet, text_encoder = tiny_unet(), _tiny_text_encoder()
    kohya = {}
    for prefix, model, targets in (
        ("lora_unet", unet, ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                             "attn2.to_v", "attn2.to_out.0")),
        ("lora_te", text_encoder, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                                   "mlp.fc1", "mlp.fc2")),
    ):
        for name, module in model.named_modules():
            if name.endswith(targets):
                key = f"{prefix}_{name.replace('.', '_')}"
                kohya[f"{key}.lora_down.weight"], kohya[f"{key}.lora_up.weight"] = pair(module)
                kohya[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(kohya, str(folder / "style.safetensors"))
    peft = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn2.to_k", "attn2.to_v")):
            peft[f"unet.{name}.lora_A.weight"], peft[f"unet.{name}.lora_B.weight"] = pair(module)
    save_file(peft, str(folder / "unet_only.safetensors"))
    return folder


def tiny_ip_adapter_state(unet) -> dict:
    """IP-Adapter weights for `unet`: image projection + a to_k_ip / to_v_ip pair per cross-attention layer.

    Keys follow the h94 files: `image_proj.proj.*`, `image_proj.norm.*` and
    `ip_adapter.{1,3,5,...}.to_{k,v}_ip.weight`, numbered in the UNet's attention-processor order.
    """
    import torch

    torch.manual_seed(0)
    tokens, dim = 4, CROSS_ATTENTION_DIM
    widths = list(unet.config.block_out_channels)
    state = {
        "image_proj.proj.weight": torch.randn(tokens * dim, dim) * 0.2,
        "image_proj.proj.bias": torch.zeros(tokens * dim),
        "image_proj.norm.weight": torch.ones(dim),
        "image_proj.norm.bias": torch.zeros(dim),
    }
    cross_attention = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for number, name in enumerate(cross_attention):
        hidden = _hidden_size(name, widths)
        for part in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{2 * number + 1}.{part}.weight"] = torch.randn(hidden, dim) * 0.2
    return state


def _hidden_size(processor_name: str, widths: list[int]) -> int:
    """Channel width at an attention processor: down blocks count up, up blocks count down."""
    block, index = processor_name.split(".")[:2]
    if block == "mid_block":
        return widths[-1]
    return widths[int(index)] if block == "down_blocks" else widths[::-1][int(index)]


def build_tiny_ip_adapter(folder: Path) -> Path:
    """Save IP-Adapter weights and a tiny CLIP vision encoder to `folder` in the h94/IP-Adapter layout."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    models_dir = folder / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    save_file(tiny_ip_adapter_state(tiny_unet()), str(models_dir / IP_WEIGHT_NAME))
    config = CLIPVisionConfig(
        hidden_size=32, image_size=32, patch_size=8, projection_dim=CROSS_ATTENTION_DIM, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, num_channels=3,
    )
    encoder = _seeded(lambda: CLIPVisionModelWithProjection(config))
    encoder.save_pretrained(str(models_dir / "image_encoder"))
    return folder


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny SD 1.x pipeline folder in the hub layout (built once per session)."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_ip_adapter_dir(tmp_path_factory) -> Path:
    """A tiny h94/IP-Adapter-layout folder matching the tiny UNet (built once per session)."""
    return build_tiny_ip_adapter(tmp_path_factory.mktemp("tiny-ip-adapter"))


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    """A tiny SDXL pipeline folder in the hub layout (built once per session)."""
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_controlnet_dir(tmp_path_factory) -> Path:
    """A tiny ControlNet for the tiny SD model, as a folder (`folder/`) and a single file (built once per session)."""
    return build_tiny_controlnet(tmp_path_factory.mktemp("tiny-controlnet"))


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory) -> Path:
    """A folder of LoRA files for the tiny SD model (built once per session)."""
    return build_tiny_loras(tmp_path_factory.mktemp("tiny-loras"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's diffusion tests: on a busy 2-core machine two threads spin-wait
    on each other, and a tiny frame took 2 s instead of 0.17 s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
