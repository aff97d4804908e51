"""Deforum settings files: the flat JSON that the AUTOMATIC1111 extension, the notebook and Deforum
Studio's preset library save as `.txt`.

`import_deforum` turns one into a plain dict of the engine's setting names (the settings model
validates it), lists the keys of features the engine does not have, and notes conversions worth
telling the user. Deprecated names and values are read too, and so are Studio's `width` / `height`
and ComfyUI sampler names; schedules are read as Studio reads stray text in them
(`schedules.read_deforum_schedule`), and NaN frames are filled as Deforum fills them
(`deforum_nan_fill`). A key we ignore never makes loading fail; a value we map that cannot be used
raises `SettingsError` naming the file and the key. Relative paths are kept as written (the caller
resolves them against the file's folder).
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deforum_engine.config.control_units import UNIT_COUNT, UNIT_DEFAULTS, UNIT_SCHEDULES, setting_name
from deforum_engine.config.frame_values import PER_FRAME_VALUES
from deforum_engine.config.importers.parseq import is_url, load_parseq_manifest
from deforum_engine.config.srt_labels import SRT_ONLY_SCHEDULES
from deforum_engine.errors import SettingsError
from deforum_engine.limits import check_nesting
from deforum_engine.prompts.samplers import SAMPLER_NAMES
from deforum_engine.schedules import read_deforum_schedule
from deforum_engine.config import choices
from deforum_engine.config.settings import SCHEDULE_FIELDS, SETTING_NAMES


@dataclass
class DeforumImport:
    """A Deforum file read into engine settings."""

    settings: dict[str, Any]                          # engine setting name -> value
    ignored: list[str] = field(default_factory=list)  # file keys the engine does not use, in file order
    notes: list[str] = field(default_factory=list)    # conversions worth telling the user


# Keys Deforum files have (the extension's, the notebook's, Deforum Studio's); those that are also engine
# settings (animation_mode, the 3D camera ...) are dropped below, so an engine file never looks like Deforum's.
_DEFORUM_KEYS = frozenset({
    "animation_mode", "use_init", "deforum_git_commit_id", "sd_model_name", "sd_model_hash",
    "animation_prompts", "animation_prompts_positive", "animation_prompts_negative", "batch_name",
    "strength_0_no_init", "flip_2d_perspective", "enable_steps_scheduling", "enable_sampler_scheduling",
    "use_depth_warping", "translation_z", "rotation_3d_x", "width", "height", "sampler_name", "scheduler",
    "hybrid_composite", "hybrid_motion", "diffusion_redo", "enable_noise_multiplier_scheduling",
})
_TELL_TALE_KEYS = _DEFORUM_KEYS - set(SETTING_NAMES)


def looks_like_deforum(raw: dict) -> bool:
    """True for a Deforum settings file (it has keys that only Deforum writes)."""
    return isinstance(raw, dict) and not _TELL_TALE_KEYS.isdisjoint(raw)


class _Unusable(ValueError):
    """A converter's complaint about a value: what is wrong and what to write instead."""


def _whole(value: Any) -> int:
    try:
        value = _number(value)
    except _Unusable:
        raise _Unusable("expected a whole number") from None
    if value != int(value):
        raise _Unusable("expected a whole number")
    return int(value)


