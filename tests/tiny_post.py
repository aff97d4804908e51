"""Tiny random-weight RIFE and Real-ESRGAN networks, saved in their published layouts.

Each builder keeps a published architecture's structure (block count, input channels, encoder,
activation, output layout) at small widths, and saves the weights as the publishers do: RIFE as a
`flownet.pkl` state dict with DistributedDataParallel's `module.` prefix (or .safetensors),
Real-ESRGAN as a `.pth` dict under `params_ema` / `params` (or .safetensors). Tests then load them
through the engine's own loaders, the path users take.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


def tiny_rife_spec(variant: str = "4.6", width: int = 8):
    from deforum_engine.post.rife import VARIANTS

    spec = VARIANTS[variant]
    return dataclasses.replace(spec, blocks=tuple((cin, width) for cin, _ in spec.blocks),
                               head_width=min(spec.head_width, width) if spec.head else spec.head_width)


def save_tiny_rife(folder: Path, variant: str = "4.6", fmt: str = "pkl", seed: int = 0) -> Path:
    """A random RIFE `variant` saved as `folder/flownet.<fmt>`, keys as Practical-RIFE publishes them."""
    import torch

    from deforum_engine.post.rife import build_ifnet

    torch.manual_seed(seed)
    net = build_ifnet(tiny_rife_spec(variant))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"flownet.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        state = {f"module.{k}": v for k, v in net.state_dict().items()}
        state["module.contextnet.conv1.0.weight"] = torch.zeros(1)  # published 4.0 files carry unused extras
        torch.save(state, path)
    return path


def save_tiny_upscaler(path: Path, family: str = "srvgg", scale: int = 4, key: str = "params_ema",
                       seed: int = 0) -> Path:
    """A random Real-ESRGAN network (SRVGG compact or RRDB) saved as Real-ESRGAN publishes it."""
    import torch

    from deforum_engine.post.upscalers import UpscalerSpec, build_upscaler

    spec = (UpscalerSpec("srvgg", scale, features=8, depth=2) if family == "srvgg"
            else UpscalerSpec("rrdb", scale, features=8, depth=1, grow=4))
    torch.manual_seed(seed)
    model = build_upscaler(spec)
    with torch.no_grad():  # unit-gain convolutions, so the random network's output varies over the image
        for name, parameter in model.named_parameters():
            if parameter.ndim == 4:
                parameter.normal_(0, (1 / (parameter.shape[1] * 9)) ** 0.5)
            elif name.endswith("bias"):
                parameter.fill_(0.5 if name.startswith("conv_last") else 0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save({key: model.state_dict()}, path)
    return path
