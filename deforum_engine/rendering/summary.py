"""The render summary: what a render will do, in plain words, before its first frame."""
from __future__ import annotations

import numpy as np

from deforum_engine.backends.base import Backend
from deforum_engine.models.depth import DepthChoice
from deforum_engine.plan.frame_plan import FramePlan
from deforum_engine.prompts.samplers import step_counts
from deforum_engine.video.timeline import describe_video


def describe_plan(plan: FramePlan, backend: Backend, depth: DepthChoice | None = None) -> str:
    """Frames, size and seed; the animation mode (and the depth model, `depth`, in 3D); what survives
    of each frame, and how many steps really run."""
    settings = plan.settings
    lines = []
    if backend.is_preview:
        lines.append("MOTION PREVIEW: no model; frames show the motion, colour coherence, contrast and cadence "
                     "on your picture (no prompts, noise or sharpening).")
    lines.append(
        f"{plan.frame_count} frames at {plan.canvas.width}x{plan.canvas.height}, {settings.fps:g} fps "
        f"({plan.frame_count / settings.fps:.1f} s), seed {settings.seed}, "
        f"{len(plan.diffused_frames)} {'key frames' if backend.is_preview else 'diffused'} "
        f"(cadence {settings.diffusion_cadence})."
    )
    if plan.camera is not None:
        lines.append(_describe_3d(plan, depth))
    if depth is not None and settings.save_depth_maps:
        lines.append(f"Depth maps of every frame go to depth/ beside frames/ ({depth.describe()}).")
    if not backend.is_preview:
        lines.extend(_describe_diffusion(plan))
    lines.extend(_describe_control(plan, backend))
    lines += describe_video(settings, plan.video)
    if settings.init_image is not None:
        strength_note = "" if backend.is_preview else (
            f": strength {settings.init_strength:.2f} (denoise {1 - settings.init_strength:.2f})")
        lines.append(f"Frame 0 starts from {settings.init_image.name}{strength_note}.")
    return "\n".join(lines)


def _describe_diffusion(plan: FramePlan) -> list[str]:
    """What survives of each diffused frame, and how many steps really run."""
    strength, steps = plan.values["strength"], plan.values["steps"]
    lines = []
    low, high = float(strength.min()), float(strength.max())
    keep = f"{low:.0%}" if low == high else f"{low:.0%}-{high:.0%}"
    denoise = f"{1 - high:.2f}" if low == high else f"{1 - high:.2f}-{1 - low:.2f}"
    later = list(plan.diffused_frames[1:]) or [0]  # frame 0 is text-to-image or the init image
    pairs = set(zip(steps[later].tolist(), strength[later].tolist()))
    real = sorted(step_counts(int(n), 1 - s)[1] for n, s in pairs)
    lines.append(
        f"Each diffused frame keeps {keep} of the previous one (strength_schedule): img2img denoise {denoise}, "
        f"so {_span(real)} of {_span(sorted(int(n) for n, _ in pairs))} steps really run per frame "
        f"(AUTOMATIC1111's count: int(steps x denoise) + 1)."
    )
    multiplier = plan.values["noise_multiplier"]
    if np.any(multiplier != 1.0):
        lines.append(f"img2img starting noise x {_range(multiplier)} (noise_multiplier_schedule).")
    return lines


def _describe_control(plan: FramePlan, backend: Backend) -> list[str]:
    """One line per ControlNet unit (its model, module, input and weights), one for the masks."""
    lines = []
    for track in plan.control.units:
        unit = track.unit
        source = "the previous frame (loopback)" if unit.loopback_mode else unit.vid_path or "the frame's own depth"
        window = f"{_range(track.guidance_start)} .. {_range(track.guidance_end)}"
        lines.append(f"ControlNet {unit.name}: {unit.model}, module {unit.module_name}, from {source}; weight "
                     f"{_range(track.weight)}, guidance window {window} of each frame's steps, {unit.control_mode}"
                     + (" (not used by the motion preview)" if backend.is_preview else "") + ".")
    control = plan.control
    if control.mask is not None:
        lines.append(f"Mask: {', '.join(control.mask.texts)} (mask_schedule{', inverted' if plan.settings.invert_mask else ''})"
                     f": only the white part is repainted.")
    if control.noise_mask is not None and control.noise_mask is not control.mask:
        lines.append(f"Noise mask: {', '.join(control.noise_mask.texts)} (noise_mask_schedule).")
    return lines


def _range(values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _span(values: list[int]) -> str:
    return f"{values[0]}" if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def _describe_3d(plan: FramePlan, depth: DepthChoice | None) -> str:
    """3D mode: which depth the camera moves through."""
    if not plan.camera.depth_warping:
        through = "over flat depth (use_depth_warping is off)"
    elif depth is None:
        through = "over flat depth (motion preview: no depth model)"
    else:
        through = f"through the {depth.describe()}"
    return (f"3D camera (Deforum's): each frame re-projected {through}; "
            f"{plan.camera.sampling_mode} sampling, {plan.camera.padding_mode} padding.")
