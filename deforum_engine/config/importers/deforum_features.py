"""The Deforum keys of the engine's feature floors: Video Input and hybrid video, ControlNet units,
masks, and interpolation / upscaling after the render. Each reader takes its keys from the file and
returns engine settings; a setting the engine cannot honour becomes a note for the user.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any

from deforum_engine.config import choices
from deforum_engine.config.control_units import UNIT_COUNT, UNIT_DEFAULTS, UNIT_SCHEDULES, setting_name
from deforum_engine.config.importers.deforum_values import (
    Reader,
    read_flag,
    read_legacy_switch,
    read_local_path,
    read_named,
    read_number,
    read_schedule,
    read_text,
    read_whole,
)
from deforum_engine.config.importers.parseq import is_url
from deforum_engine.errors import SettingsError

# Deforum's mask settings, read as written where use_mask or use_noise_mask is on (mask_file: a local path).
_MASK_KEYS: list[tuple[str, Callable[[Any], Any]]] = [
    ("invert_mask", read_flag), ("mask_contrast_adjust", read_number), ("mask_brightness_adjust", read_number),
    ("overlay_mask", read_flag), ("mask_overlay_blur", read_number), ("mask_schedule", read_text), ("noise_mask_schedule", read_text),
]


_A1111_CONTROLNET = re.compile(r"^(control_v11[a-z0-9]*_sd15_[a-z0-9_]+?)(\.pth|\.safetensors)?(\s*\[[0-9a-f]+\])?$")


_POST_KEYS = (("frame_interpolation_x_amount", read_whole), ("frame_interpolation_slow_mo_enabled", read_flag),
              ("frame_interpolation_slow_mo_amount", read_whole), ("frame_interpolation_keep_imgs", read_flag),
              ("frame_interpolation_use_upscaled", read_flag), ("r_upscale_video", read_flag),
              ("r_upscale_factor", read_text), ("r_upscale_model", read_text), ("r_upscale_keep_imgs", read_flag))


def post_processing(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """Interpolation and upscaling keep Deforum's names; any RIFE version is RIFE, and FILM becomes RIFE."""
    out = {key: reader.take(key, convert) for key, convert in _POST_KEYS if reader.has(key)}
    engine = reader.take("frame_interpolation_engine", lambda v: str(v).strip(), default="None")
    if engine.upper() == "FILM":
        notes.append("frame_interpolation_engine 'FILM': interpolated with RIFE (the engine has no FILM network); "
                     "the frame count is the same, (N-1)·X+1")
    out["frame_interpolation_engine"] = "RIFE" if engine.upper() == "FILM" or engine.upper().startswith("RIFE") \
        else engine
    return out


