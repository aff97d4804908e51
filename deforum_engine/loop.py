"""The frame loop: settings -> plan -> frames -> video, resumable at any frame.

`render` reads as a recipe: check every input, prepare the folder, make frame 0, then for each
diffused frame warp the last one, run the steps chosen once from the plan, generate, and write the
frames in between (cadence) and the new one. All per-frame values come from the plan.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from .backends.base import Backend, FrameRequest, RenderContext
from .errors import RenderCancelled, SettingsError
from .frame.color import ColorReference, color_reference
from .frame.warp import warp_frame
from .output import (
    FrameWriter,
    RenderFolder,
    ResumeState,
    VideoWriter,
    check_soundtrack,
    encode_folder,
    load_resume_state,
)
from .plan import FramePlan, FrameValues, build_plan
from .samplers import step_counts
from .settings import Settings, save_settings, validate_settings
from .steps import ImageStep, frame_motion, generation_steps, preparation_steps, run_steps

FrameCallback = Callable[[int, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class RenderResult:
    """Where a render's frames and video are."""

    folder: Path
    frames_dir: Path
    video: Path | None
    frames: int
    seconds: float
    resumed: bool
    preview: bool


# ----------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RenderInputs:
    """A render's checked inputs: the plan, and the images fitted to W x H (or None)."""

    plan: FramePlan
    init: np.ndarray | None = None
    coherence_image: np.ndarray | None = None


def check_inputs(settings: Settings) -> RenderInputs:
    """Everything that can be wrong with the input fails here, before any model loads."""
    from .images import check_image_file, fit_image, fit_warning, load_image

    plan = build_plan(settings)
    settings = plan.settings
    init = coherence_image = None
    if settings.init_image is not None:
        check_image_file(settings.init_image, role="init_image")
        raw = load_image(settings.init_image)
        warning = fit_warning(raw, settings.W, settings.H)
        if warning:
            print(f"warning: init_image {settings.init_image}: {warning}", file=sys.stderr)
        init = fit_image(raw, settings.W, settings.H, settings.init_fit)
    if settings.image_prompt is not None:
        check_image_file(settings.image_prompt, role="image_prompt",
                         max_bytes=int(settings.image_prompt_max_mb * 1024 * 1024))
    if settings.color_coherence == "Image":
        check_image_file(settings.color_coherence_image, role="color_coherence_image")
        coherence_image = fit_image(load_image(settings.color_coherence_image), settings.W, settings.H, "crop")
    if settings.soundtrack_path is not None and settings.add_soundtrack:
        check_soundtrack(settings.soundtrack_path)
    return RenderInputs(plan, init, coherence_image)


def describe_plan(plan: FramePlan, backend: Backend) -> str:
    """The render summary in plain words: what survives of each frame, and how many steps really run."""
    settings = plan.settings
    strength, steps = plan.values["strength"], plan.values["steps"]
    lines = []
    if backend.is_preview:
        lines.append("MOTION PREVIEW: no model; frames show motion, coherence and cadence (no noise, no diffusion).")
    lines.append(
        f"{plan.frame_count} frames at {settings.W}x{settings.H}, {settings.fps:g} fps "
        f"({plan.frame_count / settings.fps:.1f} s), seed {settings.seed}, "
        f"{len(plan.diffused_frames)} diffused (cadence {settings.diffusion_cadence})."
    )
    low, high = float(strength.min()), float(strength.max())
    keep = f"{low:.0%}" if low == high else f"{low:.0%}-{high:.0%}"
    denoise = f"{1 - high:.2f}" if low == high else f"{1 - high:.2f}-{1 - low:.2f}"
    later = list(plan.diffused_frames[1:]) or [0]  # frame 0 is text-to-image or the init image
    pairs = set(zip(steps[later].tolist(), strength[later].tolist()))
    real = sorted(step_counts(int(n), 1 - s)[1] for n, s in pairs)
    lines.append(
        f"Each diffused frame keeps {keep} of the previous one (strength_schedule): img2img denoise {denoise}, "
        f"so {_span(real)} of {_span(sorted(int(n) for n, _ in pairs))} steps really run per frame."
    )
    if settings.init_image is not None:
        lines.append(
            f"Frame 0 starts from {settings.init_image.name}: strength {settings.init_strength:.2f} "
            f"(denoise {1 - settings.init_strength:.2f})."
        )
    return "\n".join(lines)


