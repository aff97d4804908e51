"""One process-wide cache for every loaded model: diffusers pipelines, depth models, ControlNets,
RIFE and Real-ESRGAN networks.

Each is keyed by its kind and what it was loaded from (source, device, dtype ...), so a batch or the
studio loads a model once however many renders use it. Loading holds one lock: render threads that
start together (lockstep batches) never load the same model twice, and a GPU never loads two at once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

Model = TypeVar("Model")

_MODELS: dict[tuple, Any] = {}
_LOADING = threading.RLock()  # re-entrant: a loader may load another model (a pipeline's tiny VAE ...)


def cached_model(kind: str, key: tuple, load: Callable[[], Model]) -> Model:
    """The `kind` model for `key`, loaded by `load()` the first time it is asked for."""
    with _LOADING:
        if (kind, *key) not in _MODELS:
            _MODELS[(kind, *key)] = load()
        return _MODELS[(kind, *key)]


def loaded_models(kind: str | None = None) -> list[tuple]:
    """The keys of the models loaded so far (of one kind, or all)."""
    with _LOADING:
        return [key for key in _MODELS if kind is None or key[0] == kind]


def forget_models(kind: str | None = None) -> None:
    """Drop the loaded models (of one kind, or all): the next request loads again."""
    with _LOADING:
        for key in loaded_models(kind):
            del _MODELS[key]
