"""The diffusers backend: each frame re-denoised by a Stable Diffusion pipeline.

Frame 0 without an init image is text-to-image; every other frame is image-to-image of the
prepared frame at the frame's denoise (1 - Deforum strength). Everything that does not change
from frame to frame is computed once and cached: the pipelines (per process, models.py), the
prompt embeddings (per distinct prompt), the schedulers (per sampler name), the seeded generator
and the image-prompt embedding (per render).

Steps: an img2img frame with `steps` n and denoise d runs AUTOMATIC1111's count, the last
int(min(d, 0.999) * n) + 1 steps of an n-step schedule, never zero (samplers.step_counts; how close
the starting timestep is to A1111's: `img2img_strength`).

Noise multiplier: `FrameRequest.noise_multiplier` scales the noise an img2img frame starts from, as
AUTOMATIC1111's initial_noise_multiplier does (x0 + m * sigma * noise; Deforum's
noise_multiplier_schedule). Each sampler's scheduler is a subclass whose add_noise (called once per
frame, by img2img's prepare_latents only) applies the multiplier it is given before every frame.

Prompts: A1111 attention weights, long prompts (75-token chunks) and `AND` sub-prompts are built by
backends/prompt_embeddings.py; a prompt without any of these goes through the pipeline's own
encode_prompt, exactly as before. `FrameRequest.loras` switches LoRAs on per frame (models/adapters.activate_loras);
embeddings are cached per text-encoder LoRA set.

Image prompt (IP-Adapter): `FrameRequest.image_prompt_scale` is the adapter scale, added on top
of the text cross-attention (0 = no influence, exactly; 1 = the image dominates). Which UNet blocks
receive it depends on `RenderContext.image_prompt_mode` (see `image_prompt_scales`).
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from deforum_engine.backends.base import FrameRequest, RenderContext
from deforum_engine.backends.prompt_embeddings import (
    PromptEncoder,
    TextEmbedding,
    compose,
)
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.frame.images import fit_image, load_image
from deforum_engine.models import adapters
from deforum_engine.models import loading as models
from deforum_engine.prompts.samplers import SchedulerCache, step_counts
from deforum_engine.prompts.weights import is_plain, split_composable
from deforum_engine.backends.controlnet import ControlPipelines, latent_hold

log = logging.getLogger(__name__)

IMAGE_PROMPT_MODES = ("all", "style", "layout")
FRAME_RETRIES = 3  # a NaN or black frame is retried with seed+1, seed+2, seed+3
PROMPT_CACHE_SIZE = 64  # distinct (prompt, negative) pairs kept; the least recently used goes first
_EMBEDDING_NAMES = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


@dataclass(frozen=True)
class ImagePrompt:
    """The image prompt's CLIP embedding, computed once per render, in both layouts the pipeline takes."""

    guided: list  # [negative; positive] per adapter, for classifier-free guidance
    unguided: list  # positive only, for cfg_scale <= 1 and guidance-distilled models
    mode: str


