"""Settings files in: JSON or TOML (the engine's own), Deforum's flat `.txt` files, motion presets
and `--set KEY=VALUE` overrides, merged and validated into one `Settings`.

Precedence, lowest first: the defaults, the motion preset, the file, the overrides. Paths inside a
file are relative to the file. Deforum files go through `importers/deforum.py` first.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from deforum_engine.config.control_units import UNIT_COUNT, setting_name
from deforum_engine.config.importers.deforum import import_deforum, looks_like_deforum
from deforum_engine.config.importers.deforum_ignored import ignored_summary
from deforum_engine.config.presets import load_preset
from deforum_engine.config.settings import (PATH_FIELDS, PATH_LIST_FIELDS, SETTING_NAMES, IgnoredSettingsWarning, Settings,
                                            suggest_name, validate_settings)
from deforum_engine.errors import SettingsError
from deforum_engine.limits import check_nesting, parse_json, parse_toml, read_text_file


def read_settings_file(path: Path) -> dict[str, Any]:
    """Read a JSON or TOML settings file into a dict (no validation yet)."""
    if not path.is_file():
        raise SettingsError(f"{path}: no such settings file")
    text = read_text_file(path, "settings file")
    if path.suffix.lower() == ".toml":
        data = parse_toml(text, str(path))
    else:
        data = parse_json(text, str(path))
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a settings file holds one object of settings, got {type(data).__name__}")
    return data


def resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths inside a settings (or jobs) file are relative to that file."""
    resolved = dict(values)
    for key in PATH_FIELDS:
        if resolved.get(key):
            resolved[key] = str((base / Path(resolved[key]).expanduser()).resolve())
    for key in PATH_LIST_FIELDS:
        value = resolved.get(key)
        folders = [value] if isinstance(value, str) else value
        if isinstance(folders, (list, tuple)):  # anything else is left for validation to refuse
            resolved[key] = [str((base / Path(folder).expanduser()).resolve()) if isinstance(folder, str) and folder
                             else folder for folder in folders]
    for key in ("model", "ip_adapter", "tiny_vae_model", "parseq_manifest", "depth_model", "adabins_model",
                *(setting_name(number, "model") for number in range(1, UNIT_COUNT + 1))):
        value = resolved.get(key)
        if isinstance(value, str) and value and not value.lstrip().startswith("{") and _looks_local(value, base):
            resolved[key] = str((base / Path(value).expanduser()).resolve())
    return resolved


def _looks_local(value: str, base: Path) -> bool:
    """A model/adapter/manifest given as a path (not a hub id or inline JSON)."""
    if value.startswith((".", "/", "~")) or value.endswith((".safetensors", ".ckpt", ".json")):
        return True
    return (base / value).exists()


def engine_names(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A document in the engine's setting names: a Deforum file imported (with what the user should be
    told: the keys that were ignored first, then the importer's notes), anything else as it is."""
    if not looks_like_deforum(data):
        return dict(data), []
    imported = import_deforum(data, source)
    notes = list(imported.notes)
    if imported.ignored:
        notes.insert(0, ignored_summary(imported.ignored))
    return imported.settings, notes


def merge_settings(document: dict[str, Any], source: str, overrides: dict[str, Any] | None = None,
                   preset_dirs: list[Path] | None = None) -> Settings:
    """One document (in the engine's names) validated into Settings. Precedence, lowest first: the
    defaults, the motion preset (named by the overrides or the document), the document, the overrides."""
    overrides = dict(overrides or {})
    preset_name = overrides.get("motion_preset", document.get("motion_preset"))
    preset_values = load_preset(preset_name, preset_dirs).settings if preset_name else {}
    return validate_settings({**preset_values, **document, **overrides}, source)


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    preset_dirs: list[Path] | None = None,
) -> Settings:
    """Load a settings file (JSON, TOML or a Deforum .txt), apply its motion preset and overrides.

    Precedence, lowest first: defaults, the motion preset, the file, `overrides` (e.g. `--set`).
    """
    data: dict[str, Any] = {}
    source = "settings"
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        source = str(path)
        base = path.resolve().parent
        data, notes = engine_names(read_settings_file(path), source)
        for note in notes:
            warnings.warn(f"{source}: {note}", IgnoredSettingsWarning, stacklevel=2)
    return merge_settings(resolve_paths(data, base), source, resolve_paths(dict(overrides or {}), Path.cwd()),
                          preset_dirs)


def check_override_names(overrides: dict[str, Any], source: str = "--set") -> None:
    """A misspelt override is named as the override it is, not blamed on the settings file."""
    unknown = [key for key in overrides if key not in SETTING_NAMES]
    if unknown:
        raise SettingsError("; ".join(f"{source} {key}: unknown setting; {suggest_name(key, SETTING_NAMES)}"
                                      for key in unknown))


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `KEY=VALUE` override; the value is read as JSON when it can be (numbers, true, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SettingsError(f"--set {text!r}: expected KEY=VALUE, e.g. --set max_frames=60")
    check_nesting(raw, f"--set {key}", toml=False)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
