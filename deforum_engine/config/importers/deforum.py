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

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deforum_engine.config import choices
from deforum_engine.config.frame_values import PER_FRAME_VALUES
from deforum_engine.config.importers.deforum_features import (
    controlnet_units,
    hybrid_aliases,
    masks,
    post_processing,
    soundtrack_from_clip,
    video_input,
)
from deforum_engine.config.importers.deforum_ignored import feature_notes
from deforum_engine.config.importers.deforum_values import (
    Reader,
    Unusable,
    read_choice,
    read_depth_algorithm,
    read_flag,
    read_local_path,
    read_named,
    read_number,
    read_schedule,
    read_text,
    read_whole,
)
from deforum_engine.config.importers.parseq import load_parseq_manifest
from deforum_engine.config.settings import SCHEDULE_FIELDS, SETTING_NAMES
from deforum_engine.config.srt_labels import SRT_ONLY_SCHEDULES
from deforum_engine.errors import SettingsError
from deforum_engine.limits import check_nesting
from deforum_engine.prompts.samplers import SAMPLER_NAMES
from deforum_engine.schedules import read_deforum_schedule


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


# Deforum key -> (engine key, converter). Current names come before the deprecated ones they replace:
# when a file has both, the current name wins.
_DIRECT: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("W", "W", read_whole),
    ("H", "H", read_whole),
    ("max_frames", "max_frames", read_whole),
    ("fps", "fps", read_number),
    ("seed", "seed", read_whole),
    ("seed_behavior", "seed_behavior", read_choice(*choices.SEED_BEHAVIORS)),
    ("seed_iter_N", "seed_iter_N", read_whole),
    ("seed_schedule", "seed_schedule", read_schedule),
    # The per-frame schedules the plan evaluates as they are (config/frame_values.py): same name in Deforum
    *[(value.setting, value.setting, read_schedule) for value in PER_FRAME_VALUES if value.evaluated],
    ("enable_perspective_flip", "enable_perspective_flip", read_flag),
    ("enable_noise_multiplier_scheduling", "enable_noise_multiplier_scheduling", read_flag),
    ("noise_multiplier_schedule", "noise_multiplier_schedule", read_schedule),
    ("border", "border", read_choice(*choices.BORDERS)),
    ("diffusion_cadence", "diffusion_cadence", read_whole),
    ("noise_type", "noise_type", read_choice(*choices.NOISE_TYPES)),
    ("perlin_octaves", "perlin_octaves", read_whole),
    ("perlin_persistence", "perlin_persistence", read_number),
    ("strength", "strength", read_number),
    # The 3D camera (animation_mode 3D)
    ("aspect_ratio_use_old_formula", "aspect_ratio_use_old_formula", read_flag),
    ("use_depth_warping", "use_depth_warping", read_flag),
    ("depth_algorithm", "depth_algorithm", read_depth_algorithm),
    ("midas_weight", "midas_weight", read_number),
    ("padding_mode", "padding_mode", read_choice(*choices.PADDING_MODES)),
    ("sampling_mode", "sampling_mode", read_choice(*choices.SAMPLING_MODES)),
    ("save_depth_maps", "save_depth_maps", read_flag),
    # Video in: Video Input mode, hybrid video, optical flow (video_init_path: video_input; the per-frame
    # schedules are rows of config/frame_values.py, above)
    *[(key, key, read_whole) for key in ("extract_nth_frame", "extract_from_frame", "extract_to_frame",
                                     "color_coherence_video_every_N_frames", "hybrid_consistency_blur",
                                     "diffusion_redo")],
    *[(key, key, read_flag) for key in ("hybrid_motion_use_prev_img", "hybrid_flow_consistency",
                                    "hybrid_use_first_frame_as_init_image", "hybrid_use_init_image",
                                    "hybrid_comp_mask_inverse", "hybrid_comp_mask_auto_contrast",
                                    "hybrid_comp_save_extra_frames")],
    ("hybrid_comp_mask_type", "hybrid_comp_mask_type",
     read_named(*choices.HYBRID_MASK_TYPES)),
    ("hybrid_comp_mask_equalize", "hybrid_comp_mask_equalize", read_named(*choices.HYBRID_MASK_EQUALIZE)),
    ("parseq_use_deltas", "parseq_use_deltas", read_flag),
    ("parseq_non_schedule_overrides", "parseq_non_schedule_overrides", read_flag),
    ("bpm", "bpm", read_number),
    # Deprecated names (the notebook and old extension versions).
    ("flip_2d_perspective", "enable_perspective_flip", read_flag),
    ("scale", "cfg_scale_schedule", read_schedule),
    ("ffmpeg_crf", "crf", read_whole),
    ("ffmpeg_preset", "video_preset", read_text),
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