def _span(values: list[int]) -> str:
    return f"{values[0]}" if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


# ----------------------------------------------------------------------------------------- loop


@dataclass
class FrameLoop:
    """The per-frame work of one render: a backend and the steps chosen once from the plan."""

    plan: FramePlan
    backend: Backend
    prepare: list[ImageStep]
    finish: list[ImageStep]

    def request(self, frame: FrameValues, image: np.ndarray | None, denoise: float) -> FrameRequest:
        return FrameRequest(
            index=frame.index, image=image, prompt=frame.prompt, negative_prompt=frame.negative_prompt,
            seed=frame.seed, steps=frame.steps, cfg_scale=frame.cfg_scale, denoise=denoise, sampler=frame.sampler,
            image_prompt_scale=frame.image_prompt_scale, blend_prompt=frame.blend_prompt or None,
            blend_negative_prompt=frame.blend_negative_prompt or None, blend_weight=frame.blend_weight,
        )

    def motion(self, start: int, end: int) -> list[np.ndarray]:
        """The camera motion from frame `start` to each frame start+1 .. end, accumulated frame over frame."""
        settings = self.plan.settings
        total, accumulated = np.eye(3), []
        for index in range(start + 1, end + 1):
            step = frame_motion(self.plan.frame(index), settings.W, settings.H, settings.enable_perspective_flip)
            total = step @ total
            accumulated.append(total)
        return accumulated

    def warp(self, image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return warp_frame(image, matrix, self.plan.settings.border)

    def next_key(self, previous: np.ndarray, motion: list[np.ndarray], end: int) -> np.ndarray:
        """Warp the last diffused frame to frame `end`, prepare it, and generate the new diffused frame."""
        frame = self.plan.frame(end)
        prepared = run_steps(self.prepare, self.warp(previous, motion[-1]), frame)
        generated = self.backend.generate(self.request(frame, prepared, frame.denoise))
        return run_steps(self.finish, generated, frame)

    def in_between(self, previous: np.ndarray, new: np.ndarray, motion: list[np.ndarray], start: int):
        """Cadence frames: both neighbouring diffused frames warped to each frame's camera, crossfaded."""
        to_new = np.linalg.inv(motion[-1])
        for offset, to_here in enumerate(motion[:-1], start=1):
            forward = self.warp(previous, to_here)
            backward = self.warp(new, to_here @ to_new)  # undo the motion from this frame to the new one
            weight = offset / len(motion)
            yield start + offset, cv2.addWeighted(forward, 1 - weight, backward, weight, 0)


def _first_frame(loop: FrameLoop, init: np.ndarray | None) -> np.ndarray:
    """Frame 0: text-to-image, or img2img of the init image at its denoise."""
    denoise = 1.0 if init is None else 1.0 - loop.plan.settings.init_strength
    return loop.backend.generate(loop.request(loop.plan.frame(0), init, denoise))


def _reference(inputs: RenderInputs, first: np.ndarray) -> ColorReference | None:
    """The colour reference: a given image, else the init image, else the first generated frame."""
    mode = inputs.plan.settings.color_coherence
    if mode == "None":
        return None
    if mode == "Image":
        return color_reference(inputs.coherence_image, "LAB")
    return color_reference(inputs.init if inputs.init is not None else first, mode)


# ----------------------------------------------------------------------------------------- folder


def read_render(folder: RenderFolder) -> tuple[dict, Settings]:
    """A render folder's recorded info and resolved settings; SettingsError if it holds no render."""
    if not folder.is_render() or folder.status() is None:
        raise SettingsError(
            f"{folder.root}: not a render folder (no settings.json / render.json); "
            "give the folder that `deforum-engine render` wrote"
        )
    raw = json.loads(folder.settings_path.read_text())
    return folder.info(), validate_settings(raw, str(folder.settings_path))


def default_output(settings: Settings, preview: bool, renders_dir: Path = Path("renders")) -> Path:
    """`renders/<name>-<time>/`, with `-preview` for motion previews."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = "-preview" if preview else ""
    return renders_dir / f"{settings.name or 'render'}{label}-{stamp}"


def _state(key_frame: int, key_image: np.ndarray, reference: ColorReference | None) -> ResumeState:
    """What resuming after diffused frame `key_frame` needs; cadence frames are redone from it."""
    arrays = {"key_image": key_image}
    if reference is not None:
        arrays["color_reference"] = reference.to_array()
        arrays["color_mode"] = reference.mode
    return ResumeState(next_frame=key_frame + 1, arrays=arrays)


# ----------------------------------------------------------------------------------------- render


def make_backend(settings: Settings, preview: bool) -> Backend:
    """The preview backend, or diffusers with the settings' model (loaded once per process)."""
    if preview:
        from .backends.preview import PreviewBackend

        return PreviewBackend()
    from .backends.diffusers import DiffusersBackend

    return DiffusersBackend(settings.model, device=settings.device, dtype=settings.dtype,
                            ip_adapter=settings.ip_adapter, safety_checker=settings.safety_checker,
                            model_config=settings.model_config_dir,
                            tiny_vae=(settings.tiny_vae_model or True) if settings.vae == "tiny" else None,
                            compile_unet=settings.compile_unet)


def render(
    settings: Settings,
    out: str | Path | None = None,
    *,
    preview: bool = False,
    backend: Backend | None = None,
    on_frame: FrameCallback | None = None,
    quiet: bool = False,
    cancel: threading.Event | None = None,
) -> RenderResult:
    """Render `settings` into `out` (default `renders/<name>-<time>/`): PNG frames, settings, video.

    `on_frame(index, image)` is called for every finished frame, in frame order (from a worker
    thread for most frames); it may return a replacement image for the stored frame and video
    (post-processing), or None. Setting `cancel` (from any thread) stops the render before its
    next diffused frame with RenderCancelled; the folder then resumes like any stopped render.
    """
    # 1. Check every input, then load the model, before anything is written.
    inputs = check_inputs(settings)
    plan = inputs.plan
    backend = backend or make_backend(plan.settings, preview)
    _begin(backend, plan.settings)
    folder = RenderFolder(Path(out) if out is not None else default_output(plan.settings, preview))
    folder.ensure_writable()
    # 2. Record the resolved settings so the render can be repeated and resumed.
    save_settings(plan.settings, folder.settings_path)
    folder.update_info(backend=backend.name, preview=backend.is_preview, status="rendering",
                frames=plan.frame_count, model=plan.settings.model)
    return _run(inputs, folder, backend, None, on_frame, quiet, cancel)


def resume(
    folder: str | Path,
    *,
    backend: Backend | None = None,
    on_frame: FrameCallback | None = None,
    quiet: bool = False,
    cancel: threading.Event | None = None,
) -> RenderResult:
    """Continue a stopped render from its folder; the frames equal those of an uninterrupted run."""
    render_folder = RenderFolder(Path(folder))
    info, settings = read_render(render_folder)
    if info.get("status") == "finished":
        raise SettingsError(
            f"{render_folder.root}: this render is already finished; "
            f"`deforum-engine encode {render_folder.root}` rebuilds its video"
        )
    inputs = check_inputs(settings)
    backend = backend or make_backend(inputs.plan.settings, bool(info.get("preview")))
    _begin(backend, inputs.plan.settings)
    state = load_resume_state(render_folder)
    return _run(inputs, render_folder, backend, state, on_frame, quiet, cancel)


def _begin(backend: Backend, settings: Settings) -> None:
    """Once per render: the backend's set-up (model, image-prompt adapter and embedding)."""
    backend.begin(RenderContext(settings.W, settings.H, settings.image_prompt, settings.image_prompt_mode))


def _run(inputs: RenderInputs, folder: RenderFolder, backend: Backend, state: ResumeState | None,
         on_frame: FrameCallback | None, quiet: bool, cancel: threading.Event | None) -> RenderResult:
    """The render after its checks: summary, the frame loop under a progress bar, the video."""
    plan = inputs.plan
    settings = plan.settings
    started = time.perf_counter()
    if not quiet:
        print(describe_plan(plan, backend), file=sys.stderr)
    audio = settings.soundtrack_path if settings.add_soundtrack else None
    resumed = state is not None
    video = None if resumed else VideoWriter(folder.video_path, settings.W, settings.H, settings.fps,
                                             crf=settings.crf, preset=settings.video_preset, audio_path=audio,
                                             frame_count=plan.frame_count)
    if not quiet:
        print(f"Output: {folder.root}", file=sys.stderr)
    try:
        with tqdm(total=plan.frame_count, unit="frame", disable=quiet, desc=folder.root.name) as progress:
            _loop(inputs, FrameWriter(folder, video), backend, state, progress, on_frame, cancel)
    except RenderCancelled:
        if not quiet:
            print(f"\ncancelled: the frames written so far are kept in {folder.root}; "
                  f"`deforum-engine resume {folder.root}` continues the render", file=sys.stderr)
        raise
    except KeyboardInterrupt:
        print(f"\nstopped: the frames written so far are kept in {folder.root}; "
              f"`deforum-engine resume {folder.root}` continues the render", file=sys.stderr)
        raise
    # 5. A resumed render's stream was cut by the stop: rebuild the video from the frames.
    if resumed:
        encode_folder(folder, settings.fps, settings.crf, settings.video_preset, audio_path=audio,
                      frame_count=plan.frame_count)
    folder.update_info(status="finished")
    return RenderResult(folder.root, folder.frames_dir, folder.video_path, plan.frame_count,
                        time.perf_counter() - started, resumed, backend.is_preview)


def _loop(inputs: RenderInputs, writer: FrameWriter, backend: Backend, state: ResumeState | None,
          progress: tqdm, on_frame: FrameCallback | None, cancel: threading.Event | None) -> None:
    """Frame 0 (or the resumed state), then each diffused frame with the cadence frames before it."""
    plan = inputs.plan
    keys = plan.diffused_frames
    with writer:

        def emit(index: int, image: np.ndarray, saved: ResumeState | None) -> None:
            stored = on_frame(index, image) if on_frame is not None else None
            writer.put(index, image if stored is None else stored, saved)
            progress.update(1)

        # 3. Frame 0, the colour reference, and the steps this render needs.
        if state is None:
            previous = _first_frame(FrameLoop(plan, backend, [], []), inputs.init)
            reference = _reference(inputs, previous)
            emit(0, previous, _state(0, previous, reference))
            next_key = 1
        else:
            previous = state.arrays["key_image"]
            reference = (ColorReference.from_array(state.arrays["color_mode"], state.arrays["color_reference"])
                         if "color_reference" in state.arrays else None)
            next_key = keys.index(state.next_frame - 1) + 1
            progress.update(state.next_frame)
        loop = FrameLoop(plan, backend, preparation_steps(plan, reference, with_noise=not backend.is_preview),
                         generation_steps(reference, backend.is_preview))
        # 4. Each diffused frame, with the cadence frames before it. A segment's in-between frames
        #    are made and written on a worker thread while the backend generates the next key.
        def finish_segment(previous, new, motion, start, end):
            for index, tween in loop.in_between(previous, new, motion, start):
                emit(index, tween, None)
            emit(end, new, _state(end, new, reference))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence") as segments:
            pending = None
            for k in range(next_key, len(keys)):
                if cancel is not None and cancel.is_set():
                    if pending is not None:
                        pending.result()  # the finished segment is kept
                    raise RenderCancelled(f"render cancelled after frame {keys[k - 1]}; "
                                          f"`deforum-engine resume {writer.folder.root}` continues it")
                start, end = keys[k - 1], keys[k]
                motion = loop.motion(start, end)
                new = loop.next_key(previous, motion, end)
                if pending is not None:
                    pending.result()  # frames stay in order, and an error surfaces here
                pending = segments.submit(finish_segment, previous, new, motion, start, end)
                previous = new
            if pending is not None:
                pending.result()
