"""Frame generators: the interface (base.py), the motion preview, diffusers, and lockstep batching.

`make_backend` is the one place that turns settings into a backend; heavy modules load only here,
when a model render asks for them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from deforum_engine.backends.preview import PreviewBackend

if TYPE_CHECKING:
    from deforum_engine.backends.base import Backend
    from deforum_engine.config.settings import Settings


def make_backend(settings: "Settings", preview: bool) -> "Backend":
    """The preview backend, or diffusers with the settings' model (loaded once per process)."""
    if preview:
        return PreviewBackend()
    from deforum_engine.backends.diffusers import DiffusersBackend

    return DiffusersBackend(settings.model, device=settings.device, dtype=settings.dtype,
                            ip_adapter=settings.ip_adapter, safety_checker=settings.safety_checker,
                            model_config=settings.model_config_dir,
                            tiny_vae=(settings.tiny_vae_model or True) if settings.vae == "tiny" else None,
                            compile_unet=settings.compile_unet)