def import_deforum(raw: dict, source: str) -> DeforumImport:
    """Map a Deforum settings file (already parsed from JSON) to engine settings."""
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: a Deforum settings file is a JSON object; "
                            f"this one is a {type(raw).__name__}")
    aliases = hybrid_aliases(raw)
    reader = Reader({**raw, **{new: raw[old] for old, new in aliases.items()}}, source)
    settings: dict[str, Any] = {}
    notes: list[str] = []
    for deforum_key, engine_key, convert in _DIRECT:
        if reader.has(deforum_key):
            settings.setdefault(engine_key, reader.take(deforum_key, convert))
    settings.update(_animation_mode(reader, notes))
    settings.update(video_input(reader, settings, notes))
    settings.update(_size(reader, notes))
    settings.update(_steps_and_sampler(reader))
    settings.update(_sampler(reader, notes))
    settings.update(_color_coherence(reader, notes))
    settings.update(_init_image(reader))
    settings.update(_soundtrack(reader, notes))
    settings.update(post_processing(reader, notes))
    settings.update(soundtrack_from_clip(reader, settings, notes))
    settings.update(_prompts(reader, notes))
    settings.update(_render_name(reader, settings, notes))
    settings.update(_parseq_manifest(reader, notes))
    settings.update(controlnet_units(reader, notes))
    settings.update(masks(reader, notes))
    settings.update({key: reader.take(key) for key in _ENGINE_ONLY_KEYS if reader.has(key)})
    settings.update({key: value for key, value in _DEFORUM_DEFAULTS.items() if key not in settings})
    notes += _read_schedules(settings)
    notes += feature_notes(reader, settings)
    ignored = [key for key in raw if key not in reader.used and aliases.get(key) not in reader.used]
    settings.setdefault("srt_schedules", _srt_schedules(raw))
    return DeforumImport(settings=settings, ignored=ignored, notes=notes)


def _steps_and_sampler(reader: Reader) -> dict[str, Any]:
    """steps / sampler, and their schedules only where the file's enable_*_scheduling switch is on."""
    out: dict[str, Any] = {}
    if reader.has("steps"):
        out["steps"] = reader.take("steps", read_whole)
    for name in ("steps", "sampler"):
        switch, schedule = f"enable_{name}_scheduling", f"{name}_schedule"
        if not (reader.has(switch) or reader.has(schedule)):
            continue
        enabled = reader.take(switch, read_flag, default=False)
        if enabled and not reader.has(schedule):
            raise reader.error(switch, f"true, but the file has no {schedule}; "
                                       f"add {schedule} or set {switch} to false")
        if enabled:
            out[schedule] = reader.take(schedule, read_schedule if name == "steps" else read_text)
        else:
            reader.first(schedule)  # read, but off: Deforum uses the plain value
            out[schedule] = None
    return out


def _animation_mode(reader: Reader, notes: list[str]) -> dict[str, Any]:
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


