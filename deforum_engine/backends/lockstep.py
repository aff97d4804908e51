"""Lockstep renders: several renders share one model and advance together, so that each UNet call
denoises a batch of frames from different renders (a big GPU is badly used by one 512x512 frame).

Each render runs the ordinary frame loop in its own thread with a `LockstepBackend` as its backend
(jobs.render_in_lockstep sets that up).
`generate` waits until every render still running has asked for its frame, then the frames that
can share a pipeline call (same steps, denoise, sampler, guidance) go through `generate_many` at
once. Renders of different lengths are fine: a finished render calls `leave()`.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from deforum_engine.backends.base import FrameRequest, RenderContext
from deforum_engine.errors import SettingsError


@dataclass
class _Slot:
    request: FrameRequest
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


def batch_key(request: FrameRequest) -> tuple:
    """Requests with equal keys can be denoised in one pipeline call."""
    return (request.image is None, request.steps, round(request.denoise, 6), request.sampler,
            round(request.cfg_scale, 6), round(request.image_prompt_scale, 6),
            round(request.noise_multiplier, 6), request.loras,
            tuple(unit.signature() for unit in request.control), request.mask is not None)


def _without_controlnets(context: RenderContext) -> RenderContext:
    return dataclasses.replace(context, controlnets=())


class LockstepBackend:
    """A DiffusersBackend shared by `renders` render threads that batches their frames."""

    name = "diffusers"
    is_preview = False

    def __init__(self, inner, renders: int) -> None:
        self.inner = inner
        self._members = renders
        self._pending: list[_Slot] = []
        self._context: RenderContext | None = None
        self._condition = threading.Condition()

    def begin(self, context: RenderContext) -> None:
        """Set up the shared model once; every render of the group must have the same canvas and no
        image prompt (refused before the model loads)."""
        if context.image_prompt is not None:
            raise SettingsError("lockstep renders cannot use an image prompt; render those one by one")
        with self._condition:
            if self._context is None:
                self.inner.begin(context)
                self._context = context
            elif _without_controlnets(context) == _without_controlnets(self._context):
                self.inner.load_controlnets(context.controlnets)  # each render's own units; the canvas is shared
            else:
                raise SettingsError(
                    f"lockstep renders must share their size and image prompt: {context} is not {self._context}"
                )

    def generate(self, request: FrameRequest) -> np.ndarray:
        slot = _Slot(request)
        with self._condition:
            self._pending.append(slot)
            self._flush_if_all_waiting()
            while not slot.done:
                self._condition.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def flags_unsafe(self, image: np.ndarray) -> bool:
        return self.inner.flags_unsafe(image)

    def leave(self) -> None:
        """A render of the group has finished (or failed): stop waiting for its frames."""
        with self._condition:
            self._members -= 1
            self._flush_if_all_waiting()

    def _flush_if_all_waiting(self) -> None:
        """With every running render waiting, denoise their frames, grouped by what can be batched."""
        if not self._pending or len(self._pending) < self._members:
            return
        slots, self._pending = self._pending, []
        groups: dict[tuple, list[_Slot]] = defaultdict(list)
        for slot in slots:
            groups[batch_key(slot.request)].append(slot)
        for group in groups.values():
            try:
                results = self.inner.generate_many([slot.request for slot in group])
            except Exception as error:  # noqa: BLE001 - handed to each waiting render, which raises it
                for slot in group:
                    slot.error = error
            else:
                for slot, result in zip(group, results):
                    slot.result = result
        for slot in slots:
            slot.done = True
        self._condition.notify_all()
