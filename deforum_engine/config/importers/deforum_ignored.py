"""What a Deforum file asks for that the engine does not do: the notes for switched-on features it
lacks, and the one-line summary of the keys it ignored, grouped by feature.
"""
from __future__ import annotations

from typing import Any

from deforum_engine.config.importers.deforum_values import Reader

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


def feature_notes(reader: Reader, settings: dict[str, Any]) -> list[str]:
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
