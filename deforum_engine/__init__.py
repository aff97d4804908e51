"""deforum-engine: Deforum-style animation rendering with keyframed motion, diffusers and ffmpeg.

The Python API is what the CLI calls:

    settings = load_settings("my_settings.json")
    plan = build_plan(settings)               # every per-frame value, up front
    result = render(settings, out="renders/x", preview=True)
    zoom = evaluate_schedule("0:(1.0), 30:(1.5)", max_frames=60)
"""
from importlib import import_module

from deforum_engine.errors import RenderCancelled, RenderError, SettingsError

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate_schedule": "schedules",
    "evaluate_string_schedule": "schedules",
    "load_settings": "config.files",
    "Settings": "config.settings",
    "build_plan": "plan.frame_plan",
    "FramePlan": "plan.frame_plan",
    "render": "rendering.recipe",
    "resume": "rendering.recipe",
    "RenderResult": "rendering.recipe",
    "list_presets": "config.presets",
    "analyse_audio": "plan.audio",
    "run_batch": "batch.local",
}
__all__ = ["RenderCancelled", "RenderError", "SettingsError", *_EXPORTS]


def __getattr__(name: str):
    # Heavy modules load on first use, so `deforum-engine schedule` never imports torch or OpenCV.
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
