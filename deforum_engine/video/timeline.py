"""A render's video input, planned up front: which clip, which of its frames each output frame
uses, and the per-frame hybrid and flow values (the schedules evaluated for every frame).

The plan builds one `VideoPlan`; the loop asks it which clip frame a frame gets and reads the
values by frame index.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SettingsError
from ..schedules import evaluate_schedule
from ..settings import Settings
from .clip import Clip, FrameMap, fit_note, frame_map, probe_clip

# per-frame name -> the schedule it comes from
VIDEO_VALUES = {
    "hybrid_comp_alpha": "hybrid_comp_alpha_schedule",
    "hybrid_comp_mask_blend_alpha": "hybrid_comp_mask_blend_alpha_schedule",
    "hybrid_comp_mask_contrast": "hybrid_comp_mask_contrast_schedule",
    "hybrid_comp_mask_auto_contrast_cutoff_low": "hybrid_comp_mask_auto_contrast_cutoff_low_schedule",
    "hybrid_comp_mask_auto_contrast_cutoff_high": "hybrid_comp_mask_auto_contrast_cutoff_high_schedule",
    "hybrid_flow_factor": "hybrid_flow_factor_schedule",
    "cadence_flow_factor": "cadence_flow_factor_schedule",
    "redo_flow_factor": "redo_flow_factor_schedule",
}
_WHOLE = ("hybrid_comp_mask_auto_contrast_cutoff_low", "hybrid_comp_mask_auto_contrast_cutoff_high")  # Deforum: int()


def uses_clip(settings: Settings) -> bool:
    """Video Input mode, or hybrid video reading the clip (not only the init image)."""
    if settings.animation_mode == "Video Input" or settings.hybrid_motion != "None":
        return True
    return settings.hybrid_composite != "None" and not settings.hybrid_use_init_image


@dataclass(frozen=True)
class VideoSource:
    """The probed clip and which of its frames each output frame uses."""

    clip: Clip
    frames: FrameMap
    note: str | None  # the clip is another size than the render


def video_source(settings: Settings) -> VideoSource | None:
    """Probe the clip the settings use (a SettingsError names the file and setting); None without one."""
    if not uses_clip(settings):
        return None
    clip = probe_clip(settings.video_init_path, "video_init_path")
    frames = frame_map(clip, settings.extract_nth_frame, settings.extract_from_frame, settings.extract_to_frame)
    return VideoSource(clip, frames, fit_note(clip, settings.W, settings.H, settings.init_fit, "video_init_path"))


def frame_count_update(settings: Settings, source: VideoSource | None) -> dict[str, Any]:
    """What the clip changes in the settings, as Deforum does: the frame count is the frames
    extracted (unless hybrid composites the init image), and Video Input mode diffuses every frame."""
    if source is None:
        return {}
    update: dict[str, Any] = {}
    if settings.animation_mode == "Video Input" or not settings.hybrid_use_init_image:
        update["max_frames"] = source.frames.count
    if settings.animation_mode == "Video Input":
        update["diffusion_cadence"] = 1
    return update


@dataclass(frozen=True)
class VideoPlan:
    """The clip (None: hybrid compositing of the init image only) and every frame's video values."""

    source: VideoSource | None
    values: dict[str, np.ndarray]

    def source_frame(self, index: int) -> int | None:
        """The clip frame output frame `index` uses (None without a clip)."""
        return None if self.source is None else self.source.frames.source(index)

    def to_json(self, frames: int) -> dict[str, list]:
        out: dict[str, list] = {name: [float(v) for v in array] for name, array in self.values.items()}
        if self.source is not None:
            out["video_frame"] = [int(self.source.frames.source(t)) for t in range(frames)]
        return out


def video_plan(settings: Settings, source: VideoSource | None, frames: int, variables: dict) -> VideoPlan | None:
    """Every frame's hybrid and flow values, for renders that use them; None otherwise."""
    hybrid = settings.hybrid_composite != "None" or settings.hybrid_motion != "None"
    flows = settings.optical_flow_cadence != "None" or settings.optical_flow_redo_generation != "None" \
        or settings.diffusion_redo > 0
    if source is None and not hybrid and not flows and settings.color_coherence != "Video Input":
        return None
    if settings.color_coherence == "Video Input" and source is None:
        raise SettingsError("color_coherence 'Video Input' matches colours to the clip: set animation_mode "
                            "'Video Input' or hybrid video with video_init_path, or choose another color_coherence")
    values = {}
    for name, setting in VIDEO_VALUES.items():
        array = evaluate_schedule(getattr(settings, setting), frames, seed=settings.seed, fps=settings.fps,
                                  variables=variables, setting=setting, nan_fill=settings.deforum_nan_fill)
        values[name] = np.trunc(array) if name in _WHOLE else array
    return VideoPlan(source, values)


def describe_video(settings: Settings, video: VideoPlan | None) -> list[str]:
    """The summary's lines on the clip, its frames and the flow methods."""
    if video is None:
        return []
    lines = []
    if video.source is not None:
        clip, frames = video.source.clip, video.source.frames
        use = "each frame starts from its clip frame (img2img)" if settings.animation_mode == "Video Input" \
            else "hybrid video"
        lines.append(f"Video in: {clip.path.name} ({clip.width}x{clip.height}, {clip.frame_count} frames, "
                     f"{clip.fps:g} fps): frames {frames.first}-{frames.source(frames.count - 1)} every "
                     f"{frames.step} -> {frames.count} output frames at {settings.fps:g} fps; {use}.")
        if video.source.note:
            lines.append(video.source.note)
    hybrid = [f"composite {settings.hybrid_composite} (mask {settings.hybrid_comp_mask_type})"
              if settings.hybrid_composite != "None" else "",
              f"motion {settings.hybrid_motion}" + (f" ({settings.hybrid_flow_method})"
                                                    if settings.hybrid_motion == "Optical Flow" else "")
              if settings.hybrid_motion != "None" else ""]
    if any(hybrid):
        lines.append("Hybrid video: " + ", ".join(part for part in hybrid if part) + ".")
    flows = [f"{name} {method}" for name, method in (("optical-flow cadence", settings.optical_flow_cadence),
                                                      ("optical-flow redo", settings.optical_flow_redo_generation))
             if method != "None"]
    if settings.diffusion_redo:
        flows.append(f"diffusion redo x{settings.diffusion_redo}")
    if flows:
        lines.append("Optical flow: " + ", ".join(flows) + ".")
    return lines
