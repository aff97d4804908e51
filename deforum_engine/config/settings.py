"""The settings model: every knob of a render, validated once before any work starts.

Field names follow Deforum's, so settings pasted from a Deforum file keep their meaning.
`validate_settings` turns a dict of settings into one `Settings`, every problem a SettingsError
naming the setting; settings_files.load_settings reads the files.
"""
from __future__ import annotations

import difflib
import json
import re
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from deforum_engine.config import choices
from deforum_engine.config.control_units import UNIT_COUNT, UNIT_DEFAULTS, UNIT_SCHEDULES, setting_name
from deforum_engine.config.frame_values import SCHEDULE_SETTINGS
from deforum_engine.config.srt_labels import GEN_INFO_LABELS, SRT_ONLY_SCHEDULES
from deforum_engine.errors import SettingsError
from deforum_engine.limits import Limits, env_name

DEFAULT_PROMPTS = {"0": "a beautiful forest by Asher Brown Durand, trending on Artstation"}

# Image prompt influence levels -> IP-Adapter scale (documented in the README).
INFLUENCE_LEVELS = {"very_low": 0.2, "low": 0.4, "medium": 0.6, "high": 0.8, "very_high": 1.0}

Schedule = str  # keyframe text; numbers are turned into constant schedules on load
FlowMethod = Literal[choices.FLOW_METHODS]
OptionalFlow = Literal[("None", *choices.FLOW_METHODS)]


class IgnoredSettingsWarning(UserWarning):
    """Keys of an imported Deforum file that name features this engine does not have."""


_CONFIG = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
# The generated fields: the per-frame schedules, one field each, from the table of per-frame values, and the
# ControlNet units' cn_1_enabled .. cn_5_mask_vid_path, typed by their defaults (config/control_units.py).
# Deforum's names and defaults throughout.
_GeneratedSettings = create_model(
    "_GeneratedSettings", __config__=_CONFIG,
    **{setting: (Schedule if default is not None else Schedule | None, default)
       for setting, default in SCHEDULE_SETTINGS.items()},
    **{setting_name(number, key): (type(default), default)
       for number in range(1, UNIT_COUNT + 1) for key, default in UNIT_DEFAULTS.items()},
)


