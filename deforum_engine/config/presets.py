"""Motion presets: named, described sets of schedules kept as TOML files.

The shipped library is the top-level `motion_presets/` folder. Users add folders with the
`DEFORUM_ENGINE_PRESETS` environment variable (paths joined by the OS path separator) or the
`preset_dirs` argument; a user preset with a shipped preset's name replaces it.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deforum_engine.errors import SettingsError
from deforum_engine.limits import parse_toml, read_text_file

SHIPPED_PRESETS = Path(__file__).resolve().parents[2] / "motion_presets"


@dataclass(frozen=True)
class Preset:
    """One motion preset: its settings override the defaults and are overridden by the user's file."""

    name: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def preset_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Folders searched for presets, lowest priority first."""
    env = [Path(p) for p in os.environ.get("DEFORUM_ENGINE_PRESETS", "").split(os.pathsep) if p]
    return [SHIPPED_PRESETS, *env, *(extra or [])]


def _read_preset(path: Path) -> Preset:
    data = parse_toml(read_text_file(path, "motion preset"), f"motion preset {path}")
    settings = data.get("settings")
    if not isinstance(data.get("description"), str) or not isinstance(settings, dict):
        raise SettingsError(
            f"motion preset {path}: needs a `description` string and a [settings] table of schedules"
        )
    return Preset(name=path.stem, description=data["description"], settings=settings, path=path)


def list_presets(extra_dirs: list[Path] | None = None) -> dict[str, Preset]:
    """All presets by name; later folders override earlier ones."""
    found: dict[str, Preset] = {}
    for folder in preset_dirs(extra_dirs):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = _read_preset(path)
    return dict(sorted(found.items()))


def load_preset(name: str, extra_dirs: list[Path] | None = None) -> Preset:
    """One preset by name; an unknown name is a SettingsError with a suggestion."""
    if not isinstance(name, str):
        raise SettingsError(f"motion_preset: the name of a motion preset, e.g. \"zoom_in\" (`deforum-engine presets` "
                            f"lists them), got {type(name).__name__} {str(name)[:40]}")
    presets = list_presets(extra_dirs)
    if name in presets:
        preset = presets[name]
        if "motion_preset" in preset.settings:
            raise SettingsError(f"motion preset {preset.path}: a preset cannot name another preset")
        return preset
    close = difflib.get_close_matches(name, list(presets), n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    raise SettingsError(
        f"motion_preset: no preset named {name!r}; {hint}known presets: {', '.join(presets)} "
        "(`deforum-engine presets` lists them)"
    )
