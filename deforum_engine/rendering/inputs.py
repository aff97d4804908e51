"""A render's inputs, checked before any model loads: the plan, and the pictures it starts from.

`check_inputs` turns settings into everything the loop needs, typed: the plan (every per-frame
value), frame 0's init image fitted to the canvas with the denoise it gets, and which colours the
frames are matched to. Every problem (a schedule, a missing or corrupt file, an unreadable
soundtrack) is a SettingsError here, so nothing has been loaded or written when it is raised.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from deforum_engine.config.settings import Settings
from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import check_image_file, fit_image, fit_warning, load_image
from deforum_engine.output.video import check_soundtrack
from deforum_engine.plan.frame_plan import FramePlan, plan_frames
from deforum_engine.plan.plan_inputs import load_plan_inputs
from deforum_engine.rendering.guidance import NO_GUIDE, Guide, check_guidance
from deforum_engine.video.clip import VideoFrames
from deforum_engine.video.flow import check_flow_methods


@dataclass(frozen=True)
class RenderInputs:
    """The checked inputs of one render."""

    plan: FramePlan
    init: np.ndarray | None  # frame 0's starting picture at W x H, or None for text-to-image
    init_denoise: float  # how much of `init` frame 0 repaints (1.0 for text-to-image)
    color_mode: str | None  # the colour space frames are matched in; None: no colour coherence
    color_image: np.ndarray | None  # what colours are matched to; None: frame 0's output
    guide: Guide = NO_GUIDE  # ControlNet units and masks (guidance.py)
    video: VideoFrames | None = None  # the clip's frames, fitted to W x H (Video Input, hybrid video)


def check_inputs(settings: Settings, with_models: bool = True) -> RenderInputs:
    """Everything that can be wrong with the input fails here, before any model loads.

    `with_models` False (motion previews) leaves out the check of the ControlNet models, which a
    preview never loads."""
    plan = plan_frames(load_plan_inputs(settings))  # every file the plan reads is read here
    settings = plan.settings
    init = _init_image(settings)
    if settings.image_prompt is not None:
        check_image_file(settings.image_prompt, role="image_prompt",
                         max_bytes=int(settings.image_prompt_max_mb * 1024 * 1024))
    if settings.soundtrack_path is not None and settings.add_soundtrack:
        _check_clip_audio(plan)
        check_soundtrack(settings.soundtrack_path)
    color_mode, color_image = _color_target(settings, init)
    init_denoise = 1.0 if init is None else 1.0 - settings.init_strength
    check_flow_methods(_flow_methods(settings))
    video = _video_frames(plan)
    if video is not None and settings.animation_mode == "Video Input":  # every frame: its clip frame, its strength
        init, init_denoise = video[0], 1.0 - float(plan.values["strength"][0])
    elif video is not None and settings.hybrid_use_first_frame_as_init_image:  # Deforum: the clip's first frame
        init, init_denoise = video[0], 1.0 - settings.init_strength
    guide = check_guidance(plan, init, with_models)
    return RenderInputs(plan, init, init_denoise, color_mode, color_image, guide, video)


def _check_clip_audio(plan: FramePlan) -> None:
    """add_soundtrack 'Init Video' with a clip that has no sound: say so (not "cannot be read as audio")."""
    source = plan.video.source if plan.video is not None else None
    settings = plan.settings
    if source is not None and settings.soundtrack_path == settings.video_init_path and not source.clip.has_audio:
        raise SettingsError(f"add_soundtrack 'Init Video': {source.clip.path} has no audio track; "
                            "set add_soundtrack to \"None\", or to \"File\" with soundtrack_path")


def _flow_methods(settings: Settings) -> dict[str, str]:
    """The optical-flow methods this render runs, by setting."""
    methods = {"optical_flow_cadence": settings.optical_flow_cadence,
               "optical_flow_redo_generation": settings.optical_flow_redo_generation}
    if settings.hybrid_motion == "Optical Flow":
        methods["hybrid_flow_method"] = settings.hybrid_flow_method
    return {key: method for key, method in methods.items() if method != "None"}


def _video_frames(plan: FramePlan) -> VideoFrames | None:
    """The clip's frames as the render reads them (the first one decoded now: a bad stream fails here)."""
    if plan.video is None or plan.video.source is None:
        return None
    settings, source = plan.settings, plan.video.source
    frames = VideoFrames(source.clip, source.frames, settings.W, settings.H, settings.init_fit,
                         keep=settings.diffusion_cadence + 2)
    frames[0]
    if source.note:
        print(f"note: {source.note}", file=sys.stderr)
    return frames


def _init_image(settings: Settings) -> np.ndarray | None:
    """The init image fitted to W x H (with a warning when it is much smaller), or None."""
    if settings.init_image is None:
        return None
    check_image_file(settings.init_image, role="init_image")
    raw = load_image(settings.init_image)
    warning = fit_warning(raw, settings.W, settings.H)
    if warning:
        print(f"warning: init_image {settings.init_image}: {warning}", file=sys.stderr)
    return fit_image(raw, settings.W, settings.H, settings.init_fit)


def _color_target(settings: Settings, init: np.ndarray | None) -> tuple[str | None, np.ndarray | None]:
    """(colour space, reference picture): a given image (matched in LAB); else the init image, unless
    `color_coherence_source` asks for frame 0's output as Deforum does; None means frame 0's output."""
    mode = settings.color_coherence
    if mode in ("None", "Video Input"):  # Video Input: matched to the clip by the video steps
        return None, None
    if mode == "Image":
        check_image_file(settings.color_coherence_image, role="color_coherence_image")
        return "LAB", fit_image(load_image(settings.color_coherence_image), settings.W, settings.H, "crop")
    return mode, init if settings.color_coherence_source == "init_image" else None
