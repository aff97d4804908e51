"""The one table of per-frame values: each value's engine name, Deforum setting, Parseq field, default,
range, unit and animation mode.

Everything that lists per-frame values reads this table: the settings model (its schedule fields and
defaults), the plan (its arrays, ranges and `FrameValues`), both importers, `plan --json`, the plan
table, `plot` and the summary. A new per-frame value is one row here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["2D", "3D", "both"]

DEFAULT_ZOOM = "0:(1.0025+0.002*sin(1.25*3.14*t/30))"
DEFAULT_SEED_SCHEDULE = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'


@dataclass(frozen=True)
class PerFrameValue:
    """One per-frame value. `setting` is the settings field it comes from (Deforum's key where Deforum has it)."""

    name: str  # the plan's array, FrameValues' field, `plan --json`'s key (Deforum's `_schedule` suffix dropped)
    setting: str
    default: str | None  # the schedule's default text; None: the value is derived (see `evaluated`)
    unit: str
    mode: Mode = "both"  # which animation modes read it; the other mode gets `neutral`
    parseq: str | None = None  # the Parseq manifest's field
    low: float | None = None  # allowed range per frame (None: unbounded)
    high: float | None = None
    low_inclusive: bool = True
    neutral: float | None = None  # the value where the mode does not read the schedule
    motion: bool = False  # per-frame motion: Parseq's `_delta` column is used for it
    integer: bool = False
    evaluated: bool = True  # False: the plan computes it with its own rule (seeds, steps, image prompt scale ...)
    short: str = ""  # column header in `plan`'s table
    panel: str = ""  # `plot` panel title; values sharing one are drawn together
    form: bool = False  # the studio's form edits its schedule and draws it as a curve

    @property
    def header(self) -> str:
        return self.short or self.name


_DEG = "degrees"
_DEG_PER_FRAME = "degrees per frame"
PER_FRAME_VALUES: tuple[PerFrameValue, ...] = (
    # 2D motion (Deforum's conventions: pixels and degrees per frame, zoom as a factor per frame)
    PerFrameValue("zoom", "zoom", DEFAULT_ZOOM, "scale factor per frame", "2D", "zoom", low=0.0, low_inclusive=False,
                  neutral=1.0, motion=True, panel="zoom", form=True),
    PerFrameValue("angle", "angle", "0:(0)", _DEG_PER_FRAME, "2D", "angle", neutral=0.0, motion=True,
                  panel="rotation (deg/frame)", form=True),
    PerFrameValue("translation_x", "translation_x", "0:(0)", "pixels per frame (2D), Deforum units per frame (3D)",
                  "both", "translation_x", motion=True, short="tx", panel="translation", form=True),
    PerFrameValue("translation_y", "translation_y", "0:(0)", "pixels per frame (2D), Deforum units per frame (3D)",
                  "both", "translation_y", motion=True, short="ty", panel="translation", form=True),
    PerFrameValue("transform_center_x", "transform_center_x", "0:(0.5)", "fraction of the width", "2D",
                  "transform_center_x", neutral=0.5, short="cx", form=True),
    PerFrameValue("transform_center_y", "transform_center_y", "0:(0.5)", "fraction of the height", "2D",
                  "transform_center_y", neutral=0.5, short="cy", form=True),
    PerFrameValue("perspective_flip_theta", "perspective_flip_theta", "0:(0)", _DEG, "both", "perspective_flip_theta",
                  motion=True, short="flip_t", panel="perspective flip (deg)", form=True),
    PerFrameValue("perspective_flip_phi", "perspective_flip_phi", "0:(0)", _DEG, "both", "perspective_flip_phi",
                  motion=True, short="flip_p", panel="perspective flip (deg)", form=True),
    PerFrameValue("perspective_flip_gamma", "perspective_flip_gamma", "0:(0)", _DEG, "both", "perspective_flip_gamma",
                  motion=True, short="flip_g", panel="perspective flip (deg)", form=True),
    PerFrameValue("perspective_flip_fv", "perspective_flip_fv", "0:(53)", _DEG, "both", "perspective_flip_fv",
                  low=0.0, high=180.0, low_inclusive=False, short="flip_fv", form=True),
    # The 3D camera
    PerFrameValue("translation_z", "translation_z", "0:(1.75)", "Deforum units per frame (+ pushes in)", "3D",
                  "translation_z", neutral=0.0, motion=True, short="tz", panel="translation", form=True),
    PerFrameValue("rotation_3d_x", "rotation_3d_x", "0:(0)", _DEG_PER_FRAME, "3D", "rotation_3d_x", neutral=0.0,
                  motion=True, short="rx", panel="3D rotation (deg/frame)", form=True),
    PerFrameValue("rotation_3d_y", "rotation_3d_y", "0:(0)", _DEG_PER_FRAME, "3D", "rotation_3d_y", neutral=0.0,
                  motion=True, short="ry", panel="3D rotation (deg/frame)", form=True),
    PerFrameValue("rotation_3d_z", "rotation_3d_z", "0:(0)", _DEG_PER_FRAME, "3D", "rotation_3d_z", neutral=0.0,
                  motion=True, short="rz", panel="3D rotation (deg/frame)", form=True),
    PerFrameValue("fov", "fov_schedule", "0:(70)", _DEG, "3D", "fov", low=0.0, high=180.0, low_inclusive=False,
                  neutral=70.0, panel="field of view (deg)", form=True),
    PerFrameValue("near", "near_schedule", "0:(200)", "depth units", "3D", "near", low=0.0, low_inclusive=False,
                  neutral=200.0),
    PerFrameValue("far", "far_schedule", "0:(10000)", "depth units", "3D", "far", low=0.0, low_inclusive=False,
                  neutral=10000.0),
    PerFrameValue("aspect_ratio", "aspect_ratio_schedule", "0:(1)", "width / height factor", "3D", low=0.0,
                  low_inclusive=False, neutral=1.0),
    # Coherence and diffusion
    PerFrameValue("noise", "noise_schedule", "0:(0.065)", "noise amount", "both", "noise", low=0.0, high=10.0,
                  panel="strength / noise", form=True),
    PerFrameValue("strength", "strength_schedule", "0:(0.65)", "share of the previous frame kept (denoise = 1 - it)",
                  "both", "strength", low=0.0, high=1.0, panel="strength / noise", form=True),
    PerFrameValue("contrast", "contrast_schedule", "0:(1.0)", "contrast factor", "both", "contrast", low=0.0,
                  form=True),
    PerFrameValue("cfg_scale", "cfg_scale_schedule", "0:(7)", "classifier-free guidance scale", "both", "scale",
                  low=0.0, high=100.0, short="cfg", panel="cfg scale / steps", form=True),
    PerFrameValue("kernel", "kernel_schedule", "0:(5)", "anti-blur kernel size (pixels)", "both", "antiblur_kernel",
                  low=0.0, high=99.0),
    PerFrameValue("sigma", "sigma_schedule", "0:(1)", "anti-blur sigma (pixels)", "both", "antiblur_sigma", low=0.0),
    PerFrameValue("amount", "amount_schedule", "0:(0.1)", "anti-blur amount", "both", "antiblur_amount", low=0.0),
    PerFrameValue("threshold", "threshold_schedule", "0:(0)", "anti-blur threshold", "both", "antiblur_threshold",
                  low=0.0),
    # Hybrid video and optical flow (read where the render uses them: video/, rendering/video_steps.py)
    PerFrameValue("hybrid_comp_alpha", "hybrid_comp_alpha_schedule", "0:(0.5)",
                  "share of the composite mixed into the frame", short="comp_alpha", form=True),
    PerFrameValue("hybrid_comp_mask_blend_alpha", "hybrid_comp_mask_blend_alpha_schedule", "0:(0.5)",
                  "share of the clip in a Blend mask", short="mask_blend"),
    PerFrameValue("hybrid_comp_mask_contrast", "hybrid_comp_mask_contrast_schedule", "0:(1)", "mask contrast factor",
                  short="mask_contr"),
    PerFrameValue("hybrid_comp_mask_auto_contrast_cutoff_low", "hybrid_comp_mask_auto_contrast_cutoff_low_schedule",
                  "0:(0)", "mask auto-contrast low percentile", low=0.0, high=100.0, integer=True, short="cutoff_lo"),
    PerFrameValue("hybrid_comp_mask_auto_contrast_cutoff_high", "hybrid_comp_mask_auto_contrast_cutoff_high_schedule",
                  "0:(100)", "mask auto-contrast high percentile", low=0.0, high=100.0, integer=True,
                  short="cutoff_hi"),
    PerFrameValue("hybrid_flow_factor", "hybrid_flow_factor_schedule", "0:(1)", "share of the clip's flow applied",
                  short="flow_factor"),
    PerFrameValue("cadence_flow_factor", "cadence_flow_factor_schedule", "0:(1)",
                  "share of the optical-flow cadence's flow applied", short="cad_flow"),
    PerFrameValue("redo_flow_factor", "redo_flow_factor_schedule", "0:(1)", "share of the optical-flow redo's flow applied",
                  short="redo_flow"),
    # Values the plan derives with rules of their own
    PerFrameValue("steps", "steps_schedule", None, "sampler steps (before img2img's denoise scaling)", "both",
                  "steps", low=0.0, high=1000.0, integer=True, evaluated=False, panel="cfg scale / steps"),
    PerFrameValue("seed", "seed_schedule", DEFAULT_SEED_SCHEDULE, "seed (seed_behavior decides)", "both", "seed",
                  integer=True, evaluated=False, form=True),
    PerFrameValue("noise_multiplier", "noise_multiplier_schedule", "0:(1.05)", "img2img starting-noise factor",
                  "both", low=0.0, high=10.0, evaluated=False, short="noise_mult"),
    PerFrameValue("image_prompt_scale", "image_prompt_influence", None, "IP-Adapter scale", "both", low=0.0,
                  high=1.0, evaluated=False, short="ip_scale"),
    PerFrameValue("blend_weight", "prompt_blend_frames", None, "share of the next prompt blended in", "both",
                  low=0.0, high=1.0, evaluated=False, short="blend"),
)
BY_NAME = {value.name: value for value in PER_FRAME_VALUES}
# Settings fields that hold a per-frame schedule (with their default text; None: derived when absent).
SCHEDULE_SETTINGS = {value.setting: value.default for value in PER_FRAME_VALUES
                     if value.default is not None or value.name == "steps"}
TEXT_VALUES = ("sampler", "prompt", "negative_prompt", "blend_prompt", "blend_negative_prompt")


def read_by(mode: str) -> tuple[PerFrameValue, ...]:
    """The values an animation mode reads (Deforum: 3D ignores the 2D zoom, angle and centre; 2D the 3D camera)."""
    return tuple(value for value in PER_FRAME_VALUES if value.mode in ("both", "3D" if mode == "3D" else "2D"))


def unread_by(mode: str) -> tuple[PerFrameValue, ...]:
    read = read_by(mode)
    return tuple(value for value in PER_FRAME_VALUES if value not in read)


def motion_values(mode: str) -> tuple[PerFrameValue, ...]:
    """The camera values of a mode, for the plan table and the summary (the flip aside)."""
    camera = [value for value in read_by(mode) if value.motion and not value.name.startswith("perspective_flip")]
    return tuple(camera + ([BY_NAME["fov"]] if mode == "3D" else []))
