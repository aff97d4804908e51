"""The frame loop: frame 0 (or where a stopped render left off), then each diffused frame with the
cadence frames before it. Every value comes from the plan; nothing here reads settings.

One diffused frame, start to finish:
  1. `FrameLoop.motion` accumulates the plan's per-frame motion from the last diffused frame;
  2. `FrameLoop.next_key` warps the last diffused frame by it, runs the preparation steps (colour
     match, contrast, anti-blur, noise), asks the backend for the new frame, runs the finishing steps;
  3. `CadenceSegments` makes the frames in between (both neighbours warped to each frame's camera,
     crossfaded) on a worker thread while the backend generates the next key, and hands every
     frame, in order, to the sink (the render's frame writer) with the state a resume needs.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .backends.base import Backend, FrameRequest
from .errors import RenderCancelled
from .frame.cadence import coverage, crossfade
from .frame.color import ColorReference, color_reference
from .frame.warp import warp_frame
from .inputs import RenderInputs
from .output import ResumeState
from .plan import FramePlan, FrameValues
from .steps import ImageStep, generation_steps, preparation_steps, run_steps

# Where finished frames go: (index, image, the resume state once this frame is on disk, or None).
FrameSink = Callable[[int, np.ndarray, "ResumeState | None"], None]


def frame_request(frame: FrameValues, image: np.ndarray | None, denoise: float) -> FrameRequest:
    """The backend's work for one frame: its prepared picture (None: text-to-image) and its values."""
    return FrameRequest(
        index=frame.index, image=image, prompt=frame.prompt, negative_prompt=frame.negative_prompt,
        seed=frame.seed, steps=frame.steps, cfg_scale=frame.cfg_scale, denoise=denoise, sampler=frame.sampler,
        image_prompt_scale=frame.image_prompt_scale, blend_prompt=frame.blend_prompt or None,
        blend_negative_prompt=frame.blend_negative_prompt or None, blend_weight=frame.blend_weight,
        noise_multiplier=frame.noise_multiplier, loras=frame.loras,
    )


def resume_point(key_frame: int, key_image: np.ndarray, reference: ColorReference | None) -> ResumeState:
    """What resuming after diffused frame `key_frame` needs; its cadence frames are redone from it."""
    arrays = {"key_image": key_image}
    if reference is not None:
        arrays["color_reference"] = reference.to_array()
        arrays["color_mode"] = reference.mode
    return ResumeState(next_frame=key_frame + 1, arrays=arrays)


@dataclass(frozen=True)
class LoopStart:
    """Where the loop begins: the last diffused frame, the colour reference, the next key to diffuse."""

    previous: np.ndarray
    reference: ColorReference | None
    next_key: int  # position in plan.diffused_frames


def start_or_resume(inputs: RenderInputs, backend: Backend, state: ResumeState | None,
                    sink: FrameSink) -> LoopStart:
    """A new render makes frame 0 and hands it over; a stopped one picks up its saved state."""
    plan = inputs.plan
    if state is not None:
        reference = None
        if "color_reference" in state.arrays:
            reference = ColorReference.from_array(state.arrays["color_mode"], state.arrays["color_reference"])
        return LoopStart(state.arrays["key_image"], reference, plan.diffused_frames.index(state.next_frame - 1) + 1)
    frame = plan.frame(0)
    first = backend.generate(frame_request(frame, inputs.init, inputs.init_denoise))
    reference = _reference(inputs, first)
    if inputs.color_image is not None:  # a picture given up front: frame 0 is matched to it too, as Deforum does
        first = run_steps(generation_steps(reference, backend.is_preview), first, frame)
    sink(0, first, resume_point(0, first, reference))
    return LoopStart(first, reference, next_key=1)


def _reference(inputs: RenderInputs, first: np.ndarray) -> ColorReference | None:
    """The colour reference: the chosen picture (a given image, the init image), else frame 0."""
    if inputs.color_mode is None:
        return None
    return color_reference(inputs.color_image if inputs.color_image is not None else first, inputs.color_mode)


