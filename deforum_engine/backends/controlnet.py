"""ControlNet units in the diffusers backend: diffusers' ControlNet pipelines over the model's own weights.

A frame whose request has ControlNet units goes through diffusers' ControlNet pipeline of the model's
family (StableDiffusion / StableDiffusionXL, ControlNet, text-to-image or img2img), built once per set
of ControlNets with `from_pipe` (the UNet, VAE, text encoders, LoRAs and IP-Adapter are shared, not
copied). A frame without active units takes the plain pipeline, so a unit at weight 0 or with an
empty guidance window leaves the frame exactly as it would be without it.

`UnitControlNets` (diffusers' multi-ControlNet, one or more units) runs a unit only on the steps
inside its guidance window (diffusers' own pipeline would run it everywhere at scale 0) and applies
its control mode the way AUTOMATIC1111's ControlNet extension does:
- Balanced: the unit's residuals at `weight`, on the prompt and the negative prompt alike;
- My prompt is more important: the residuals fade toward the input end, residual k of K (the middle
  block last) scaled by weight * 0.825 ** (K - 1 - k) (the extension's "soft injection");
- ControlNet is more important: that fade, and the residuals only on the prompt's half of the
  guidance batch, not the negative's (the extension's "CFG injection"; diffusers' guess mode is the
  same idea, with its own 0.1 .. 1 fade).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from deforum_engine.models import controlnet as controlnets
from deforum_engine.models.loading import Pipelines
from deforum_engine.backends.base import ControlInput

SOFT_INJECTION = 0.825
PROMPT_FIRST, CONTROL_FIRST = "My prompt is more important", "ControlNet is more important"


def residual_scales(count: int) -> list[float]:
    """The extension's soft-injection fade over `count` residuals (the middle block's last, at 1)."""
    return [SOFT_INJECTION ** (count - 1 - k) for k in range(count)]


class UnitControlNets(MultiControlNetModel):
    """Several ControlNets (one per active unit), each with its control mode, skipped outside its window."""

    def __init__(self, nets: list, modes: list[str]):
        super().__init__(nets)
        self.modes = list(modes)
        self.guided = True  # the batch is [negative; prompt] (classifier-free guidance)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                class_labels=None, timestep_cond=None, attention_mask=None, added_cond_kwargs=None,
                cross_attention_kwargs=None, guess_mode=False, return_dict=True):
        down, mid = None, None
        for image, scale, net, mode in zip(controlnet_cond, conditioning_scale, self.nets, self.modes):
            if scale == 0:  # outside the unit's guidance window: not run at all
                continue
            unit_down, unit_mid = net(
                sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=image,
                conditioning_scale=scale, class_labels=class_labels, timestep_cond=timestep_cond,
                attention_mask=attention_mask, added_cond_kwargs=added_cond_kwargs,
                cross_attention_kwargs=cross_attention_kwargs, guess_mode=False, return_dict=False,
            )
            residuals = self._shaped([*unit_down, unit_mid], mode)
            if down is None:
                down, mid = residuals[:-1], residuals[-1]
            else:
                down, mid = [a + b for a, b in zip(down, residuals[:-1])], mid + residuals[-1]
        return down, mid

    def _shaped(self, residuals: list, mode: str) -> list:
        """The control mode applied to one unit's residuals."""
        if mode not in (PROMPT_FIRST, CONTROL_FIRST):
            return residuals
        residuals = [r * s for r, s in zip(residuals, residual_scales(len(residuals)))]
        if mode == CONTROL_FIRST and self.guided:
            residuals = [torch.cat([torch.zeros_like(r[: len(r) // 2]), r[len(r) // 2:]]) for r in residuals]
        return residuals


def _pipeline_class(family: str, text_to_image: bool):
    import diffusers

    names = {("sd", True): "StableDiffusionControlNetPipeline", ("sd", False): "StableDiffusionControlNetImg2ImgPipeline",
             ("sdxl", True): "StableDiffusionXLControlNetPipeline",
             ("sdxl", False): "StableDiffusionXLControlNetImg2ImgPipeline"}
    return getattr(diffusers, names[(family, text_to_image)])


def _from_pipe(pipeline_class, base, nets: UnitControlNets, dtype):
    """`pipeline_class` over `base`'s components. from_pipe casts every shared component to its `dtype`
    argument (float32 when none is given), so the model's own dtype is passed; its warning that casting
    can be inconsistent does not apply to components that already have that dtype, and is silenced."""
    quiet = logging.getLogger("diffusers.models.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return pipeline_class.from_pipe(base, controlnet=nets, dtype=dtype)
    finally:
        quiet.setLevel(level)


class ControlPipelines:
    """The render's ControlNets (loaded in `load`) and a ControlNet pipeline per set of active units."""

    def __init__(self, pipes: Pipelines):
        self.pipes = pipes
        self.nets: dict[str, Any] = {}  # source -> ControlNetModel
        self._pipelines: dict[tuple, Any] = {}

    def load(self, sources: tuple) -> None:
        """Load every (setting, source) ControlNet once (the models cache keeps them per process)."""
        for setting, source in sources:
            if source not in self.nets:
                self.nets[source] = controlnets.load_controlnet(source, self.pipes, setting)

    def call(self, control: tuple[ControlInput, ...], text_to_image: bool, guided: bool,
             images: list[np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
        """The pipeline for these units and its ControlNet arguments; `images` (one stacked batch per
        unit) replaces the requests' own pictures in batched calls."""
        key = (text_to_image, tuple((c.model, c.control_mode) for c in control))
        if key not in self._pipelines:
            nets = UnitControlNets([self.nets[c.model] for c in control], [c.control_mode for c in control])
            base = self.pipes.txt2img if text_to_image else self.pipes.img2img
            pipe = _from_pipe(_pipeline_class(self.pipes.family, text_to_image), base, nets, self.pipes.dtype)
            pipe.set_progress_bar_config(disable=True)
            self._pipelines[key] = pipe
        pipe = self._pipelines[key]
        pipe.controlnet.guided = guided
        pictures = images if images is not None else [np.asarray(c.image, np.float32)[None] / 255.0 for c in control]
        kwargs = {
            "image" if text_to_image else "control_image": pictures,
            "controlnet_conditioning_scale": [float(c.weight) for c in control],
            "control_guidance_start": [float(c.guidance_start) for c in control],
            "control_guidance_end": [float(c.guidance_end) for c in control],
        }
        return pipe, kwargs


def latent_hold(pipe: Any, images: np.ndarray, masks: np.ndarray, seeds: list[int]):
    """A callback_on_step_end that keeps the latents outside the mask on the prepared frame, as
    AUTOMATIC1111's inpainting does with fill "original": after each step they are the prepared
    frame's latents noised to the next step's level, after the last step the prepared frame's own.

    `images`: the img2img frames (B x H x W x 3, floats 0..1); `masks`: True where repainted; `seeds`:
    the frames' seeds (the noise of the held part)."""
    init = _encoded(pipe, images)
    masks = torch.from_numpy(np.asarray(masks, dtype=np.float32)[:, None]).to(init.device)
    repaint = torch.nn.functional.interpolate(masks, size=init.shape[-2:], mode="area").round().to(init.dtype)
    noise = torch.cat([torch.randn(init[:1].shape, generator=torch.Generator("cpu").manual_seed(seed % 2**63))
                       for seed in seeds]).to(init.device, init.dtype)

    def hold(pipeline, step, timestep, tensors):
        timesteps = pipeline.scheduler.timesteps
        later = timesteps[timesteps < timestep] if timesteps[0] > timesteps[-1] else timesteps[timesteps > timestep]
        target = init if len(later) == 0 else pipeline.scheduler.add_noise(init, noise, later[:1])
        return {"latents": tensors["latents"] * repaint + target * (1 - repaint)}

    return hold


def _encoded(pipe: Any, images: np.ndarray):
    """The frames' latents (the distribution's mean, scaled), in float32 where the VAE asks for it."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = torch.float32 if upcast else vae.dtype
    with torch.no_grad():
        if upcast:
            vae.to(torch.float32)
        try:
            pixels = pipe.image_processor.preprocess(images).to(vae.device, dtype)
            encoded = vae.encode(pixels)
            latents = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latents
        finally:
            if upcast:
                vae.to(torch.float16)
    return (latents * getattr(vae.config, "scaling_factor", 1.0)).to(pipe.unet.dtype)
