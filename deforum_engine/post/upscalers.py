"""Real-ESRGAN's two network families, written fresh, loading the published weights.

- SRVGG compact (`realesr-animevideov3`, `realesr-general-x4v3`): a plain conv stack at the input
  size, a PixelShuffle to the output size, plus the nearest-upscaled input.
- RRDB (`RealESRGAN_x4plus`, `RealESRGAN_x4plus_anime_6B`, `RealESRGAN_x2plus`): ESRGAN's residual
  in residual dense blocks, then two nearest x2 upsamplings; x2 / x1 models first fold 2x2 / 4x4
  pixels into channels (pixel unshuffle).

Weights: the published `.pth` files (a dict holding `params_ema` or `params`, or the bare state
dict) or the same keys in `.safetensors`. The architecture is read from the keys and shapes
(`UpscalerSpec.from_state_dict`), so every published size loads without naming it.

`r_upscale_model` takes Deforum's names, a weights file, a folder holding one, or a hub file
`owner/repo/file.pth`; Deforum's names map to the published files in `DEFORUM_UPSCALERS`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deforum_engine.errors import SettingsError
from deforum_engine.models.cache import cached_model
from deforum_engine.models.loading import hub_file, read_weights_file

DEFORUM_UPSCALERS = {  # Deforum's r_upscale_model name -> (hub repo or None, published file)
    "realesr-animevideov3": (None, "realesr-animevideov3.pth"),
    "realesrgan-x4plus": ("lllyasviel/Annotators", "RealESRGAN_x4plus.pth"),
    "realesrgan-x4plus-anime": ("ai-forever/Real-ESRGAN", "RealESRGAN_x4plus_anime_6B.pth"),
}
SUFFIXES = (".pth", ".safetensors")
_LAYOUT = ("one of Deforum's names (" + ", ".join(DEFORUM_UPSCALERS) + "), a Real-ESRGAN weights file (.pth with "
           "params_ema / params, or .safetensors), a folder holding one, or a hub file owner/repo/file.pth")


@dataclass(frozen=True)
class UpscalerSpec:
    """One Real-ESRGAN network, as data."""

    family: str  # "srvgg" or "rrdb"
    scale: int  # how many times larger the output is
    features: int = 64
    depth: int = 16  # SRVGG: body convolutions; RRDB: RRDB blocks
    grow: int = 32  # RRDB: channels each dense layer adds
    activation: str = "prelu"  # SRVGG: prelu, leakyrelu (0.1) or relu

    @property
    def unshuffle(self) -> int:
        """RRDB x2 / x1: input pixels folded into channels first (2x2 / 4x4)."""
        return {4: 1, 2: 2, 1: 4}[self.scale] if self.family == "rrdb" else 1

    @classmethod
    def from_state_dict(cls, state: dict, activation: str = "prelu") -> UpscalerSpec:
        if "conv_first.weight" in state:
            blocks = {key.split(".")[1] for key in state if key.startswith("body.")}
            in_channels = int(state["conv_first.weight"].shape[1])
            scale = {3: 4, 12: 2, 48: 1}[in_channels]
            return cls("rrdb", scale, int(state["conv_first.weight"].shape[0]), len(blocks),
                       int(state["body.0.rdb1.conv1.weight"].shape[0]))
        convs = sorted(int(key.split(".")[1]) for key, value in state.items()
                       if key.startswith("body.") and key.endswith(".weight") and value.ndim == 4)
        if len(convs) < 2:
            raise ValueError("neither RRDB (conv_first, body.N.rdbK) nor SRVGG (body.N) keys")
        prelu = "body.1.weight" in state and state["body.1.weight"].ndim == 1
        out = int(state[f"body.{convs[-1]}.weight"].shape[0])
        return cls("srvgg", round((out / 3) ** 0.5), int(state["body.0.weight"].shape[0]), len(convs) - 2,
                   activation="prelu" if prelu else activation)


def build_upscaler(spec: UpscalerSpec):
    """The network that `spec` describes, with fresh weights, in eval mode."""
    from torch import nn

    builder = _build_srvgg if spec.family == "srvgg" else _build_rrdb
    model = builder(spec, nn)
    model.spec = spec
    return model.eval()


def _build_srvgg(spec: UpscalerSpec, nn):
    from torch.nn import functional as F

    def act():
        return {"prelu": lambda: nn.PReLU(spec.features), "relu": lambda: nn.ReLU(True),
                "leakyrelu": lambda: nn.LeakyReLU(0.1, True)}[spec.activation]()

    class SRVGGCompact(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(3, spec.features, 3, 1, 1), act()]
            for _ in range(spec.depth):
                layers += [nn.Conv2d(spec.features, spec.features, 3, 1, 1), act()]
            layers.append(nn.Conv2d(spec.features, 3 * spec.scale ** 2, 3, 1, 1))
            self.body = nn.ModuleList(layers)

        def forward(self, x):
            out = x
            for layer in self.body:
                out = layer(out)
            return F.pixel_shuffle(out, spec.scale) + F.interpolate(x, scale_factor=spec.scale, mode="nearest")

    return SRVGGCompact()


def _build_rrdb(spec: UpscalerSpec, nn):
    import torch
    from torch.nn import functional as F

    class DenseBlock(nn.Module):
        def __init__(self):
            super().__init__()
            f, g = spec.features, spec.grow
            for i in range(1, 6):
                self.add_module(f"conv{i}", nn.Conv2d(f + (i - 1) * g, g if i < 5 else f, 3, 1, 1))

        def forward(self, x):
            seen = [x]
            for i in range(1, 5):
                seen.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(seen, 1)), 0.2))
            return self.conv5(torch.cat(seen, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self):
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = DenseBlock(), DenseBlock(), DenseBlock()

        def forward(self, x):
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self):
            super().__init__()
            f = spec.features
            self.conv_first = nn.Conv2d(3 * spec.unshuffle ** 2, f, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB() for _ in range(spec.depth)))
            self.conv_body, self.conv_up1, self.conv_up2, self.conv_hr = (nn.Conv2d(f, f, 3, 1, 1) for _ in range(4))
            self.conv_last = nn.Conv2d(f, 3, 3, 1, 1)

        def forward(self, x):
            if spec.unshuffle > 1:
                x = F.pixel_unshuffle(x, spec.unshuffle)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for conv in (self.conv_up1, self.conv_up2):
                feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    return RRDBNet()


# --- loading -------------------------------------------------------------------------------------

def read_weights(path: Path) -> dict:
    """The state dict in a published file: `params_ema` preferred, then `params`, else the file's dict."""
    return read_weights_file(path, "r_upscale_model:", _LAYOUT, unwrap=("params_ema", "params"))