@dataclass
class FrameLoop:
    """The per-frame work of one render: a backend and the steps chosen once from the plan."""

    plan: FramePlan
    backend: Backend
    reference: ColorReference | None
    prepare: list[ImageStep]
    finish: list[ImageStep]

    @classmethod
    def for_render(cls, plan: FramePlan, backend: Backend, reference: ColorReference | None) -> "FrameLoop":
        """Choose the steps once: motion previews leave out the noise and the post-generation match."""
        prepare = preparation_steps(plan, reference, with_noise=not backend.is_preview)
        return cls(plan, backend, reference, prepare, generation_steps(reference, backend.is_preview))

    def run(self, start: LoopStart, sink: FrameSink, cancel: threading.Event | None = None) -> None:
        """Every diffused frame after `start`, each segment's frames handed to `sink` in order."""
        keys = self.plan.diffused_frames
        previous = start.previous
        with CadenceSegments(self, sink) as segments:
            for k in range(start.next_key, len(keys)):
                if cancel is not None and cancel.is_set():
                    segments.wait()  # the finished segment is kept
                    raise RenderCancelled(f"render cancelled after frame {keys[k - 1]}")
                begin, end = keys[k - 1], keys[k]
                motion = self.motion(begin, end)
                new = self.next_key(previous, motion, end)
                segments.submit(previous, new, motion, begin, end)
                previous = new

    def motion(self, start: int, end: int) -> list[np.ndarray]:
        """The camera motion from frame `start` to each frame start+1 .. end, accumulated frame over frame."""
        total, accumulated = np.eye(3), []
        for step in self.plan.motion[start + 1:end + 1]:
            total = step @ total
            accumulated.append(total)
        return accumulated

    def warp(self, image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return warp_frame(image, matrix, self.plan.canvas.border)

    def next_key(self, previous: np.ndarray, motion: list[np.ndarray], end: int) -> np.ndarray:
        """Warp the last diffused frame to frame `end`, prepare it, and generate the new diffused frame."""
        frame = self.plan.frame(end)
        prepared = run_steps(self.prepare, self.warp(previous, motion[-1]), frame)
        generated = self.backend.generate(frame_request(frame, prepared, frame.denoise))
        return run_steps(self.finish, generated, frame)

    def in_between(self, previous: np.ndarray, new: np.ndarray, motion: list[np.ndarray], start: int):
        """Cadence frames: both neighbouring diffused frames warped to each frame's camera and crossfaded,
        each pixel from the neighbours that cover it (frame/cadence.py)."""
        width, height = self.plan.canvas.width, self.plan.canvas.height
        to_new = np.linalg.inv(motion[-1])
        for offset, to_here in enumerate(motion[:-1], start=1):
            back = to_here @ to_new  # undo the motion from this frame to the new one
            forward, backward = self.warp(previous, to_here), self.warp(new, back)
            seen = coverage(to_here, width, height), coverage(back, width, height)
            yield start + offset, crossfade(forward, backward, offset / len(motion), *seen)


class CadenceSegments:
    """Hands each finished segment (its in-between frames, then its key) to the sink on a worker
    thread, one segment at a time and in order, while the backend generates the next key."""

    def __init__(self, loop: FrameLoop, sink: FrameSink) -> None:
        self.loop, self.sink = loop, sink
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence")
        self._pending: Future | None = None

    def submit(self, previous: np.ndarray, new: np.ndarray, motion: list[np.ndarray], start: int, end: int) -> None:
        self.wait()  # frames stay in order, and an error in the last segment surfaces here
        self._pending = self._worker.submit(self._write, previous, new, motion, start, end)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _write(self, previous, new, motion, start: int, end: int) -> None:
        for index, tween in self.loop.in_between(previous, new, motion, start):
            self.sink(index, tween, None)
        self.sink(end, new, resume_point(end, new, self.loop.reference))

    def __enter__(self) -> "CadenceSegments":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._worker.shutdown(wait=True)