def _number(value: Any) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise _Unusable("expected a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Unusable("expected a finite number")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if not isinstance(value, str) or value.strip().lower() not in words:
        raise _Unusable("expected true or false")
    return words[value.strip().lower()]


def _schedule(value: Any) -> str | int | float:
    """A keyframe schedule string, or a number (a constant schedule); numeric text becomes a number."""
    if isinstance(value, str) and value.strip():
        try:
            return _number(value)
        except _Unusable:
            return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    raise _Unusable('expected a schedule such as "0: (1.0), 30: (1.5)" or a number')


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unusable("expected text")
    return value


def _depth_algorithm(value: Any) -> str:
    spelled = choices.canonical(value, choices.DEPTH_ALGORITHMS, choices.DEPTH_ALGORITHM_ALIASES) \
        if isinstance(value, str) else None
    if spelled is None:
        raise _Unusable(f"expected one of {', '.join(choices.DEPTH_ALGORITHMS)}")
    return spelled


def _choice(*allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in allowed:
            raise _Unusable(f"expected one of {', '.join(allowed)}")
        return text
    return convert


def _named(*allowed: str) -> Callable[[Any], str]:
    """One of `allowed`, matched without regard to case, returned as spelt there."""
    by_key = {name.lower(): name for name in allowed}

    def convert(value: Any) -> str:
        key = "none" if value is None else value.strip().lower() if isinstance(value, str) else None
        if key not in by_key:
            raise _Unusable(f"expected one of {', '.join(allowed)}")
        return by_key[key]
    return convert


# Deforum key -> (engine key, converter). Current names come before the deprecated ones they replace:
# when a file has both, the current name wins.
_DIRECT: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("W", "W", _whole),
    ("H", "H", _whole),
    ("max_frames", "max_frames", _whole),
    ("fps", "fps", _number),
    ("seed", "seed", _whole),
    ("seed_behavior", "seed_behavior", _choice(*choices.SEED_BEHAVIORS)),
    ("seed_iter_N", "seed_iter_N", _whole),
    ("seed_schedule", "seed_schedule", _schedule),
    # The per-frame schedules the plan evaluates as they are (config/frame_values.py): same name in Deforum
    *[(value.setting, value.setting, _schedule) for value in PER_FRAME_VALUES if value.evaluated],
    ("enable_perspective_flip", "enable_perspective_flip", _flag),
    ("enable_noise_multiplier_scheduling", "enable_noise_multiplier_scheduling", _flag),
    ("noise_multiplier_schedule", "noise_multiplier_schedule", _schedule),
    ("border", "border", _choice(*choices.BORDERS)),
    ("diffusion_cadence", "diffusion_cadence", _whole),
    ("noise_type", "noise_type", _choice(*choices.NOISE_TYPES)),
    ("perlin_octaves", "perlin_octaves", _whole),
    ("perlin_persistence", "perlin_persistence", _number),
    ("strength", "strength", _number),
    # The 3D camera (animation_mode 3D)
    ("aspect_ratio_use_old_formula", "aspect_ratio_use_old_formula", _flag),
    ("use_depth_warping", "use_depth_warping", _flag),
    ("depth_algorithm", "depth_algorithm", _depth_algorithm),
    ("midas_weight", "midas_weight", _number),
    ("padding_mode", "padding_mode", _choice(*choices.PADDING_MODES)),
    ("sampling_mode", "sampling_mode", _choice(*choices.SAMPLING_MODES)),
    ("save_depth_maps", "save_depth_maps", _flag),
    # Video in: Video Input mode, hybrid video, optical flow (video_init_path: _video_input; the per-frame
    # schedules are rows of config/frame_values.py, above)
    *[(key, key, _whole) for key in ("extract_nth_frame", "extract_from_frame", "extract_to_frame",
                                     "color_coherence_video_every_N_frames", "hybrid_consistency_blur",
                                     "diffusion_redo")],
    *[(key, key, _flag) for key in ("hybrid_motion_use_prev_img", "hybrid_flow_consistency",
                                    "hybrid_use_first_frame_as_init_image", "hybrid_use_init_image",
                                    "hybrid_comp_mask_inverse", "hybrid_comp_mask_auto_contrast",
                                    "hybrid_comp_save_extra_frames")],
    ("hybrid_comp_mask_type", "hybrid_comp_mask_type",
     _named("None", "Depth", "Video Depth", "Blend", "Difference")),
    ("hybrid_comp_mask_equalize", "hybrid_comp_mask_equalize", _named("None", "Before", "After", "Both")),
    ("parseq_use_deltas", "parseq_use_deltas", _flag),
    ("parseq_non_schedule_overrides", "parseq_non_schedule_overrides", _flag),
    ("bpm", "bpm", _number),
    # Deprecated names (the notebook and old extension versions).
    ("flip_2d_perspective", "enable_perspective_flip", _flag),
    ("scale", "cfg_scale_schedule", _schedule),
    ("ffmpeg_crf", "crf", _whole),
    ("ffmpeg_preset", "video_preset", _text),
]

# Engine settings that Deforum files do not have: taken as written when a file carries them.
_ENGINE_ONLY_KEYS = (
    "color_coherence_image", "color_coherence_source", "init_fit", "init_denoise", "image_prompt",
    "image_prompt_influence", "image_prompt_mode", "image_prompt_max_mb", "prompt_style", "prompt_blend_frames",
    "lora_dirs", "model", "model_config_dir", "ip_adapter", "vae", "tiny_vae_model", "compile_unet", "device",
    "dtype", "depth_model", "adabins_model", "depth_normalization", "motion_preset", "name", "crf", "video_preset",
    "safety_checker", "deforum_nan_fill", "deforum_save_gen_info_as_srt", "deforum_save_gen_info_as_srt_params",
)
# What a Deforum file means where the engine's own default differs: Deforum stretches a mismatched init
# image, fills NaN schedule frames from the frames around them, matches colours to frame 0's output,
# normalises each depth map on its own and multiplies the img2img noise by 1.05. A file that sets these
# keeps its value.
_DEFORUM_DEFAULTS = {"init_fit": "resize", "deforum_nan_fill": True, "color_coherence_source": "first_frame",
                     "depth_normalization": "per_frame",
                     # the extension's own default (args.py), which files saved before it existed fall back to
                     "enable_noise_multiplier_scheduling": True, "noise_multiplier_schedule": "0: (1.05)"}

# ComfyUI's sampler names (Deforum Studio's sampler_name) -> the extension's names; "_gpu" only moves the
# noise generator. Names marked approximate have no engine twin: the nearest one is used, with a note.
_COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "lms": "LMS", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "ddim": "DDIM", "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC", "deis": "DEIS", "lcm": "LCM", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
}
_COMFY_APPROXIMATE = {"dpmpp_3m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_heun": "DPM++ 2M SDE", "heunpp2": "Heun",
                      "euler_cfg_pp": "Euler", "euler_ancestral_cfg_pp": "Euler a", "ddpm": "DDIM"}