def controlnet_units(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """The enabled ControlNet units' cn_N_* keys (the keys of disabled units are read and dropped)."""
    out: dict[str, Any] = {}
    for number in range(1, UNIT_COUNT + 1):
        keys = [setting_name(number, key) for key in UNIT_DEFAULTS]
        if not reader.take(setting_name(number, "enabled"), read_flag, default=False):
            reader.first(*keys)
            continue
        for key, default in UNIT_DEFAULTS.items():
            name = setting_name(number, key)
            if reader.has(name) and reader.raw[name] is not None:
                convert = read_schedule if key in UNIT_SCHEDULES else read_text if isinstance(default, str) else \
                    read_flag if isinstance(default, bool) else read_number
                out[name] = reader.take(name, convert)
            reader.first(name)
        out.update(_unit_model(reader, number, out.get(setting_name(number, "model")), notes))
        loopback = out.get(setting_name(number, "loopback_mode"))
        if out.get(setting_name(number, "vid_path")) and not loopback:
            out[setting_name(number, "vid_path")] = read_local_path(reader, setting_name(number, "vid_path"),
                                                                f"ControlNet unit {number}'s input")
    return out


def _unit_model(reader: Reader, number: int, model: Any, notes: list[str]) -> dict[str, Any]:
    """An A1111 ControlNet model name (control_v11p_sd15_canny [d14c016b]) -> its hub id, with a note."""
    match = _A1111_CONTROLNET.match(model.strip()) if isinstance(model, str) else None
    if match is None:
        return {}
    hub_id = f"lllyasviel/{match.group(1)}"
    notes.append(f"{setting_name(number, 'model')} {model!r}: the WebUI's model name, read as the hub id {hub_id}")
    return {setting_name(number, "model"): hub_id}


def masks(reader: Reader, notes: list[str]) -> dict[str, Any]:
    """use_mask / use_noise_mask and the mask settings; use_mask_video makes video_mask_path the mask_file."""
    use_mask = reader.take("use_mask", read_flag, default=False)
    use_noise = reader.take("use_noise_mask", read_flag, default=False)
    use_video = reader.take("use_mask_video", read_flag, default=False)
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
        out["mask_file"] = read_local_path(reader, source, "the mask video" if use_video else "the mask")
    except SettingsError as error:  # say which switch wants the file
        raise SettingsError(str(error).replace(f"{reader.source}: ", f"{reader.source}: {switch} is on: ", 1)) from None
    if use_video:
        notes.append("use_mask_video: the mask video (video_mask_path) is the mask_file, frame i for frame i; "
                     "max_frames is kept")
    return out


_OLD_HYBRID = "hybrid_video_"  # the notebook and old extension versions: hybrid_video_motion ...


def hybrid_aliases(raw: dict) -> dict[str, str]:
    """Old hybrid_video_* key -> today's hybrid_* name, for keys the file does not also have new."""
    renamed = {key: "hybrid_" + key.removeprefix(_OLD_HYBRID) for key in raw if key.startswith(_OLD_HYBRID)}
    return {old: new for old, new in renamed.items() if new not in raw}


def video_input(reader: Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Video Input mode, hybrid video and the optical-flow switches. video_init_path is read only where
    the file uses it (Deforum files carry a URL there by default)."""
    out: dict[str, Any] = {
        "hybrid_composite": reader.take("hybrid_composite", read_legacy_switch("Normal", *choices.HYBRID_COMPOSITES), "None"),
        "hybrid_motion": reader.take("hybrid_motion", read_named(*choices.HYBRID_MOTIONS), "None")}
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
            out["video_init_path"] = read_local_path(reader, "video_init_path", "the input video")
    return {**out, **_flow_methods(reader, out["hybrid_motion"] == "Optical Flow", notes)}


def _flow_methods(reader: Reader, hybrid_flow: bool, notes: list[str]) -> dict[str, str]:
    """The three flow-method settings. RAFT needs torchvision, which the engine does not install:
    without it, DIS Fine is used (with a note where the file uses the method)."""
    out = {}
    for key in ("hybrid_flow_method", "optical_flow_cadence", "optical_flow_redo_generation"):
        allowed = choices.FLOW_METHODS if key == "hybrid_flow_method" else ("None", *choices.FLOW_METHODS)
        method = reader.take(key, read_legacy_switch("DIS Fine", *allowed), "RAFT" if key == "hybrid_flow_method" else None)
        if method == "RAFT" and importlib.util.find_spec("torchvision") is None:
            if key != "hybrid_flow_method" or hybrid_flow:
                notes.append(f"{key} 'RAFT' needs torchvision, which is not installed here: using 'DIS Fine'")
            method = "DIS Fine"
        if method is not None:
            out[key] = method
    return out


def soundtrack_from_clip(reader: Reader, settings: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """add_soundtrack "Init Video": the clip's audio, from a local video_init_path (a URL is not fetched)."""
    if settings.get("add_soundtrack") != "Init Video" or "video_init_path" in settings:
        return {}
    if is_url(str(reader.raw.get("video_init_path", ""))):
        notes.append("add_soundtrack 'Init Video': video_init_path is a URL, which is not fetched, so no "
                     "soundtrack is added; give the clip's path (or soundtrack_path) to add one")
        return {"add_soundtrack": False, "soundtrack_path": None}
    return {"video_init_path": read_local_path(reader, "video_init_path", "the clip whose audio is the soundtrack")}