def resolve_upscaler(value: str | os.PathLike) -> Path:
    """The weights file that r_upscale_model names (offline: from the hub cache only)."""
    text = os.fspath(value).strip()
    if text in DEFORUM_UPSCALERS:
        repo, filename = DEFORUM_UPSCALERS[text]
        if repo is None:
            raise SettingsError(f"r_upscale_model: {text} has no copy on the hub that the engine knows; download "
                                f"{filename} from Real-ESRGAN's releases (v0.2.5.0) and set r_upscale_model to its path")
        return _hub_file(repo, filename)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise SettingsError(f"r_upscale_model: {path} holds {len(found)} weights files, not one; give {_LAYOUT}")
    parts = text.split("/")
    if len(parts) == 3 and not text.startswith((".", "/", "~")) and path.suffix in SUFFIXES:
        return _hub_file("/".join(parts[:2]), parts[2])
    raise SettingsError(f"r_upscale_model: {text} does not exist; give {_LAYOUT}")


def _hub_file(repo: str, filename: str) -> Path:
    return hub_file(repo, filename, "r_upscale_model", _LAYOUT)


def load_upscaler(value: str, device: str = "cpu"):
    """The network that r_upscale_model names, its weights loaded strictly; loaded once per process."""
    return cached_model("upscaler", (value, device), lambda: _load_upscaler(value, device))


def _load_upscaler(value: str, device: str = "cpu"):
    """The network that r_upscale_model names, its weights loaded strictly; loaded once per process."""
    path = resolve_upscaler(value)
    state = read_weights(path)
    try:
        spec = UpscalerSpec.from_state_dict(state)
    except (ValueError, KeyError, IndexError) as err:
        raise SettingsError(f"r_upscale_model: {path} is not a Real-ESRGAN SRVGG or RRDB network ({err}); "
                            f"give {_LAYOUT}") from err
    model = build_upscaler(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SettingsError(f"r_upscale_model: {path} does not match the {spec.family} layout read from it: "
                            f"{str(err).splitlines()[0]}") from err
    return model.to(device)