class DiffusersBackend:
    """Generates frames with diffusers; see the module docstring for what is cached."""

    name = "diffusers"
    is_preview = False

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        ip_adapter: str | None = None,
        safety_checker: bool = True,
        model_config: str | None = None,
        tiny_vae: str | bool | None = None,
        compile_unet: bool = False,
    ):
        self.model = model if model is not None else models.DEFAULT_MODEL
        self.ip_adapter = ip_adapter
        self._load_args = {"device": device, "dtype": dtype, "safety_checker": safety_checker, "config": model_config,
                           "tiny_vae": tiny_vae, "compile_unet": compile_unet}
        self._compile_pending = compile_unet  # the first pipeline call compiles: report how long it took
        self._pipes: models.Pipelines | None = None
        self._schedulers: SchedulerCache | None = None
        self._noise_scaled: dict[str, Any] = {}  # sampler name -> its scheduler with a noise multiplier
        self._generator = torch.Generator("cpu")
        self._prompts: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._texts: OrderedDict[tuple, TextEmbedding] = OrderedDict()
        self._encoder: PromptEncoder | None = None
        self._text_loras: tuple = ()  # the (file, text-encoder weight) LoRAs on now: part of the embedding keys
        self._context: RenderContext | None = None
        self._image_prompt: ImagePrompt | None = None
        self._applied_scale: float | None = None
        self._call_params: dict[int, frozenset[str]] = {}
        self._control: ControlPipelines | None = None

    @property
    def pipelines(self) -> models.Pipelines:
        """The loaded pipelines (loaded on first use, once per process for the same model)."""
        if self._pipes is None:
            self._pipes = models.load_pipeline(self.model, **self._load_args)
            self._schedulers = SchedulerCache(self._pipes.scheduler_config)
        return self._pipes

    def begin(self, context: RenderContext) -> None:
        """Load the model; with an image prompt, load the IP-Adapter and embed the image once."""
        if context.image_prompt_mode not in IMAGE_PROMPT_MODES:
            raise SettingsError(
                f"image_prompt_mode: {context.image_prompt_mode!r} is not a mode; "
                f"choose one of {', '.join(IMAGE_PROMPT_MODES)}"
            )
        pipes = self.pipelines
        self._context = context
        self._image_prompt = None
        self._applied_scale = None
        self.load_controlnets(context.controlnets)
        if context.image_prompt is None:
            adapters.unload_image_prompt_adapter(pipes)  # an adapter from an earlier render must not act here
            return
        adapters.load_image_prompt_adapter(pipes, self.ip_adapter)
        self._image_prompt = self._embed_image_prompt(context)

    def flags_unsafe(self, image: np.ndarray) -> bool:
        """The model's safety checker on `image` (SD 1.x hub repos ship one with its feature extractor);
        a model without one (SDXL, single files, the checker switched off) flags nothing."""
        pipe = self.pipelines.txt2img
        if getattr(pipe, "safety_checker", None) is None or getattr(pipe, "feature_extractor", None) is None:
            return False
        pixels = pipe.feature_extractor(Image.fromarray(image), return_tensors="pt").pixel_values
        pixels = pixels.to(device=self.pipelines.device, dtype=self.pipelines.dtype)
        with torch.no_grad():
            _, flagged = pipe.safety_checker(clip_input=pixels, images=[image.astype(np.float32) / 255.0])
        return bool(flagged[0])

    def load_controlnets(self, sources: tuple) -> None:
        """Load the (setting, source) ControlNets a render's units use, once each (models cache)."""
        if sources:
            self._control = self._control or ControlPipelines(self.pipelines)
            self._control.load(sources)

    def generate(self, request: FrameRequest) -> np.ndarray:
        """One frame: text-to-image when request.image is None, else image-to-image at request.denoise."""
        context = self._require_context()
        pipe, kwargs = self._frame_call(request)
        # 1. LoRAs, then prompt embeddings (cached per distinct prompt; blended towards blend_prompt)
        self._use_loras(request.loras)
        kwargs.update(self._prompt_embeddings(request))
        # 2. Scheduler for this frame's sampler (cached per name)
        self._use_sampler(pipe, request)
        # 3. Image prompt: the render's embedding at this frame's scale
        kwargs.update(self._image_prompt_kwargs(request, pipe))
        # 4. Denoise, retrying NaN / black frames with the next seeds
        started = time.perf_counter()
        image = self._run_checked(pipe, kwargs, request)
        if self._compile_pending:
            self._compile_pending = False
            print(f"compile_unet: the first frame, which compiled the UNet, took "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
        # 5. uint8 RGB at the render size
        return _to_uint8(image, context.width, context.height)

    def generate_many(self, requests: list[FrameRequest]) -> list[np.ndarray]:
        """Frames of several renders that share steps, denoise, sampler and guidance, in one pipeline
        call: each UNet step denoises them as one batch (lockstep renders; see backends/lockstep.py).

        Each frame keeps its own seed and prompt; a NaN or black frame is redone alone. There is no
        image prompt here: lockstep refuses those before the model loads. Batched
        arithmetic can differ from one frame at a time in the last bits, so lockstep frames match
        solo renders closely, not bit for bit. Frames with different LoRAs, or prompt embeddings of
        different lengths (long prompts), go through separate calls: LoRAs act on the whole model,
        and padding a prompt to a longer one would change its frame.
        """
        if len(requests) == 1:
            return [self.generate(requests[0])]
        context = self._require_context()
        groups = [(request.loras, tuple(unit.signature() for unit in request.control), request.mask is not None)
                  for request in requests]
        if len(set(groups)) > 1:  # LoRAs act on the whole model; units share one set of ControlNet arguments
            return self._generate_in_groups(requests, groups)
        first = requests[0]
        pipe, kwargs = self._frame_call(first, requests)
        self._use_loras(first.loras)
        embeddings = [self._prompt_embeddings(request) for request in requests]
        lengths = [e["prompt_embeds"].shape[1] for e in embeddings]
        if len(set(lengths)) > 1:
            return self._generate_in_groups(requests, lengths)
        if first.image is not None:
            kwargs["image"] = np.stack([np.asarray(r.image, dtype=np.float32) for r in requests]) / 255.0
        kwargs.update({name: torch.cat([e[name] for e in embeddings]) for name in embeddings[0]})
        self._use_sampler(pipe, first)  # batch_key: the batch shares the sampler and noise multiplier
        generators = [torch.Generator("cpu").manual_seed(r.seed % 2**64) for r in requests]
        output = pipe(**self._supported(pipe, kwargs), generator=generators)
        flags = getattr(output, "nsfw_content_detected", None) or [None] * len(requests)
        return [
            self.generate(request) if _frame_problem(image, [flag]) else _to_uint8(image, context.width, context.height)
            for request, image, flag in zip(requests, output.images, flags)
        ]

    def _use_sampler(self, pipe: Any, request: FrameRequest) -> None:
        """Put the frame's sampler in the pipeline, set to scale its img2img noise by the frame's multiplier.

        One scheduler per sampler name; assigning re-registers the pipeline's config, so it is skipped
        when the scheduler is already there. The multiplier is set every frame: nothing carries over.
        """
        scheduler = self._noise_scaled.get(request.sampler)
        if scheduler is None:
            plain = self._schedulers.get(request.sampler)
            scheduler = _noise_scaling(type(plain)).from_config(plain.config)
            self._noise_scaled[request.sampler] = scheduler
        scheduler.noise_multiplier = float(request.noise_multiplier)
        if pipe.scheduler is not scheduler:
            pipe.scheduler = scheduler

    def _generate_in_groups(self, requests: list[FrameRequest], keys: list) -> list[np.ndarray]:
        """generate_many per group of requests with equal keys, results in the requests' order."""
        groups: dict[Any, list[int]] = {}
        for position, key in enumerate(keys):
            groups.setdefault(key, []).append(position)
        frames: list[Any] = [None] * len(requests)
        for positions in groups.values():
            for position, image in zip(positions, self.generate_many([requests[p] for p in positions])):
                frames[position] = image
        return frames

    def _require_context(self) -> RenderContext:
        if self._context is None:
            raise RenderError("DiffusersBackend.generate was called before begin(context)")
        return self._context

    def _frame_call(self, request: FrameRequest, batch: list[FrameRequest] | None = None) -> tuple[Any, dict[str, Any]]:
        """The pipeline for this frame (the ControlNet pipeline of its units, when it has any) and its
        step / guidance / control arguments; `batch`: the requests that share this call (their control
        pictures are stacked)."""
        pipes, context = self.pipelines, self._context
        common = {"guidance_scale": float(request.cfg_scale), "output_type": "np"}
        if request.image is None:
            width, height = _multiple_of_8(context.width), _multiple_of_8(context.height)
            steps = max(int(request.steps), 1)
            pipe, kwargs = pipes.txt2img, {**common, "num_inference_steps": steps, "width": width, "height": height}
        else:
            num_inference_steps, effective = step_counts(request.steps, request.denoise)
            image = np.asarray(request.image, dtype=np.float32)[None] / 255.0
            strength = img2img_strength(num_inference_steps, effective)
            pipe, kwargs = pipes.img2img, {
                **common, "image": image, "strength": strength, "num_inference_steps": num_inference_steps,
            }
        requests = batch if batch is not None else [request]
        if request.image is not None and request.mask is not None:  # inpainting: hold the masked-out latents
            frames = np.stack([np.asarray(r.image, dtype=np.float32) for r in requests]) / 255.0
            kwargs["callback_on_step_end"] = latent_hold(pipe, frames, np.stack([r.mask for r in requests]),
                                                         [r.seed for r in requests])
        if not request.control:
            return pipe, kwargs
        if self._control is None:
            raise RenderError(f"frame {request.index}: ControlNet units were asked for, but begin() loaded none")
        guided = request.cfg_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        images = None
        if batch is not None:
            images = [np.stack([np.asarray(r.control[u].image, np.float32) for r in batch]) / 255.0
                      for u in range(len(request.control))]
        control_pipe, control_kwargs = self._control.call(request.control, request.image is None, guided, images)
        return control_pipe, {**kwargs, **control_kwargs}

    def _prompt_embeddings(self, request: FrameRequest) -> dict[str, Any]:
        """The frame's prompt embeddings: cached per (prompt, negative), lerped for prompt blending."""
        embeddings = self._encoded(request.prompt, request.negative_prompt)
        weight = min(max(float(request.blend_weight), 0.0), 1.0)
        if request.blend_prompt is None or weight == 0.0:
            return embeddings
        negative = request.blend_negative_prompt
        target = self._encoded(request.blend_prompt, request.negative_prompt if negative is None else negative)
        embeddings, target = self._same_length([embeddings, target])
        return {name: torch.lerp(value, target[name], weight) for name, value in embeddings.items()}

    def _encoded(self, prompt: str, negative: str) -> dict[str, Any]:
        """Embeddings once per distinct (prompt, negative) and text-encoder LoRAs; always with the negative half.

        Prompts without weights, AND or BREAK that fit 75 tokens go through the pipeline's own
        encode_prompt; the rest are built as A1111 builds them (backends/prompt_embeddings.py).
        """
        key = (prompt, negative, self._text_loras)
        if key in self._prompts:
            self._prompts.move_to_end(key)
            return self._prompts[key]
        encoder = self._prompt_encoder
        plain = all(is_plain(text, composable=composable) and encoder.fits_one_chunk(text)
                    for text, composable in ((prompt, True), (negative, False)))
        self._prompts[key] = self._encode_plain(prompt, negative) if plain else self._encode_weighted(prompt, negative)
        if len(self._prompts) > PROMPT_CACHE_SIZE:
            self._prompts.popitem(last=False)
        return self._prompts[key]

    def _encode_plain(self, prompt: str, negative: str) -> dict[str, Any]:
        pipe = self.pipelines.txt2img
        with torch.no_grad():
            encoded = pipe.encode_prompt(
                prompt=prompt, device=pipe._execution_device, num_images_per_prompt=1,
                do_classifier_free_guidance=True, negative_prompt=negative,
            )
        return {name: value for name, value in zip(_EMBEDDING_NAMES, encoded) if value is not None}

    def _encode_weighted(self, prompt: str, negative: str) -> dict[str, Any]:
        """Attention weights and chunks per text; AND sub-prompts blended by their weights (prompt_embeddings.compose)."""
        parts = [(self._text_embedding(text), weight) for text, weight in split_composable(prompt) if weight != 0]
        positive, negative_embedding = compose(self._text_embedding(negative), parts, self._prompt_encoder)
        embeddings = {"prompt_embeds": positive.tokens, "negative_prompt_embeds": negative_embedding.tokens}
        if positive.pooled is not None:
            embeddings.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative_embedding.pooled)
        return embeddings

    def _text_embedding(self, text: str) -> TextEmbedding:
        """One text's weighted embedding, cached (AND sub-prompts recur with other weights every frame)."""
        key = (text, self._text_loras)
        if key in self._texts:
            self._texts.move_to_end(key)
            return self._texts[key]
        self._texts[key] = self._prompt_encoder.encode(text)
        if len(self._texts) > PROMPT_CACHE_SIZE:
            self._texts.popitem(last=False)
        return self._texts[key]

    @property
    def _prompt_encoder(self) -> PromptEncoder:
        if self._encoder is None:
            self._encoder = PromptEncoder(self.pipelines.txt2img)
        return self._encoder

    def _same_length(self, embeddings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Token embeddings padded with empty-prompt chunks to the longest of them (pooled ones untouched)."""
        length = max(e["prompt_embeds"].shape[1] for e in embeddings)
        pad = self._prompt_encoder.pad
        return [{name: pad(value, length) if value.ndim == 3 else value for name, value in e.items()}
                for e in embeddings]

    def _use_loras(self, loras: tuple) -> None:
        """Switch to the frame's LoRAs (each file loaded once per model); text embeddings are keyed by them."""
        adapters.activate_loras(self.pipelines, loras)
        self._text_loras = tuple((lora.path, lora.text_encoder) for lora in loras if lora.text_encoder != 0)

    def _embed_image_prompt(self, context: RenderContext) -> ImagePrompt:
        """CLIP-embed the image prompt once per render."""

        pipe = self.pipelines.img2img
        picture = Image.fromarray(load_image(context.image_prompt))
        with torch.no_grad():
            guided = pipe.prepare_ip_adapter_image_embeds(
                ip_adapter_image=picture, ip_adapter_image_embeds=None, device=pipe._execution_device,
                num_images_per_prompt=1, do_classifier_free_guidance=True,
            )
        unguided = [embeds.chunk(2)[1] for embeds in guided]
        return ImagePrompt(guided=guided, unguided=unguided, mode=context.image_prompt_mode)

    def _image_prompt_kwargs(self, request: FrameRequest, pipe: Any) -> dict[str, Any]:
        """Set the adapter scale for this frame (only when it changes) and pass the cached embedding."""
        if self._image_prompt is None:
            return {}
        scale = float(request.image_prompt_scale)
        if scale != self._applied_scale:
            pipe.set_ip_adapter_scale(image_prompt_scales(pipe.unet, self._image_prompt.mode, scale))
            self._applied_scale = scale
        guided = request.cfg_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        return {"ip_adapter_image_embeds": self._image_prompt.guided if guided else self._image_prompt.unguided}

    def _run_checked(self, pipe: Any, kwargs: dict[str, Any], request: FrameRequest) -> np.ndarray:
        """Run the pipeline; a NaN, black or safety-flagged frame is retried with the next seeds."""
        kwargs = self._supported(pipe, kwargs)
        problem = ""
        for attempt in range(FRAME_RETRIES + 1):
            seed = request.seed + attempt
            self._generator.manual_seed(seed % 2**64)
            output = pipe(**kwargs, generator=self._generator)
            image = output.images[0]
            problem = _frame_problem(image, getattr(output, "nsfw_content_detected", None))
            if not problem:
                return image
            log.warning("frame %d: %s with seed %d; retrying with seed %d", request.index, problem, seed, seed + 1)
        raise RenderError(
            f"frame {request.index}: {problem} with seeds {request.seed}..{request.seed + FRAME_RETRIES}. "
            + _ADVICE.get(problem, "")
        )

    def _supported(self, pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop arguments this pipeline class does not take (LCM pipelines take no negative embeddings)."""
        params = self._call_params.get(id(pipe))
        if params is None:
            params = self._call_params[id(pipe)] = frozenset(inspect.signature(pipe.__call__).parameters)
        return {name: value for name, value in kwargs.items() if name in params}


@functools.cache
def _noise_scaling(scheduler_class: type) -> type:
    """`scheduler_class` with its add_noise scaling the noise by the instance's noise_multiplier.

    diffusers' img2img pipelines noise the encoded frame with scheduler.add_noise(latents, noise, t)
    and nothing else calls it, so this is exactly A1111's initial_noise_multiplier. A multiplier of
    1.0 leaves the noise untouched (bit for bit the plain scheduler's frame).
    """

    class NoiseScaled(scheduler_class):
        noise_multiplier = 1.0

        def add_noise(self, original_samples, noise, timesteps):
            if self.noise_multiplier != 1.0:
                noise = noise * self.noise_multiplier
            return super().add_noise(original_samples, noise, timesteps)

    NoiseScaled.__name__ = NoiseScaled.__qualname__ = scheduler_class.__name__  # what pipeline configs record
    return NoiseScaled


def img2img_strength(num_inference_steps: int, effective: int) -> float:
    """The diffusers img2img `strength` that runs exactly the last `effective` of `num_inference_steps` steps.

    diffusers runs int(num_inference_steps * strength) steps from the end of its schedule, so the
    fraction effective / num_inference_steps (nudged past float rounding: 1 / 49 * 49 < 1) starts
    where A1111 starts, at index steps - t_enc - 1 of a schedule as long as A1111's. The timestep
    there is A1111's (999 * t_enc / (steps - 1): k-diffusion's linspace(999, 0, steps)) exactly for
    schedulers with timestep_spacing "linspace", and about one schedule step (1000 / steps) from it
    for "leading" (SD 1.x, 2.x and SDXL base configs: t_enc * (1000 // steps) + 1, 321 instead of 333
    at 25 steps and denoise 0.35) and "trailing" (the turbo models' configs: 359 there).
    """
    strength = effective / num_inference_steps
    while int(num_inference_steps * strength) < effective:  # the expression diffusers evaluates
        strength = math.nextafter(strength, 2.0)
    return min(strength, 1.0)


def image_prompt_scales(unet: Any, mode: str, scale: float) -> float | dict:
    """The IP-Adapter scale config for `mode`, in diffusers' set_ip_adapter_scale form.

    all: `scale` on every cross-attention layer.
    style: only the middle attention of the lowest-resolution up block with attention (InstantStyle's
        style block; SDXL up_blocks.0.attentions.1, SD 1.5 up_blocks.1.attentions.1).
    layout: only the last attention of the lowest-resolution down block with attention (InstantStyle's
        layout block; SDXL down_blocks.2.attentions.1, SD 1.5 down_blocks.2.attentions.1).
    Block indices come from the UNet itself, so any SD-style UNet works; every other block gets 0.
    """
    if mode == "all":
        return scale
    if mode == "style":
        index, count = _attention_blocks(unet.up_blocks)[0]
        chosen, part = count // 2, "up"
    elif mode == "layout":
        index, count = _attention_blocks(unet.down_blocks)[-1]
        chosen, part = count - 1, "down"
    else:
        raise SettingsError(f"image_prompt_mode: {mode!r} is not a mode; choose one of {', '.join(IMAGE_PROMPT_MODES)}")
    return {part: {f"block_{index}": [scale if layer == chosen else 0.0 for layer in range(count)]}}


def _attention_blocks(blocks: Any) -> list[tuple[int, int]]:
    """(index, number of attention layers) of each block that has cross-attention."""
    return [(index, len(block.attentions)) for index, block in enumerate(blocks) if hasattr(block, "attentions")]


_FLOAT16_ADVICE = "This is usually float16 overflow in the VAE: render in float32 (--dtype float32, setting `dtype`)."
_ADVICE = {
    "NaN values": _FLOAT16_ADVICE,
    "an all-black image": _FLOAT16_ADVICE,
    "blocked by the safety checker": "Change the prompt, or turn the safety checker off (setting `safety_checker`).",
}


def _frame_problem(image: np.ndarray, nsfw: Any) -> str:
    """Why a decoded frame cannot be used ('' when it is fine)."""
    if not np.isfinite(image).all():
        return "NaN values"
    if nsfw is not None and any(nsfw):
        return "blocked by the safety checker"
    if float(image.max()) < 1.0 / 255.0:
        return "an all-black image"
    return ""


def _to_uint8(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float [0, 1] H x W x 3 to uint8, resized to width x height when the pipeline rounded the size."""
    frame = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if frame.shape[:2] != (height, width):
        frame = fit_image(frame, width, height, "resize")
    return frame


def _multiple_of_8(size: int) -> int:
    return max(8, int(size) // 8 * 8)