def _size(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """Deforum Studio's width / height; they win over W / H, which Studio ignores (the extension never writes them)."""
    out = {}
    for studio_key, key in (("width", "W"), ("height", "H")):
        if not reader.has(studio_key):
            continue
        out[key] = reader.take(studio_key, read_whole)
        if reader.has(key) and reader.take(key, read_whole) != out[key]:
            notes.append(f"{studio_key} {out[key]} and {key} {reader.raw[key]} disagree: using {studio_key} "
                         f"(Deforum Studio renders with width / height and ignores W / H)")
    return out


def _sampler(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """sampler (Deforum's name) wins; Deforum Studio's sampler_name / scheduler (ComfyUI's names) map when alone."""
    studio = _studio_sampler(reader, notes) if reader.first("sampler_name", "scheduler") else None
    if not reader.has("sampler"):
        return {} if studio is None else {"sampler": studio}
    name = reader.take("sampler", read_text)
    name = _NOTEBOOK_SAMPLERS.get(name, name)
    if studio is not None and studio.lower() != name.strip().lower():
        notes.append(f"sampler {name!r} and sampler_name / scheduler ({reader.raw.get('sampler_name')!r}, "
                     f"{reader.raw.get('scheduler')!r}, i.e. {studio!r}) disagree: using sampler")
    return {"sampler": name}


def _studio_sampler(reader: Reader, notes: list[str]) -> str | None:
    """The engine's name for a ComfyUI sampler_name + scheduler pair (or an extension name in sampler_name)."""
    comfy = reader.take("sampler_name", lambda v: read_text(v).strip())
    scheduler = reader.take("scheduler", lambda v: read_text(v).strip().lower(), default="normal")
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
        raise Unusable("expected one of None, RGB, HSV, LAB, Image (or the old 'Match Frame 0 LAB' style)")
    return _COHERENCE[key]


def _color_coherence(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """color_coherence, with the old "Match Frame 0 ..." values and the Image mode's reference file."""
    reader.first("color_coherence_image_path")
    if not reader.has("color_coherence"):
        return {}
    mode = reader.take("color_coherence", _coherence_mode)
    out = {"color_coherence": mode}
    if mode == "Image":
        out["color_coherence_image"] = read_local_path(reader, "color_coherence_image_path",
                                                   "the reference image for Image colour coherence")
    return out


def _init_image(reader: Reader) -> dict[str, Any]:
    """init_image only when use_init is on (Deforum ignores init_image otherwise)."""
    if not (reader.has("use_init") or reader.has("init_image")):
        return {}
    use_init = reader.take("use_init", read_flag, default=False)
    reader.first("init_image")
    return {"init_image": read_local_path(reader, "init_image", "the init image") if use_init else None}


def _soundtrack(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """add_soundtrack "None" / "File" / "Init Video" (or an old true/false) -> add_soundtrack + soundtrack_path."""
    if not reader.has("add_soundtrack"):
        reader.first("soundtrack_path")
        return {}
    choice = reader.take("add_soundtrack", _soundtrack_choice)
    reader.first("soundtrack_path")
    if choice == "file":
        return {"add_soundtrack": True, "soundtrack_path": read_local_path(reader, "soundtrack_path", "the soundtrack")}
    if choice == "init video":
        return {"add_soundtrack": "Init Video"}  # the clip's audio (settings: video_init_path)
    return {"add_soundtrack": False, "soundtrack_path": None}


def _soundtrack_choice(value: Any) -> str:
    if isinstance(value, bool):  # very old files: a plain switch for a soundtrack file
        return "file" if value else "none"
    return read_choice(*(choice.lower() for choice in choices.SOUNDTRACK_CHOICES))(value)


def _prompts(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """prompts (frame -> text) and the positive / negative parts Deforum adds to every prompt."""
    out: dict[str, Any] = {}
    for engine_key, keys in (("positive_prompts", ("animation_prompts_positive", "positive_prompts")),
                             ("negative_prompts", ("animation_prompts_negative", "negative_prompts"))):
        key = reader.first(*keys)
        if key is not None:
            out[engine_key] = reader.take(key, lambda v: "" if v is None else read_text(v))
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
            raise Unusable(str(error).removeprefix("prompts: ")) from None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise Unusable(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                            f'write the prompts as {{"0": "a prompt", "30": "another"}}') from None
    if not isinstance(value, dict):
        raise Unusable('expected frame -> prompt pairs such as {"0": "a prompt", "30": "another"}')
    bad = next((frame for frame, text in value.items() if not isinstance(text, str)), None)
    if bad is not None:
        raise Unusable(f"the prompt for frame {bad!r} is {value[bad]!r}; expected text")
    return {str(frame).strip(): text for frame, text in value.items()}


def _merge_negatives(prompts: dict[str, str], negatives: dict[str, str], reader: Reader) -> dict[str, str]:
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


def _render_name(reader: Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """batch_name -> name: {w}, {h} and a fixed {seed} filled in; {timestring}, {prompts} and others dropped."""
    if not reader.has("batch_name"):
        return {}
    batch_name = reader.take("batch_name", read_text)
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


def _parseq_manifest(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """parseq_manifest: None when empty; inline JSON is checked now so a broken one names this file."""
    if not reader.has("parseq_manifest"):
        return {}
    value = reader.take("parseq_manifest", lambda v: "" if v is None else read_text(v)).strip()
    if not value:
        return {"parseq_manifest": None}
    try:
        load_parseq_manifest(value, base_dir=Path(reader.source).parent)
    except SettingsError as err:
        raise SettingsError(f"{reader.source}: parseq_manifest: {err}") from None
    return {"parseq_manifest": value}


