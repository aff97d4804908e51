"""ControlNet units cn_1 .. cn_5: Deforum's flat `cn_N_<key>` settings read into typed unit specs.

One list of the vocabulary (keys, defaults, modules, modes) lives here, in config: the settings model
builds its fields from `UNIT_DEFAULTS`, the plan (plan/control.py) evaluates the schedule keys,
control/preprocess.py and the backend read the rest. Light on purpose (no numpy, no torch):
settings validation imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from deforum_engine.errors import SettingsError

UNIT_COUNT = 5  # Deforum's five units (more only with the WebUI's control_net_unit_count option)
# Deforum's cn_N_<key> settings and their defaults (scripts/deforum_helpers/deforum_controlnet.py).
UNIT_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "model": "None",
    "module": "none",
    "weight": "0:(1)",
    "guidance_start": "0:(0.0)",
    "guidance_end": "0:(1.0)",
    "control_mode": "Balanced",
    "resize_mode": "Inner Fit (Scale to Fit)",
    "pixel_perfect": False,
    "processor_res": 64,
    "threshold_a": 64.0,
    "threshold_b": 64.0,
    "vid_path": "",
    "loopback_mode": False,
    "overwrite_frames": True,
    "low_vram": False,  # the WebUI's memory option; diffusers manages memory itself (accepted, no effect)
    "mask_vid_path": "",  # labelled "NOT WORKING" in Deforum's own UI; read and ignored with a warning
}
UNIT_SCHEDULES = ("weight", "guidance_start", "guidance_end")  # keyframe schedules, evaluated per frame
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = {  # Deforum's names, and the ControlNet extension's newer ones -> a fit mode (frame/images.py)
    "Inner Fit (Scale to Fit)": "crop", "Crop and Resize": "crop",
    "Outer Fit (Shrink to Fit)": "pad", "Resize and Fill": "pad",
    "Just Resize": "resize",
}
# Preprocessor names as the ControlNet extension spells them -> what this engine runs (control/preprocess.py).
# None of them downloads weights at run time; the depth modules use the engine's own depth model.
MODULES = {
    "none": "none",
    "canny": "canny",
    "depth": "depth", "depth_midas": "depth", "depth_zoe": "depth", "depth_leres": "depth",
    "depth_leres++": "depth", "depth_anything": "depth", "depth_anything_v2": "depth",
    "invert": "invert", "invert (from white bg & black line)": "invert",
    "tile": "tile", "tile_resample": "tile",
    "blur": "blur", "blur_gaussian": "blur",
}
_NO_MODEL = ("", "none")


def setting_name(number: int, key: str) -> str:
    """The flat setting name of a unit's key: cn_2_weight."""
    return f"cn_{number}_{key}"


def unit_setting_names(count: int = UNIT_COUNT) -> tuple[str, ...]:
    """Every cn_N_<key> setting name, unit by unit."""
    return tuple(setting_name(number, key) for number in range(1, count + 1) for key in UNIT_DEFAULTS)


@dataclass(frozen=True)
class ControlUnit:
    """One enabled unit, checked. Schedules stay keyframe text here; the plan evaluates them per frame."""

    number: int
    model: str
    module: str  # what runs: none | canny | depth | invert | tile | blur
    module_name: str  # as the settings spell it (depth_midas, tile_resample ...), for messages
    weight: str
    guidance_start: str
    guidance_end: str
    control_mode: str
    fit: str  # crop | pad | resize, from resize_mode
    pixel_perfect: bool
    processor_res: int
    threshold_a: float
    threshold_b: float
    vid_path: str
    loopback_mode: bool
    overwrite_frames: bool

    @property
    def name(self) -> str:
        return f"cn_{self.number}"

    def setting(self, key: str) -> str:
        return setting_name(self.number, key)