_COMFY_PLAIN_SCHEDULERS = ("normal", "simple")

# The notebook's k-diffusion sampler names -> the extension's names (the engine uses the latter).
_NOTEBOOK_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "klms": "LMS", "heun": "Heun", "dpm2": "DPM2",
    "dpm2_ancestral": "DPM2 a", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_a": "DPM++ 2S a", "dpmpp_2m": "DPM++ 2M", "dpmpp_sde": "DPM++ SDE",
    "plms": "PLMS", "ddim": "DDIM",
}

_COHERENCE = {"none": "None", "rgb": "RGB", "hsv": "HSV", "lab": "LAB", "image": "Image",
              "video input": "Video Input",
              "match frame 0 rgb": "RGB", "match frame 0 hsv": "HSV", "match frame 0 lab": "LAB"}

_MODES = {"2d": "2D", "3d": "3D", "none": "None", "video input": "Video Input"}
_MODE_NOTES = {
    "interpolation": "animation_mode 'Interpolation': rendered as a 2D animation (prompts switch at their "
                     "keyframes instead of blending)",
    "none": "animation_mode 'None' (Deforum's still images): the engine has no still-image mode and renders "
            "an animation",
}

# Switches for features the engine does not have, and the values that mean "off".
_OFF = (None, False, "", "None", "none", "0", 0)
_FEATURE_SWITCHES = {
    "use_alpha_as_mask": "the init image's alpha as {video_mask} (use {init_mask} in mask_schedule)",
    "use_looper": "guided images",
    "enable_checkpoint_scheduling": "checkpoint scheduling",
    "enable_clipskip_scheduling": "clip-skip scheduling",
    "enable_subseed_scheduling": "subseed scheduling",
    "enable_ddim_eta_scheduling": "DDIM eta scheduling",
    "enable_ancestral_eta_scheduling": "ancestral eta scheduling",
    "color_force_grayscale": "grayscale output",
    "make_gif": "GIF output",
    "resume_from_timestring": "resume by timestring",
    "restore_faces": "face restoration",
    "tiling": "tiling",
}
# Deforum's mask settings, read as written where use_mask or use_noise_mask is on (mask_file: a local path).
_MASK_KEYS: list[tuple[str, Callable[[Any], Any]]] = [
    ("invert_mask", _flag), ("mask_contrast_adjust", _number), ("mask_brightness_adjust", _number),
    ("overlay_mask", _flag), ("mask_overlay_blur", _number), ("mask_schedule", _text), ("noise_mask_schedule", _text),
]
_A1111_CONTROLNET = re.compile(r"^(control_v11[a-z0-9]*_sd15_[a-z0-9_]+?)(\.pth|\.safetensors)?(\s*\[[0-9a-f]+\])?$")


class _Reader:
    """One Deforum file: hands out converted values and remembers which keys were read."""

    def __init__(self, raw: dict, source: str):
        self.raw, self.source, self.used = raw, source, set()

    def has(self, key: str) -> bool:
        return key in self.raw

    def take(self, key: str, convert: Callable[[Any], Any] = lambda v: v, default: Any = None) -> Any:
        """The converted value of key (default when absent); marks the key as read."""
        if key not in self.raw:
            return default
        self.used.add(key)
        try:
            return convert(self.raw[key])
        except _Unusable as problem:
            raise self.error(key, f"{self.raw[key]!r}: {problem}") from None

    def first(self, *keys: str) -> str | None:
        """The first of keys the file has (all of them count as read)."""
        present = [key for key in keys if key in self.raw]
        self.used.update(present)
        return present[0] if present else None

    def error(self, key: str, message: str) -> SettingsError:
        return SettingsError(f"{self.source}: {key} = {message}")


def import_deforum(raw: dict, source: str) -> DeforumImport:
    """Map a Deforum settings file (already parsed from JSON) to engine settings."""
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: a Deforum settings file is a JSON object; "
                            f"this one is a {type(raw).__name__}")
    aliases = _hybrid_aliases(raw)
    reader = _Reader({**raw, **{new: raw[old] for old, new in aliases.items()}}, source)
    settings: dict[str, Any] = {}
    notes: list[str] = []
    for deforum_key, engine_key, convert in _DIRECT:
        if reader.has(deforum_key):
            settings.setdefault(engine_key, reader.take(deforum_key, convert))
    settings.update(_animation_mode(reader, notes))
    settings.update(_video_input(reader, settings, notes))
    settings.update(_size(reader, notes))
    settings.update(_steps_and_sampler(reader))
    settings.update(_sampler(reader, notes))
    settings.update(_color_coherence(reader, notes))
    settings.update(_init_image(reader))
    settings.update(_soundtrack(reader, notes))
    settings.update(_post_processing(reader, notes))
    settings.update(_soundtrack_from_clip(reader, settings, notes))
    settings.update(_prompts(reader, notes))
    settings.update(_render_name(reader, settings, notes))
    settings.update(_parseq_manifest(reader, notes))
    settings.update(_controlnet_units(reader, notes))
    settings.update(_masks(reader, notes))
    settings.update({key: reader.take(key) for key in _ENGINE_ONLY_KEYS if reader.has(key)})
    settings.update({key: value for key, value in _DEFORUM_DEFAULTS.items() if key not in settings})
    notes += _read_schedules(settings)
    notes += _feature_notes(reader, settings)
    ignored = [key for key in raw if key not in reader.used and aliases.get(key) not in reader.used]
    settings.setdefault("srt_schedules", _srt_schedules(raw))
    return DeforumImport(settings=settings, ignored=ignored, notes=notes)


