"""Parseq manifests: load one, and turn its rendered frames into per-frame overrides the way Deforum does.

Parseq (a keyframe sequencer) exports a JSON manifest whose ``rendered_frames`` hold every frame's
value of each field it manages. Deforum reads it through its ``parseq_manifest`` setting:

- a field counts as managed only if frame 0 has it; everything else falls back to the settings;
- motion fields (zoom, angle, translation_x/y/z, rotation_3d_x/y/z, perspective-flip angles) take
  the ``<field>_delta`` values when ``parseq_use_deltas`` is on, because Deforum's motion is per frame
  while Parseq's values are absolute; the 3D camera's fov, near and far are absolute values;
- ``deforum_prompt`` is the prompt, with the negative part after ``--neg``;
- ``options.output_fps``, ``options.cadence`` and the number of rendered frames override fps,
  diffusion_cadence and max_frames (unless ``parseq_non_schedule_overrides`` is off);
- past Parseq's last frame, the last value repeats (``extend_to``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from deforum_engine.config.frame_values import PER_FRAME_VALUES
from deforum_engine.errors import SettingsError
from deforum_engine.limits import check_nesting
from deforum_engine.prompts.text import split_negative  # noqa: F401 - also part of this module's API

# Engine per-frame name -> Parseq field name.
PARSEQ_FIELDS = {value.name: value.parseq for value in PER_FRAME_VALUES if value.parseq}
# Fields that are per-frame motion in Deforum: Parseq's `_delta` values are used for them.
DELTA_FIELDS = frozenset(value.name for value in PER_FRAME_VALUES if value.motion)

_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)

T = TypeVar("T", np.ndarray, list)


@dataclass
class ParseqOverrides:
    """What a Parseq manifest overrides, frame by frame (only the fields it manages)."""

    frame_count: int                      # len(rendered_frames): overrides max_frames
    fps: float | None                     # options.output_fps
    cadence: int | None                   # options.cadence: overrides diffusion_cadence
    values: dict[str, np.ndarray] = field(default_factory=dict)   # engine per-frame name -> floats
    strings: dict[str, list[str]] = field(default_factory=dict)   # prompt, negative_prompt, sampler
    managed: list[str] = field(default_factory=list)              # keys of values and strings


def load_parseq_manifest(value: str | Path | dict, base_dir: Path | None = None) -> dict:
    """Load a manifest from a path (relative to base_dir), inline JSON text, or a dict; check its shape."""
    if isinstance(value, dict):
        return _checked(value, "Parseq manifest")
    if isinstance(value, Path):
        return _read_file(value, base_dir)
    if not isinstance(value, str):
        raise SettingsError(
            f"parseq_manifest: expected a path to a Parseq manifest, its JSON text or a dict, "
            f"got {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        raise SettingsError("parseq_manifest is empty: give the path of a Parseq manifest (.json) or its JSON text")
    if is_url(text):
        raise SettingsError(
            f"Parseq manifest {text}: URLs are not fetched (renders run without network); "
            f"download the manifest and set parseq_manifest to the path of the saved .json file"
        )
    if text.startswith(("{", "[")):
        label = "Parseq manifest (inline JSON in parseq_manifest)"
        return _checked(_parse_json(text, label), label)
    return _read_file(Path(text), base_dir)


def parseq_overrides(
    manifest: dict, use_deltas: bool = True, *, source: str = "Parseq manifest"
) -> ParseqOverrides:
    """Per-frame overrides from a loaded manifest, following Deforum's rules (see the module docstring).

    Seeds: Parseq writes fractional seeds for seed travel (Deforum blends ceil(seed) in as a subseed
    with strength seed % 1). The engine has no subseeds, so the seed is floor(seed): the seed Deforum
    itself renders with (it takes int(seed)); the fractional blend is dropped.
    """
    frames = _checked(manifest, source)["rendered_frames"]
    first = frames[0]
    options = manifest.get("options") or {}
    out = ParseqOverrides(
        frame_count=len(frames),
        fps=_option(options, "output_fps", source, whole=False),
        cadence=_option(options, "cadence", source, whole=True),
    )
    for name, parseq_name in PARSEQ_FIELDS.items():
        if parseq_name not in first:
            continue
        column = f"{parseq_name}_delta" if use_deltas and name in DELTA_FIELDS else parseq_name
        out.values[name] = _numbers(frames, column, source)
    if "seed" in out.values:
        out.values["seed"] = np.floor(out.values["seed"])
    if "deforum_prompt" in first:
        pairs = [split_negative(text) for text in _texts(frames, "deforum_prompt", source)]
        out.strings["prompt"] = [positive for positive, _ in pairs]
        out.strings["negative_prompt"] = [negative for _, negative in pairs]
    if "sampler" in first:
        out.strings["sampler"] = _texts(frames, "sampler", source)
    out.managed = [*out.values, *out.strings]
    return out


def is_url(text: str) -> bool:
    """True for "scheme://..." text (http, https, ...), which is never fetched."""
    return bool(_URL.match(text.strip()))


def extend_to(values: T, n: int) -> T:
    """Fit per-frame values to n frames: cut, or repeat the last value (Deforum's rule past Parseq's end)."""
    if n <= len(values):
        return values[:n]
    if len(values) == 0:
        raise ValueError("extend_to: cannot extend an empty sequence")
    if isinstance(values, np.ndarray):
        return np.concatenate([values, np.repeat(values[-1:], n - len(values), axis=0)])
    return list(values) + [values[-1]] * (n - len(values))


def _read_file(path: Path, base_dir: Path | None) -> dict:
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    label = f"Parseq manifest {path}"
    if not path.is_file():
        raise SettingsError(f"{label}: file not found; check parseq_manifest "
                            f"(a relative path starts at the settings file's folder)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"{label}: cannot be read ({err}); save it again from Parseq as UTF-8 JSON") from err
    return _checked(_parse_json(text, label), label)


def _parse_json(text: str, label: str) -> Any:
    check_nesting(text, label, toml=False)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SettingsError(
            f"{label}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            f"copy the whole manifest from Parseq again"
        ) from err


def _checked(manifest: Any, label: str) -> dict:
    """The manifest itself, once it is a dict whose rendered_frames is a non-empty list of frames 0, 1, 2..."""
    if not isinstance(manifest, dict):
        raise SettingsError(f"{label}: expected a JSON object (a Parseq manifest), got {type(manifest).__name__}")
    frames = manifest.get("rendered_frames")
    if not isinstance(frames, list) or not frames:
        raise SettingsError(
            f"{label}: no rendered_frames; this is not a rendered Parseq manifest. "
            f"Export the manifest from Parseq after it has rendered the frames"
        )
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise SettingsError(f"{label}: rendered_frames[{i}] is not an object; re-export the manifest from Parseq")
        if frame.get("frame", i) != i:
            raise SettingsError(
                f"{label}: rendered_frames[{i}] is frame {frame.get('frame')!r}; "
                f"rendered frames must be frames 0, 1, 2... in order, as Parseq exports them"
            )
    return manifest


def _option(options: dict, key: str, label: str, whole: bool) -> float | int | None:
    value = options.get(key)
    if value is None:
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not np.isfinite(number) or number <= 0 or (whole and number != int(number)):
        kind = "a whole number of frames" if whole else "a positive number"
        raise SettingsError(f"{label}: options.{key} is {value!r}; expected {kind}")
    return int(number) if whole else number


def _numbers(frames: list[dict], column: str, label: str) -> np.ndarray:
    raw = [frame.get(column) for frame in frames]
    try:
        values = np.array(raw, dtype=float)
    except (TypeError, ValueError):
        values = np.array([v if isinstance(v, (int, float)) else np.nan for v in raw], dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        hint = "re-export the manifest from Parseq"
        if column.endswith("_delta"):
            hint += ", or set parseq_use_deltas to false"
        raise SettingsError(f"{label}: rendered_frames[{i}].{column} is {raw[i]!r}; expected a finite number; {hint}")
    return values


def _texts(frames: list[dict], column: str, label: str) -> list[str]:
    texts = [frame.get(column) for frame in frames]
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise SettingsError(f"{label}: rendered_frames[{i}].{column} is {text!r}; expected text")
    return texts