def read_units(values: Mapping[str, Any], count: int = UNIT_COUNT) -> tuple[ControlUnit, ...]:
    """The enabled units of a flat settings mapping (missing keys take Deforum's defaults), in unit order."""
    units = []
    for number in range(1, count + 1):
        raw = {key: values.get(setting_name(number, key), default) for key, default in UNIT_DEFAULTS.items()}
        if raw["enabled"]:
            units.append(_read_unit(number, raw))
    return tuple(units)


def _read_unit(number: int, raw: dict[str, Any]) -> ControlUnit:
    """Check one enabled unit's values; each problem is a SettingsError naming the unit's setting."""
    def name(key: str) -> str:
        return setting_name(number, key)

    model = str(raw["model"] or "").strip()
    if model.lower() in _NO_MODEL:
        raise SettingsError(f"{name('model')}: unit {number} is enabled but names no ControlNet model; give a "
                            f"hub id (lllyasviel/control_v11p_sd15_canny), a diffusers folder or a .safetensors file, "
                            f"or set {name('enabled')} to false")
    module_name = str(raw["module"] or "none").strip()
    module = MODULES.get(module_name.lower())
    if module is None:
        kinds = ", ".join(dict.fromkeys(MODULES.values()))
        raise SettingsError(f"{name('module')}: {module_name!r} is not available; choose one of {kinds} "
                            f"(also spelt {', '.join(k for k in MODULES if k not in MODULES.values())}); "
                            "preprocessors that download their own weights are not supported")
    control_mode = _choice(raw["control_mode"], CONTROL_MODES, name("control_mode"))
    fit = RESIZE_MODES[_choice(raw["resize_mode"], tuple(RESIZE_MODES), name("resize_mode"))]
    vid_path = str(raw["vid_path"] or "").strip()
    loopback = bool(raw["loopback_mode"])
    if not vid_path and not loopback and module != "depth":
        raise SettingsError(f"{name('vid_path')}: unit {number} has no control input; give an image or a video, "
                            f"or set {name('loopback_mode')} to true to use the previous frame")
    thresholds = _thresholds(module, float(raw["threshold_a"]), float(raw["threshold_b"]), name)
    processor_res = int(raw["processor_res"])
    if not 64 <= processor_res <= 4096:
        raise SettingsError(f"{name('processor_res')}: {processor_res} is out of range; use 64 .. 4096 pixels")
    return ControlUnit(
        number=number, model=model, module=module, module_name=module_name, weight=str(raw["weight"]),
        guidance_start=str(raw["guidance_start"]), guidance_end=str(raw["guidance_end"]),
        control_mode=control_mode, fit=fit, pixel_perfect=bool(raw["pixel_perfect"]), processor_res=processor_res,
        threshold_a=thresholds[0], threshold_b=thresholds[1], vid_path=vid_path, loopback_mode=loopback,
        overwrite_frames=bool(raw["overwrite_frames"]),
    )


def _choice(value: Any, choices: tuple[str, ...], setting: str) -> str:
    """`value` matched case-insensitively to one of `choices`, or a SettingsError listing them."""
    text = str(value).strip().lower()
    for choice in choices:
        if choice.lower() == text:
            return choice
    raise SettingsError(f"{setting}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")


def _thresholds(module: str, a: float, b: float, name) -> tuple[float, float]:
    """threshold_a / threshold_b as the module reads them: canny's low / high hysteresis thresholds
    (0 .. 255 and more), blur's sigma (threshold_a), tile's down-sampling rate (threshold_a, 1 .. 8)."""
    if module == "canny" and not (0 <= a <= 1024 and 0 <= b <= 1024):
        raise SettingsError(f"{name('threshold_a')} / {name('threshold_b')}: canny thresholds must be in 0 .. 1024, "
                            f"got {a:g} and {b:g}")
    if module == "blur" and not 0 < a <= 64:
        raise SettingsError(f"{name('threshold_a')}: the blur sigma must be in (0, 64], got {a:g}")
    if module == "tile" and not 1 <= a <= 8:
        raise SettingsError(f"{name('threshold_a')}: tile's down-sampling rate must be in 1 .. 8, got {a:g} "
                            "(the ControlNet extension's default is 1)")
    return a, b