class Settings(_GeneratedSettings):
    """All settings of one render. Schedules are keyframe strings (see the README)."""

    model_config = _CONFIG

    # Animation mode: 2D warps (zoom, angle, translation in pixels), 3D camera moves through a depth map
    animation_mode: Literal[choices.ANIMATION_MODES] = "2D"
    # Canvas and timing
    W: int = 512
    H: int = 512
    max_frames: int | Literal["auto"] = 120
    fps: float = Field(15.0, gt=0, le=240)
    # Seeds
    seed: int = -1
    seed_behavior: Literal[choices.SEED_BEHAVIORS] = "iter"
    seed_iter_N: int = Field(1, ge=1)
    # 2D motion: enable_perspective_flip and border (the per-frame schedules: config/frame_values.py)
    enable_perspective_flip: bool = False
    border: Literal[choices.BORDERS] = "replicate"
    # 3D camera (used when animation_mode is 3D; its per-frame schedules: config/frame_values.py)
    aspect_ratio_use_old_formula: bool = False
    use_depth_warping: bool = True
    depth_algorithm: str = "Midas-3-Hybrid"
    depth_model: str | None = None  # hub id or folder of a transformers depth model, in place of depth_algorithm's
    adabins_model: str | None = None  # the "(old)" combos' AdaBins stand-in; default Intel/zoedepth-nyu
    depth_normalization: Literal[choices.DEPTH_NORMALIZATIONS] = "steady"  # per_frame: Deforum's, each map on its own
    midas_weight: float = Field(0.2, ge=0, le=1)
    padding_mode: Literal[choices.PADDING_MODES] = "border"
    sampling_mode: Literal[choices.SAMPLING_MODES] = "bicubic"
    save_depth_maps: bool = False
    # Coherence and diffusion
    steps: int = Field(25, ge=1, le=1000)
    enable_noise_multiplier_scheduling: bool = False  # Deforum's own default is on, at 1.05 (README)
    sampler: str = "Euler a"
    sampler_schedule: Schedule | None = None
    color_coherence: Literal[choices.COLOR_COHERENCES] = "LAB"
    color_coherence_image: Path | None = None
    # With an init image, whose colours the frames keep: the init image's (the engine's choice) or
    # frame 0's output (Deforum's; files imported from Deforum get this).
    color_coherence_source: Literal[choices.COLOR_COHERENCE_SOURCES] = "init_image"
    diffusion_cadence: int = Field(1, ge=1, le=50)
    noise_type: Literal[choices.NOISE_TYPES] = "perlin"
    perlin_octaves: int = Field(4, ge=1, le=8)
    perlin_persistence: float = Field(0.5, gt=0, le=1)
    # Prompts
    prompts: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    positive_prompts: str = ""
    negative_prompts: str = ""
    prompt_style: str = "none"
    prompt_blend_frames: int = Field(0, ge=0)
    lora_dirs: tuple[Path, ...] = ()  # folders holding the `name.safetensors` files that <lora:name:w> tags use
    # Init image and image prompt
    init_image: Path | None = None
    strength: float | None = Field(None, ge=0, le=1)  # Deforum's init strength: how much of the init survives
    init_denoise: float | None = Field(None, ge=0, le=1)  # the same knob as other tools name it: 1 - strength
    init_fit: Literal[choices.INIT_FITS] = "crop"
    image_prompt: Path | None = None
    image_prompt_influence: str | float = "medium"
    image_prompt_mode: Literal[choices.IMAGE_PROMPT_MODES] = "all"
    image_prompt_max_mb: float = Field(5.0, gt=0)
    # Model
    model: str | None = None
    model_config_dir: Path | None = None
    ip_adapter: str | None = None
    device: str | None = None
    dtype: Literal[choices.DTYPES] | None = None
    safety_checker: bool = True
    compile_unet: bool = False  # torch.compile the UNet: pays on GPUs over long renders; the first frame compiles
    vae: Literal[choices.VAES] = "full"  # tiny: TAESD, many times faster to decode, slightly lossy
    tiny_vae_model: str | None = None  # hub id or folder of an AutoencoderTiny; default per model family
    # Masks (Deforum's names and defaults; control/masks.py): white is repainted, black kept
    use_mask: bool = False
    mask_file: Path | None = None  # a picture or a video (frame i for output frame i); {video_mask}
    invert_mask: bool = False
    mask_contrast_adjust: float = Field(1.0, ge=0)
    mask_brightness_adjust: float = Field(1.0, ge=0)
    overlay_mask: bool = True  # paste the finished frame over the init image through the mask
    mask_overlay_blur: float = Field(4, ge=0, le=64)  # softens the mask's edge where frames are joined
    use_noise_mask: bool = False
    mask_schedule: Schedule = '0: ("{video_mask}")'  # composable mask expression per frame
    noise_mask_schedule: Schedule = '0: ("{video_mask}")'  # where the frame's noise goes, with use_noise_mask
    # Video in (Deforum's names and defaults): Video Input mode, hybrid video, optical flow (their per-frame
    # schedules: config/frame_values.py)
    video_init_path: Path | None = None
    extract_nth_frame: int = 1  # below 1 counts as 1, as in Deforum
    extract_from_frame: int = Field(0, ge=0)
    extract_to_frame: int = Field(-1, ge=-1)  # inclusive; -1: the clip's end
    color_coherence_video_every_N_frames: int = Field(1, ge=1)
    hybrid_composite: Literal[choices.HYBRID_COMPOSITES] = "None"
    hybrid_motion: Literal[choices.HYBRID_MOTIONS] = "None"
    hybrid_motion_use_prev_img: bool = False
    hybrid_flow_method: FlowMethod = "DIS Fine"  # Deforum's default is RAFT (needs torchvision: README)
    hybrid_flow_consistency: bool = False
    hybrid_consistency_blur: int = Field(2, ge=0, le=16)
    hybrid_use_first_frame_as_init_image: bool = True
    hybrid_use_init_image: bool = False
    hybrid_comp_mask_type: Literal[choices.HYBRID_MASK_TYPES] = "None"
    hybrid_comp_mask_inverse: bool = False
    hybrid_comp_mask_equalize: Literal[choices.HYBRID_MASK_EQUALIZE] = "None"
    hybrid_comp_mask_auto_contrast: bool = False
    hybrid_comp_save_extra_frames: bool = False
    hybrid_generate_human_masks: Literal[choices.HUMAN_MASKS] = "None"  # not made: a warning
    optical_flow_cadence: OptionalFlow = "None"
    optical_flow_redo_generation: OptionalFlow = "None"
    diffusion_redo: int = Field(0, ge=0, le=50)
    # Soundtrack
    soundtrack_path: Path | None = None
    add_soundtrack: bool = True  # Deforum's "File" / "None" / "Init Video" are read too (see _soundtrack_choice)
    bpm: float | None = Field(None, gt=0)
    # Presets and Parseq
    motion_preset: str | None = None
    parseq_manifest: str | None = None
    parseq_use_deltas: bool = True
    parseq_non_schedule_overrides: bool = True  # false: max_frames, fps and cadence stay the settings' own
    # Deforum compatibility: fill NaN schedule frames from the finite frames around them (on for Deforum files)
    deforum_nan_fill: bool = False
    # Deforum's gen-info subtitles: <folder>/<folder name>.srt, one block per frame (post/srt.py)
    deforum_save_gen_info_as_srt: bool = False
    deforum_save_gen_info_as_srt_params: tuple[str, ...] = ()  # Deforum's labels ("Angle", "Noise Sch", "Prompt"...)
    srt_schedules: dict[str, str] = Field(default_factory=dict)  # a Deforum file's schedules the engine does not use
    # Output
    name: str | None = None
    crf: int = Field(17, ge=0, le=51)
    video_preset: Literal[choices.X264_PRESETS] = "medium"
    # After the render (post/): upscaling, then RIFE interpolation; Deforum's names and defaults
    frame_interpolation_engine: Literal[choices.FRAME_INTERPOLATION_ENGINES] = "None"  # Deforum's "RIFE v4.6" etc. read as RIFE
    frame_interpolation_x_amount: int = Field(2, ge=2)
    frame_interpolation_slow_mo_enabled: bool = False
    frame_interpolation_slow_mo_amount: int = Field(2, ge=2)
    frame_interpolation_keep_imgs: bool = False
    frame_interpolation_use_upscaled: bool = False
    rife_model: str | None = None  # hub id, folder or file of Practical-RIFE 4.x weights; default AlexWortega/RIFE
    r_upscale_video: bool = False
    r_upscale_factor: Literal[choices.UPSCALE_FACTORS] = "x2"
    r_upscale_model: str = "realesr-animevideov3"  # Deforum's names, a .pth / .safetensors, or owner/repo/file.pth
    r_upscale_keep_imgs: bool = True
    seamless_loop: bool = False  # the last frames dissolve back to frame 0 (README: Seamless loops)
    seamless_loop_frames: int | None = Field(None, ge=1)  # None: the fewest that hide the seam

    @field_validator("frame_interpolation_engine", mode="before")
    @classmethod
    def _interpolation_engine(cls, value: Any) -> Any:
        """Deforum's "RIFE v4.6" (any RIFE version) is RIFE; FILM is not available."""
        text = str(value).strip()
        if text.upper().startswith("RIFE"):
            return "RIFE"
        if text.upper() == "FILM":
            raise ValueError("FILM is not available; use \"RIFE\" (Deforum files that ask for FILM are "
                             "imported with RIFE)")
        return value

    @field_validator("W", "H")
    @classmethod
    def _multiple_of_8(cls, value: int, info) -> int:
        if value < 64 or value > 8192:
            raise ValueError(f"must be between 64 and 8192 pixels, got {value}")
        if value % 8:
            low, high = value - value % 8, value - value % 8 + 8
            raise ValueError(
                f"must be a multiple of 8 (the model's latent grid and the H.264 encoder need it): "
                f"{value} is not; use {low} or {high}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _soundtrack_from_video(cls, values: Any) -> Any:
        """add_soundtrack "Init Video" (Deforum's choice): the clip's own audio is the soundtrack."""
        choice = values.get("add_soundtrack") if isinstance(values, dict) else None
        if not isinstance(choice, str) or choice.strip().lower() != "init video":
            return values
        if not values.get("video_init_path"):
            raise ValueError("add_soundtrack 'Init Video' takes the soundtrack from video_init_path: set it, "
                             "or use add_soundtrack \"File\" with soundtrack_path")
        return {**values, "add_soundtrack": True, "soundtrack_path": values["video_init_path"]}

    @field_validator("add_soundtrack", mode="before")
    @classmethod
    def _soundtrack_choice(cls, value: Any) -> Any:
        """Deforum's choices: "File" adds soundtrack_path; "None" adds nothing ("Init Video": above)."""
        if not isinstance(value, str) or value.strip().lower() not in ("file", "none"):
            return value
        return value.strip().lower() == "file"

    @field_validator("depth_algorithm")
    @classmethod
    def _depth_algorithm_name(cls, value: str) -> str:
        """Deforum's spelling of the name, checked here so a typo fails before any model loads."""
        spelled = choices.canonical(value, choices.DEPTH_ALGORITHMS, choices.DEPTH_ALGORITHM_ALIASES)
        if spelled is None:
            raise ValueError(f"must be one of {choices.allowed_text(choices.DEPTH_ALGORITHMS)} "
                             "(or set depth_model to a transformers depth-estimation model and keep the default)")
        return spelled

    @field_validator("hybrid_generate_human_masks")
    @classmethod
    def _human_masks(cls, value: str) -> str:
        if value != "None":
            warnings.warn(f"hybrid_generate_human_masks {value!r}: human masks need a segmentation model download "
                          "and are not made (Deforum does not use them for compositing either)",
                          IgnoredSettingsWarning, stacklevel=2)
        return value

    @field_validator("hybrid_composite", mode="before")
    @classmethod
    def _legacy_composite(cls, value: Any) -> Any:
        """Old Deforum files: True means "Normal", False "None"."""
        return {True: "Normal", False: "None"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("optical_flow_cadence", "optical_flow_redo_generation", mode="before")
    @classmethod
    def _legacy_flow(cls, value: Any) -> Any:
        """Old Deforum files: True means "DIS Fine", False "None"."""
        return {True: "DIS Fine", False: "None"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("lora_dirs", mode="before")
    @classmethod
    def _folder_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, Path)) else value

    @field_validator("deforum_save_gen_info_as_srt_params", mode="before")
    @classmethod
    def _srt_labels(cls, value: Any) -> Any:
        """Deforum's user labels for the .srt; its unset default (["Noise Schedule"]) matches none and prints none."""
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            return value
        unknown = [label for label in value if label not in GEN_INFO_LABELS and label != "Noise Schedule"]
        if unknown:
            raise ValueError(f"unknown label(s) {', '.join(map(repr, unknown))}; Deforum's labels are "
                             + ", ".join(GEN_INFO_LABELS))
        return tuple(label for label in value if label != "Noise Schedule")

    @field_validator("srt_schedules")
    @classmethod
    def _srt_schedule_names(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SRT_ONLY_SCHEDULES))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a Deforum schedule the engine lacks; "
                             f"expected some of {', '.join(SRT_ONLY_SCHEDULES)}")
        return value

    @field_validator("max_frames")
    @classmethod
    def _positive_frames(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("image_prompt_influence")
    @classmethod
    def _influence(cls, value: str | float) -> str | float:
        if isinstance(value, (int, float)):
            if not 0 <= value <= 1:
                raise ValueError(f"a number must be in [0, 1], got {value}")
            return float(value)
        if value.strip().lower().replace(" ", "_") in INFLUENCE_LEVELS:
            return value.strip().lower().replace(" ", "_")
        if ":" not in value:
            raise ValueError(
                f"{value!r} is not one of {', '.join(INFLUENCE_LEVELS)}, a number in [0, 1], "
                "or a schedule like '0:(0.2), 60:(0.8)'"
            )
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.strength is not None and self.init_denoise is not None:
            raise ValueError(
                "give either `strength` (Deforum: how much of the init image survives, 0.8 keeps most of it) "
                "or `init_denoise` (other tools: how much is repainted, = 1 - strength), not both"
            )
        if self.max_frames == "auto" and self.soundtrack_path is None:
            raise ValueError("max_frames = 'auto' covers a soundtrack: set soundtrack_path, or give a number")
        if self.use_mask and self.mask_file is None and "{video_mask}" in self.mask_schedule:
            raise ValueError("use_mask: the mask schedule uses {video_mask} but mask_file is not set; give a mask "
                             "picture or video")
        if (self.animation_mode == "Video Input" or self.hybrid_composite != "None" or self.hybrid_motion != "None") \
                and self.video_init_path is None and not self.hybrid_use_init_image:
            raise ValueError("animation_mode 'Video Input' and hybrid video need video_init_path (a video file)")
        if self.hybrid_use_init_image and self.hybrid_composite != "None" and self.init_image is None:
            raise ValueError("hybrid_use_init_image composites the init image into every frame: set init_image")
        if self.color_coherence == "Image" and self.color_coherence_image is None:
            raise ValueError("color_coherence 'Image' needs color_coherence_image (a picture to match colours to)")
        return self

    @property
    def init_strength(self) -> float:
        """How much of the init image survives (Deforum's `strength`; default 0.8)."""
        if self.strength is not None:
            return self.strength
        if self.init_denoise is not None:
            return 1.0 - self.init_denoise
        return 0.8

    def to_json_dict(self) -> dict[str, Any]:
        """Settings as plain JSON values, as saved beside a render."""
        return self.model_dump(mode="json")


SETTING_NAMES = tuple(Settings.model_fields)
SCHEDULE_FIELDS = tuple(SCHEDULE_SETTINGS)
UNIT_SCHEDULE_FIELDS = tuple(setting_name(n, key) for n in range(1, UNIT_COUNT + 1) for key in UNIT_SCHEDULES)
PATH_FIELDS = ("init_image", "image_prompt", "color_coherence_image", "soundtrack_path", "model_config_dir",
               "mask_file", "video_init_path", *(setting_name(n, "vid_path") for n in range(1, UNIT_COUNT + 1)))
PATH_LIST_FIELDS = ("lora_dirs",)


def suggest_name(key: str, names: tuple[str, ...]) -> str:
    """A 'did you mean' hint for a mistyped setting name."""
    candidates = set(names)
    stripped = key.removesuffix("_schedule")
    if stripped in candidates:
        return f"did you mean `{stripped}`?"
    if f"{key}_schedule" in candidates:
        return f"did you mean `{key}_schedule`?"
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else "see the settings reference in the README"


def validate_settings(values: dict[str, Any], source: str = "settings") -> Settings:
    """Validate a dict of settings; every problem becomes one SettingsError naming the setting."""
    unknown = [key for key in values if key not in SETTING_NAMES]
    if unknown:
        problems = [f"unknown setting `{str(key)[:60]}`: {suggest_name(str(key)[:60], SETTING_NAMES)}"
                    for key in unknown[:UNKNOWN_SHOWN]]
        more = len(unknown) - UNKNOWN_SHOWN
        tail = f"; and {more} more unknown settings ({len(unknown)} in all)" if more > 0 else ""
        raise SettingsError(f"{source}: " + "; ".join(problems) + tail)
    _check_bounds(values, source)
    values = {key: _literal_case(key, _schedule_text(key, value)) for key, value in values.items()}
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(f"{source}: " + "; ".join(_describe(e) for e in error.errors())) from None


UNKNOWN_SHOWN = 5  # unknown setting names listed in a message; the rest are counted
SEED_MAX = 2**62  # seeds step by frame (seed_behavior iter, ladder...): this leaves room within 64 bits
_KEYFRAME = re.compile(r":\s*\(")


def _check_bounds(values: dict[str, Any], source: str) -> None:
    """The limits (limits.py) on what a render may ask for, before anything is parsed or expanded."""
    limits = Limits.from_env()
    frames = values.get("max_frames")
    if isinstance(frames, int) and not isinstance(frames, bool) and frames > limits.max_frames:
        raise SettingsError(f"{source}: `max_frames`: {_short_int(frames)} frames is more than the limit of "
                            f"{limits.max_frames:,} frames for one render; render it in parts, or raise the limit "
                            f"with {env_name('max_frames')} (`serve --max-frames`)")
    seed = values.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not -1 <= seed <= SEED_MAX:
        raise SettingsError(f"{source}: `seed`: must be -1 (a random seed) or between 0 and 2**62, "
                            f"got {_short_int(seed)}")
    for key, value in values.items():
        count = len(value) if key == "prompts" and isinstance(value, dict) else (
            len(_KEYFRAME.findall(value)) if key in SCHEDULE_FIELDS and isinstance(value, str) else 0)
        if count > limits.max_keyframes:
            raise SettingsError(f"{source}: `{key}`: {count:,} keyframes is more than the limit of "
                                f"{limits.max_keyframes:,}; raise it with {env_name('max_keyframes')}")


def _short_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}...({len(text)} digits)"


