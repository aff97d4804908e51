"""A render's video input, planned up front: which clip, and which of its frames each output frame uses.

The plan builds one `VideoPlan`; the loop asks it which clip frame a frame gets. The per-frame hybrid
and flow values (hybrid_comp_alpha, hybrid_flow_factor, cadence_flow_factor ...) are rows of the table
of per-frame values (config/frame_values.py), in the plan's `values` like every other schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deforum_engine.config.settings import Settings
from deforum_engine.errors import SettingsError
from deforum_engine.video.clip import Clip, FrameMap, fit_note, frame_map, probe_clip


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
    """The clip (None: hybrid compositing of the init image only, or optical flow without a clip)."""

    source: VideoSource | None

    def to_json(self, frames: int) -> dict[str, list]:
        """`plan --json`'s clip frame of each output frame (none without a clip)."""
        if self.source is None:
            return {}
        return {"video_frame": [int(self.source.frames.source(t)) for t in range(frames)]}


def video_plan(settings: Settings, source: VideoSource | None) -> VideoPlan | None:
    """The video plan of renders that use a clip, hybrid video or optical flow; None otherwise."""
    hybrid = settings.hybrid_composite != "None" or settings.hybrid_motion != "None"
    flows = settings.optical_flow_cadence != "None" or settings.optical_flow_redo_generation != "None" \
        or settings.diffusion_redo > 0
    if source is None and not hybrid and not flows and settings.color_coherence != "Video Input":
        return None
    if settings.color_coherence == "Video Input" and source is None:
        raise SettingsError("color_coherence 'Video Input' matches colours to the clip: set animation_mode "
                            "'Video Input' or hybrid video with video_init_path, or choose another color_coherence")
    return VideoPlan(source)


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