def _steps_and_sampler(reader: _Reader) -> dict[str, Any]:
    """steps / sampler, and their schedules only where the file's enable_*_scheduling switch is on."""
    out: dict[str, Any] = {}
    if reader.has("steps"):
        out["steps"] = reader.take("steps", _whole)
    for name in ("steps", "sampler"):
        switch, schedule = f"enable_{name}_scheduling", f"{name}_schedule"
        if not (reader.has(switch) or reader.has(schedule)):
            continue
        enabled = reader.take(switch, _flag, default=False)
        if enabled and not reader.has(schedule):
            raise reader.error(switch, f"true, but the file has no {schedule}; "
                                       f"add {schedule} or set {switch} to false")
        if enabled:
            out[schedule] = reader.take(schedule, _schedule if name == "steps" else _text)
        else:
            reader.first(schedule)  # read, but off: Deforum uses the plain value
            out[schedule] = None
    return out


def _animation_mode(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """2D, 3D, None and Video Input as they are; Interpolation renders as 2D (with a note)."""
    mode = reader.take("animation_mode", lambda v: str(v).strip())
    if mode is None:
        return {}
    key = mode.lower()
    if key in _MODE_NOTES:
        notes.append(_MODE_NOTES[key])
    elif key not in _MODES:
        notes.append(f"animation_mode {mode!r} is unknown: rendered as a 2D animation")
    return {"animation_mode": _MODES.get(key, "2D")}


def _size(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """Deforum Studio's width / height; they win over W / H, which Studio ignores (the extension never writes them)."""
    out = {}
    for studio_key, key in (("width", "W"), ("height", "H")):
        if not reader.has(studio_key):
            continue
        out[key] = reader.take(studio_key, _whole)
        if reader.has(key) and reader.take(key, _whole) != out[key]:
            notes.append(f"{studio_key} {out[key]} and {key} {reader.raw[key]} disagree: using {studio_key} "
                         f"(Deforum Studio renders with width / height and ignores W / H)")
    return out


def _sampler(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """sampler (Deforum's name) wins; Deforum Studio's sampler_name / scheduler (ComfyUI's names) map when alone."""
    studio = _studio_sampler(reader, notes) if reader.first("sampler_name", "scheduler") else None
    if not reader.has("sampler"):
        return {} if studio is None else {"sampler": studio}
    name = reader.take("sampler", _text)
    name = _NOTEBOOK_SAMPLERS.get(name, name)
    if studio is not None and studio.lower() != name.strip().lower():
        notes.append(f"sampler {name!r} and sampler_name / scheduler ({reader.raw.get('sampler_name')!r}, "
                     f"{reader.raw.get('scheduler')!r}, i.e. {studio!r}) disagree: using sampler")
    return {"sampler": name}


def _studio_sampler(reader: _Reader, notes: list[str]) -> str | None:
    """The engine's name for a ComfyUI sampler_name + scheduler pair (or an extension name in sampler_name)."""
    comfy = reader.take("sampler_name", lambda v: _text(v).strip())
    scheduler = reader.take("scheduler", lambda v: _text(v).strip().lower(), default="normal")
    if not comfy:
        return None
    canonical = {name.lower(): name for name in SAMPLER_NAMES}
    if comfy.lower() in canonical:  # Studio also accepts the extension's names here
        return canonical[comfy.lower()]
    key = comfy.lower().removesuffix("_gpu")
    base = _COMFY_SAMPLERS.get(key) or _COMFY_APPROXIMATE.get(key)
    if base is None:
        notes.append(f"sampler_name {comfy!r} has no equivalent in the engine: the default sampler is used; "
                     f"set sampler to one of {', '.join(SAMPLER_NAMES)}")
        return None
    if key in _COMFY_APPROXIMATE:
        notes.append(f"sampler_name {comfy!r} has no twin in the engine: using the nearest, {base!r}")
    if scheduler == "karras" and f"{base} Karras" in SAMPLER_NAMES:
        return f"{base} Karras"
    if scheduler not in _COMFY_PLAIN_SCHEDULERS:
        notes.append(f"scheduler {scheduler!r} is not available for {base!r}: using its default noise schedule")
    return base


def _srt_schedules(raw: dict) -> dict[str, str]:
    """The file's schedules that only its gen-info .srt reports (subseeds, masks, hybrid video, steps and
    sampler schedules that are switched off ...), kept as written; their features stay ignored."""
    kept = {}
    for key in SRT_ONLY_SCHEDULES:
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f"0: ({value})"
        if isinstance(value, str) and value.strip():
            kept[key] = value
    return kept


def _read_schedules(settings: dict[str, Any]) -> list[str]:
    """Every schedule read as Deforum Studio reads stray text in it (`0:0: (...)`, `(0).3`, no commas)."""
    notes = []
    for key in SCHEDULE_FIELDS:
        if isinstance(settings.get(key), str):
            settings[key], read_notes = read_deforum_schedule(settings[key], key)
            notes += read_notes
    return notes


def _coherence_mode(value: Any) -> str:
    key = "none" if value is None else value.strip().lower() if isinstance(value, str) else None
    if key not in _COHERENCE:
        raise _Unusable("expected one of None, RGB, HSV, LAB, Image (or the old 'Match Frame 0 LAB' style)")
    return _COHERENCE[key]


def _color_coherence(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """color_coherence, with the old "Match Frame 0 ..." values and the Image mode's reference file."""
    reader.first("color_coherence_image_path")
    if not reader.has("color_coherence"):
        return {}
    mode = reader.take("color_coherence", _coherence_mode)
    out = {"color_coherence": mode}
    if mode == "Image":
        out["color_coherence_image"] = _local_path(reader, "color_coherence_image_path",
                                                   "the reference image for Image colour coherence")
    return out


def _init_image(reader: _Reader) -> dict[str, Any]:
    """init_image only when use_init is on (Deforum ignores init_image otherwise)."""
    if not (reader.has("use_init") or reader.has("init_image")):
        return {}
    use_init = reader.take("use_init", _flag, default=False)
    reader.first("init_image")
    return {"init_image": _local_path(reader, "init_image", "the init image") if use_init else None}


_POST_KEYS = (("frame_interpolation_x_amount", _whole), ("frame_interpolation_slow_mo_enabled", _flag),
              ("frame_interpolation_slow_mo_amount", _whole), ("frame_interpolation_keep_imgs", _flag),
              ("frame_interpolation_use_upscaled", _flag), ("r_upscale_video", _flag),
              ("r_upscale_factor", _text), ("r_upscale_model", _text), ("r_upscale_keep_imgs", _flag))


def _post_processing(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """Interpolation and upscaling keep Deforum's names; any RIFE version is RIFE, and FILM becomes RIFE."""
    out = {key: reader.take(key, convert) for key, convert in _POST_KEYS if reader.has(key)}
    engine = reader.take("frame_interpolation_engine", lambda v: str(v).strip(), default="None")
    if engine.upper() == "FILM":
        notes.append("frame_interpolation_engine 'FILM': interpolated with RIFE (the engine has no FILM network); "
                     "the frame count is the same, (N-1)·X+1")
    out["frame_interpolation_engine"] = "RIFE" if engine.upper() == "FILM" or engine.upper().startswith("RIFE") \
        else engine
    return out


def _soundtrack(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """add_soundtrack "None" / "File" / "Init Video" (or an old true/false) -> add_soundtrack + soundtrack_path."""
    if not reader.has("add_soundtrack"):
        reader.first("soundtrack_path")
        return {}
    choice = reader.take("add_soundtrack", _soundtrack_choice)
    reader.first("soundtrack_path")
    if choice == "file":
        return {"add_soundtrack": True, "soundtrack_path": _local_path(reader, "soundtrack_path", "the soundtrack")}
    if choice == "init video":
        return {"add_soundtrack": "Init Video"}  # the clip's audio (settings: video_init_path)
    return {"add_soundtrack": False, "soundtrack_path": None}


def _soundtrack_choice(value: Any) -> str:
    if isinstance(value, bool):  # very old files: a plain switch for a soundtrack file
        return "file" if value else "none"
    return _choice(*(choice.lower() for choice in choices.SOUNDTRACK_CHOICES))(value)


def _local_path(reader: _Reader, key: str, what: str) -> str:
    """A non-empty, non-URL path from key, kept as written."""
    value = reader.raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise reader.error(key, f"{value!r}: {what} is switched on but has no path; give the file's path")
    if is_url(value):
        raise reader.error(key, f"{value!r}: URLs are not fetched (renders run without network); "
                                f"download the file and give its path")
    return value.strip()


def _prompts(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """prompts (frame -> text) and the positive / negative parts Deforum adds to every prompt."""
    out: dict[str, Any] = {}
    for engine_key, keys in (("positive_prompts", ("animation_prompts_positive", "positive_prompts")),
                             ("negative_prompts", ("animation_prompts_negative", "negative_prompts"))):
        key = reader.first(*keys)
        if key is not None:
            out[engine_key] = reader.take(key, lambda v: "" if v is None else _text(v))
    # The notebook also saves "prompts" as a list of still-image prompts: not animation prompts.
    key = next((k for k in ("animation_prompts", "prompts")
                if reader.has(k) and not isinstance(reader.raw[k], list)), None)
    if key is None:
        if reader.has("prompts"):
            notes.append("prompts is a list (the notebook's still-image prompts): no animation prompts imported")
        return out
    prompts = reader.take(key, _prompt_dict)
    if reader.has("neg_prompts"):
        prompts = _merge_negatives(prompts, reader.take("neg_prompts", _prompt_dict), reader)
    positive, negative = out.get("positive_prompts", ""), out.get("negative_prompts", "")
    originals = {frame: _unmerge(text, positive, negative) for frame, text in prompts.items()}
    if prompts and None not in originals.values() and originals != prompts:
        notes.append(f"{key}: the prompts already had positive_prompts / negative_prompts joined in "
                     f"(as Deforum saves them); separated again so they are not added twice")
        prompts = originals
    out["prompts"] = prompts
    return out


def _prompt_dict(value: Any) -> dict[str, str]:
    """A frame -> prompt dict, also from its JSON text (the extension's prompt box)."""
    if isinstance(value, str):
        try:
            check_nesting(value, "prompts", toml=False)
        except SettingsError as error:
            raise _Unusable(str(error).removeprefix("prompts: ")) from None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise _Unusable(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                            f'write the prompts as {{"0": "a prompt", "30": "another"}}') from None
    if not isinstance(value, dict):
        raise _Unusable('expected frame -> prompt pairs such as {"0": "a prompt", "30": "another"}')
    bad = next((frame for frame, text in value.items() if not isinstance(text, str)), None)
    if bad is not None:
        raise _Unusable(f"the prompt for frame {bad!r} is {value[bad]!r}; expected text")
    return {str(frame).strip(): text for frame, text in value.items()}


def _merge_negatives(prompts: dict[str, str], negatives: dict[str, str], reader: _Reader) -> dict[str, str]:
    """Fold the notebook's separate neg_prompts (frame -> text) into the prompts after `--neg`."""
    frames = {*prompts, *negatives}
    if not all(frame.isdigit() for frame in frames):
        raise reader.error("neg_prompts", "frames that are not plain numbers cannot be merged; "
                                          "move each negative prompt into prompts after --neg")

    def held(table: dict[str, str], frame: int) -> str:
        keys = sorted((int(k) for k in table), reverse=True)
        return table[str(next((k for k in keys if k <= frame), keys[-1]))] if keys else ""

    merged = {}
    for frame in sorted(frames, key=int):
        text, negative = held(prompts, int(frame)), held(negatives, int(frame))
        merged[frame] = f"{text} --neg {negative}" if negative and "--neg" not in text else text
    return merged


def _unmerge(text: str, positive: str, negative: str) -> str | None:
    """The prompt before Deforum joined "{positive} {prompt} --neg {negative}" into it, or None if it wasn't."""
    head, tail = f"{positive} ", f" {negative}"
    if not (text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail)):
        return None
    middle = text[len(head):len(text) - len(tail)]
    if middle.endswith(" --neg") and "--neg" not in middle[:-6]:
        return middle[:-6].strip()
    if middle.endswith(" ") and "--neg" in middle:
        return middle.strip()
    return None


def _render_name(reader: _Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """batch_name -> name: {w}, {h} and a fixed {seed} filled in; {timestring}, {prompts} and others dropped."""
    if not reader.has("batch_name"):
        return {}
    batch_name = reader.take("batch_name", _text)
    seed = settings.get("seed", -1)
    fill = {"w": settings.get("W"), "h": settings.get("H"), "seed": None if seed == -1 else seed}

    def placeholder(match: re.Match) -> str:
        value = fill.get(match.group(1).strip().lower())
        return "" if value is None else str(value)

    name = re.sub(r"\{([^{}]*)\}", placeholder, batch_name)
    name = re.sub(r"[^\w.\- ]+", "_", name)                    # nothing that could leave the renders folder
    name = re.sub(r"([_\- ])[_\- ]+", r"\1", name).strip("_-. ")
    if name != batch_name:
        notes.append(f"batch_name {batch_name!r} -> name {name or None!r} (Deforum's time stamp and other "
                     f"placeholders dropped: a render's folder is renders/<name>/)")
    return {"name": name or None}


def _parseq_manifest(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """parseq_manifest: None when empty; inline JSON is checked now so a broken one names this file."""
    if not reader.has("parseq_manifest"):
        return {}
    value = reader.take("parseq_manifest", lambda v: "" if v is None else _text(v)).strip()
    if not value:
        return {"parseq_manifest": None}
    try:
        load_parseq_manifest(value, base_dir=Path(reader.source).parent)
    except SettingsError as err:
        raise SettingsError(f"{reader.source}: parseq_manifest: {err}") from None
    return {"parseq_manifest": value}


def _controlnet_units(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """The enabled ControlNet units' cn_N_* keys (the keys of disabled units are read and dropped)."""
    out: dict[str, Any] = {}
    for number in range(1, UNIT_COUNT + 1):
        keys = [setting_name(number, key) for key in UNIT_DEFAULTS]
        if not reader.take(setting_name(number, "enabled"), _flag, default=False):
            reader.first(*keys)
            continue
        for key, default in UNIT_DEFAULTS.items():
            name = setting_name(number, key)
            if reader.has(name) and reader.raw[name] is not None:
                convert = _schedule if key in UNIT_SCHEDULES else _text if isinstance(default, str) else \
                    _flag if isinstance(default, bool) else _number
                out[name] = reader.take(name, convert)
            reader.first(name)
        out.update(_unit_model(reader, number, out.get(setting_name(number, "model")), notes))
        loopback = out.get(setting_name(number, "loopback_mode"))
        if out.get(setting_name(number, "vid_path")) and not loopback:
            out[setting_name(number, "vid_path")] = _local_path(reader, setting_name(number, "vid_path"),
                                                                f"ControlNet unit {number}'s input")
    return out


def _unit_model(reader: _Reader, number: int, model: Any, notes: list[str]) -> dict[str, Any]:
    """An A1111 ControlNet model name (control_v11p_sd15_canny [d14c016b]) -> its hub id, with a note."""
    match = _A1111_CONTROLNET.match(model.strip()) if isinstance(model, str) else None
    if match is None:
        return {}
    hub_id = f"lllyasviel/{match.group(1)}"
    notes.append(f"{setting_name(number, 'model')} {model!r}: the WebUI's model name, read as the hub id {hub_id}")
    return {setting_name(number, "model"): hub_id}


def _masks(reader: _Reader, notes: list[str]) -> dict[str, Any]:
    """use_mask / use_noise_mask and the mask settings; use_mask_video makes video_mask_path the mask_file."""
    use_mask = reader.take("use_mask", _flag, default=False)
    use_noise = reader.take("use_noise_mask", _flag, default=False)
    use_video = reader.take("use_mask_video", _flag, default=False)
    reader.first("mask_file", "video_mask_path", *(key for key, _ in _MASK_KEYS))
    if not (use_mask or use_noise or use_video):
        return {}
    out: dict[str, Any] = {"use_mask": use_mask or use_video, "use_noise_mask": use_noise}
    out.update({key: reader.take(key, convert) for key, convert in _MASK_KEYS if reader.has(key)})
    source = "video_mask_path" if use_video else "mask_file"
    if not (use_mask or use_video):  # a noise mask alone: mask_file only where it is a local path
        value = reader.raw.get("mask_file")
        return {**out, **({"mask_file": value.strip()} if isinstance(value, str) and value.strip()
                          and not is_url(value) else {})}
    switch = "use_mask_video" if use_video else "use_mask"
    try:
        out["mask_file"] = _local_path(reader, source, "the mask video" if use_video else "the mask")
    except SettingsError as error:  # say which switch wants the file
        raise SettingsError(str(error).replace(f"{reader.source}: ", f"{reader.source}: {switch} is on: ", 1)) from None
    if use_video:
        notes.append("use_mask_video: the mask video (video_mask_path) is the mask_file, frame i for frame i; "
                     "max_frames is kept")
    return out


def _feature_notes(reader: _Reader, settings: dict[str, Any]) -> list[str]:
    """Notes for the model the file was made with, and features it turns on."""
    notes = []
    model_name = reader.raw.get("sd_model_name")
    if isinstance(model_name, str) and model_name and "model" not in settings:
        notes.append(f"made with the checkpoint {model_name!r}; set model to the diffusers model to render with")
    active = [f"{label} ({key})" for key, label in _FEATURE_SWITCHES.items()
              if key in reader.raw and reader.raw[key] not in _OFF]
    if active:
        notes.append("switched on in the file, but the engine does not have them: " + ", ".join(active))
    return notes


# Which feature an ignored Deforum key belongs to, by its name (first match wins).
_FEATURES = (
    ("ControlNet", ("cn_", "controlnet")),
    ("hybrid video", ("hybrid_",)),
    ("video input", ("video_init", "video_mask", "extract_", "overwrite_extracted")),
    ("masks", ("mask",)),
    ("frame interpolation", ("frame_interpolation", "film", "rife")),
    ("upscaling", ("upscale",)),
    ("guided images (looper)", ("use_looper", "init_images", "image_strength", "blendfactor", "blendspeed",
                                "tweening_frames")),
    ("optical flow", ("optical_flow", "cadence_flow", "redo_flow")),
    ("face restoration", ("restore_faces",)),
    ("output and UI", ("outdir", "batch_name", "sd_model", "sd_vae", "skip_video", "store_frames", "mp4",
                       "ffmpeg", "make_gif", "delete", "save_", "show_", "frame_interp", "r_", "n_batch",
                       "filename_format", "seed_enable_extras", "subseed", "tiling")),
)


def ignored_by_feature(keys: list[str]) -> dict[str, list[str]]:
    """Ignored keys grouped by the Deforum feature they set ("other" for the rest), in file order."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        lowered = key.lower()
        feature = next((name for name, marks in _FEATURES if any(mark in lowered for mark in marks)), "other")
        groups.setdefault(feature, []).append(key)
    return groups


def ignored_summary(keys: list[str], shown: int = 2) -> str:
    """One short line: the ignored keys by the feature they set, the biggest group first, a few named per group."""
    groups = sorted(ignored_by_feature(keys).items(), key=lambda item: -len(item[1]))
    parts = [f"{feature} {len(group)} ({', '.join(str(key)[:60] for key in group[:shown])}"
             + (", ..." if len(group) > shown else "") + ")" for feature, group in groups]
    return f"{len(keys)} Deforum settings for features this engine does not have were ignored: " + "; ".join(parts)


_OLD_HYBRID = "hybrid_video_"  # the notebook and old extension versions: hybrid_video_motion ...


def _hybrid_aliases(raw: dict) -> dict[str, str]:
    """Old hybrid_video_* key -> today's hybrid_* name, for keys the file does not also have new."""
    renamed = {key: "hybrid_" + key.removeprefix(_OLD_HYBRID) for key in raw if key.startswith(_OLD_HYBRID)}
    return {old: new for old, new in renamed.items() if new not in raw}


def _video_input(reader: _Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Video Input mode, hybrid video and the optical-flow switches. video_init_path is read only where
    the file uses it (Deforum files carry a URL there by default)."""
    out: dict[str, Any] = {
        "hybrid_composite": reader.take("hybrid_composite", _legacy_switch("Normal", *choices.HYBRID_COMPOSITES), "None"),
        "hybrid_motion": reader.take("hybrid_motion", _named(*choices.HYBRID_MOTIONS), "None")}
    masks = reader.take("hybrid_generate_human_masks", str, "None")
    if masks not in ("None", "none", ""):
        notes.append(f"hybrid_generate_human_masks {masks!r}: human masks need a segmentation model download "
                     "and are not made (Deforum does not use them for compositing either)")
    # (the key is not passed on: the note is the warning)
    reader.first("hybrid_generate_inputframes", "overwrite_extracted_frames")  # frames are streamed, never extracted
    reader.first("video_init_path")
    video_mode = settings.get("animation_mode") == "Video Input"
    only_init_image = reader.raw.get("hybrid_use_init_image") is True and out["hybrid_motion"] == "None"
    if video_mode or out["hybrid_motion"] != "None" or (out["hybrid_composite"] != "None" and not only_init_image):
        if not video_mode and is_url(str(reader.raw.get("video_init_path", ""))):
            notes.append(f"video_init_path is a URL ({reader.raw['video_init_path']}), which is not fetched: "
                         "hybrid video is off; download the clip and give its path to use it")
            out = {"hybrid_composite": "None", "hybrid_motion": "None"}
        else:
            out["video_init_path"] = _local_path(reader, "video_init_path", "the input video")
    return {**out, **_flow_methods(reader, out["hybrid_motion"] == "Optical Flow", notes)}


def _flow_methods(reader: _Reader, hybrid_flow: bool, notes: list[str]) -> dict[str, str]:
    """The three flow-method settings. RAFT needs torchvision, which the engine does not install:
    without it, DIS Fine is used (with a note where the file uses the method)."""
    out = {}
    for key in ("hybrid_flow_method", "optical_flow_cadence", "optical_flow_redo_generation"):
        allowed = choices.FLOW_METHODS if key == "hybrid_flow_method" else ("None", *choices.FLOW_METHODS)
        method = reader.take(key, _legacy_switch("DIS Fine", *allowed), "RAFT" if key == "hybrid_flow_method" else None)
        if method == "RAFT" and importlib.util.find_spec("torchvision") is None:
            if key != "hybrid_flow_method" or hybrid_flow:
                notes.append(f"{key} 'RAFT' needs torchvision, which is not installed here: using 'DIS Fine'")
            method = "DIS Fine"
        if method is not None:
            out[key] = method
    return out


def _legacy_switch(on: str, *allowed: str) -> Callable[[Any], str]:
    """One of `allowed`; an old true / false means `on` / "None"."""
    named = _named(*allowed)
    return lambda value: ({True: on, False: "None"}[value] if isinstance(value, bool) else named(value))


def _soundtrack_from_clip(reader: _Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """add_soundtrack "Init Video": the clip's audio, from a local video_init_path (a URL is not fetched)."""
    if settings.get("add_soundtrack") != "Init Video" or "video_init_path" in settings:
        return {}
    if is_url(str(reader.raw.get("video_init_path", ""))):
        notes.append("add_soundtrack 'Init Video': video_init_path is a URL, which is not fetched, so no "
                     "soundtrack is added; give the clip's path (or soundtrack_path) to add one")
        return {"add_soundtrack": False, "soundtrack_path": None}
    return {"video_init_path": _local_path(reader, "video_init_path", "the clip whose audio is the soundtrack")}