def _schedule_text(key: str, value: Any) -> Any:
    """A bare number where a schedule is expected means a constant schedule."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and key in SCHEDULE_FIELDS + UNIT_SCHEDULE_FIELDS:
        return f"0:({value!r})"
    return value


def setting_choices(key: str) -> tuple[str, ...]:
    """The words a setting accepts, when it is one of a fixed set (animation_mode, border, ...)."""
    annotation = Settings.model_fields[key].annotation
    options = [annotation, *typing.get_args(annotation)]
    return tuple(a for option in options if typing.get_origin(option) is Literal
                 for a in typing.get_args(option) if isinstance(a, str))


def _literal_case(key: str, value: Any) -> Any:
    """A fixed-set word in any letter case: `"3d"` is animation_mode "3D", `"lab"` is "LAB"."""
    if not isinstance(value, str):
        return value
    matches = [choice for choice in setting_choices(key) if choice.lower() == value.strip().lower()]
    return matches[0] if len(matches) == 1 else value


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = message.replace("Input should be", "must be")
        close = difflib.get_close_matches(str(error["input"]), message.split("'")[1::2], n=1, cutoff=0.5)
        if close:
            message += f"; did you mean {close[0]!r}?"
    where = f"`{location}`: " if location else ""
    return f"{where}{message} (got {error['input']!r})" if location and "got" not in message else f"{where}{message}"


def save_settings(settings: Settings, path: Path) -> None:
    """Write resolved settings as JSON (seed included, so the render can be reproduced)."""
    path.write_text(json.dumps(settings.to_json_dict(), indent=2) + "\n", encoding="utf-8")
