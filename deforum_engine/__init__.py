"""deforum-engine: Deforum-style animation rendering with keyframed motion, diffusers and ffmpeg.

The Python API is what the CLI calls:

    settings = load_settings("my_settings.json")
    plan = build_plan(settings)               # every per-frame value, up front
    result = render(settings, out="renders/x", preview=True)
    zoom = evaluate_schedule("0:(1.0), 30:(1.5)", max_frames=60)
"""
from importlib import import_module

from .errors import RenderCancelled, RenderError, SettingsError

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate_schedule": "schedules",
    "evaluate_string_schedule": "schedules",
    "load_settings": "settings_files",
    "Settings": "settings",
    "build_plan": "plan",
    "FramePlan": "plan",
    "render": "rendering",
    "resume": "rendering",
    "RenderResult": "rendering",
    "list_presets": "presets",
    "analyse_audio": "audio",
    "run_batch": "batch",
}
__all__ = ["RenderCancelled", "RenderError", "SettingsError", *_EXPORTS]


def __getattr__(name: str):
    # Heavy modules load on first use, so `deforum-engine schedule` never imports torch or OpenCV.
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
