"""The frame loop: frame 0 (or where a stopped render left off), then each diffused frame with the
cadence frames before it. Every value comes from the plan; nothing here reads settings.

One diffused frame, start to finish:
  1. `FrameLoop.motion` accumulates the plan's per-frame motion from the last diffused frame (2D
     matrices; in 3D mode also the camera's 4x4 moves);
  2. `FrameLoop.next_key` warps the last diffused frame by it (the warp chosen once from the plan:
     2D, or 3D through the frame's depth), runs the preparation steps (colour match, contrast,
     anti-blur, noise), asks the backend for the new frame, runs the finishing steps, and estimates
     the new frame's depth once (when the render has a depth model);
  3. `CadenceSegments` makes the frames in between (both neighbours warped to each frame's camera,
     crossfaded) on a worker thread while the backend generates the next key, and hands every
     frame, in order, to the sink (the render's frame writer) with the state a resume needs and,
     when asked for, its depth map.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np

from deforum_engine.backends.base import Backend, FrameRequest
from deforum_engine.models.depth import DepthEstimator, SteadyDepth, depth_image
from deforum_engine.errors import RenderCancelled
from deforum_engine.frame.cadence import crossfade
from deforum_engine.frame.color import ColorReference, color_reference
from deforum_engine.rendering.guidance import NO_GUIDE, Guide
from deforum_engine.rendering.inputs import RenderInputs
from deforum_engine.output.resume import ResumeState
from deforum_engine.plan.frame_plan import FramePlan, FrameValues
from deforum_engine.rendering.steps import (STILL, ImageStep, Move, Warps, choose_warps, frame_move, generation_steps, preparation_steps,
                    run_steps)
from deforum_engine.rendering.video_steps import VideoSteps

# Where finished frames go: (index, image, the resume state once this frame is on disk, or None,
# and the frame's depth map when the render saves them).
FrameSink = Callable[..., None]


# The backend's per-frame values are the plan's under the same names: copied by name, so a value the
# backend newly reads is one FrameRequest field (empty blend prompts mean no blending: None).
_FROM_PLAN = tuple(name for name in (field.name for field in fields(FrameRequest))
                   if name in {field.name for field in fields(FrameValues)} and name != "image")


def frame_request(frame: FrameValues, image: np.ndarray | None, denoise: float, **extras) -> FrameRequest:
    """The backend's work for one frame: its prepared picture (None: text-to-image), its values, and
    `extras` (its ControlNet units and mask, from guidance.Guide.extras)."""
    values = {name: getattr(frame, name) for name in _FROM_PLAN}
    values["blend_prompt"] = values["blend_prompt"] or None
    values["blend_negative_prompt"] = values["blend_negative_prompt"] or None
    return FrameRequest(image=image, denoise=denoise, **values, **extras)


@dataclass(frozen=True)
class Key:
    """A diffused frame as the loop carries it: its picture, its depth (z per pixel; None without a
    depth model) and the steady depth normalisation's state after it."""

    image: np.ndarray
    depth: np.ndarray | None = None
    steady: SteadyDepth | None = None


def resume_point(key_frame: int, key: Key, reference: ColorReference | None) -> ResumeState:
    """What resuming after diffused frame `key_frame` needs (its depth too: a resumed render never
    estimates it again); its cadence frames are redone from it."""
    arrays: dict[str, Any] = {"key_image": key.image}
    if reference is not None:
        arrays["color_reference"] = reference.to_array()
        arrays["color_mode"] = reference.mode
    if key.depth is not None:
        arrays["key_depth"] = key.depth
    if key.steady is not None:
        arrays["depth_histogram"] = key.steady.histogram
    return ResumeState(next_frame=key_frame + 1, arrays=arrays)


def _saved_key(state: ResumeState) -> Key:
    histogram = state.arrays.get("depth_histogram")
    return Key(state.arrays["key_image"], state.arrays.get("key_depth"),
               None if histogram is None else SteadyDepth(histogram))


@dataclass(frozen=True)
class DepthSteps:
    """A render's depth work, chosen once: a key frame's depth, and the depth maps it saves."""

    estimate: Callable[[np.ndarray, SteadyDepth | None], tuple[np.ndarray | None, SteadyDepth | None]]
    save_maps: bool = False

    @classmethod
    def for_render(cls, estimator: DepthEstimator | None, save_maps: bool) -> "DepthSteps":
        """With no depth model (2D, motion previews, depth warping off), keys carry no depth."""
        if estimator is None:
            return cls(lambda image, steady: (None, steady), False)
        return cls(estimator.estimate, save_maps)

    def key(self, image: np.ndarray, previous: SteadyDepth | None) -> Key:
        """A new diffused frame with its depth, estimated once."""
        return Key(image, *self.estimate(image, previous))


def _key_image(key: Key) -> np.ndarray:
    return key.image


def depth_picture(key: Key) -> np.ndarray:
    """A key's depth map as an RGB picture (grey, near white), warped like the frames for in-betweens."""
    return np.repeat(_depth_map(key)[..., None], 3, axis=2)


def _depth_map(key: Key) -> np.ndarray:
    """A key's depth map as saved: grey H x W, near white."""
    return depth_image(key.depth, *key.image.shape[:2])


@dataclass(frozen=True)
class LoopStart:
    """Where the loop begins: the last diffused frame, the colour reference, the next key to diffuse."""

    previous: Key
    reference: ColorReference | None
    next_key: int  # position in plan.diffused_frames


def start_or_resume(inputs: RenderInputs, backend: Backend, state: ResumeState | None,
                    sink: FrameSink, depth: DepthSteps = DepthSteps.for_render(None, False),
                    video: VideoSteps | None = None) -> LoopStart:
    """A new render makes frame 0 (and its depth) and hands it over; a stopped one picks up its saved state.
    `video`: frame 0 is matched to the clip too under colour coherence 'Video Input' (as Deforum does)."""
    plan = inputs.plan
    if state is not None:
        reference = None
        if "color_reference" in state.arrays:
            reference = ColorReference.from_array(state.arrays["color_mode"], state.arrays["color_reference"])
        return LoopStart(_saved_key(state), reference, plan.diffused_frames.index(state.next_frame - 1) + 1)
    frame, guide = plan.frame(0), inputs.guide
    request = frame_request(frame, inputs.init, inputs.init_denoise, **guide.extras(0, inputs.init))
    first = guide.finish(backend.generate(request), inputs.init, request.mask, 0)
    reference = _reference(inputs, first)
    if inputs.color_image is not None:  # a picture given up front: frame 0 is matched to it too, as Deforum does
        first = run_steps(generation_steps(reference, backend.is_preview), first, frame)
    if video is not None:
        first = video.match_colors(first, 0)
    key = depth.key(first, None)
    sink(0, key.image, resume_point(0, key, reference), _depth_map(key) if depth.save_maps else None)
    return LoopStart(key, reference, next_key=1)


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
    warps: Warps
    depth: DepthSteps
    guide: Guide = NO_GUIDE  # ControlNet units and masks
    video: VideoSteps | None = None  # the clip and optical-flow steps (None: pictures pass unchanged)
    from_clip: bool = False  # Video Input mode: each key starts from its clip frame, not the last key

    def __post_init__(self) -> None:
        self.video = self.video or VideoSteps(self.plan)

    @classmethod
    def for_render(cls, plan: FramePlan, backend: Backend, reference: ColorReference | None,
                   depth: DepthSteps = DepthSteps.for_render(None, False), device: str = "cpu",
                   guide: Guide = NO_GUIDE, video: VideoSteps | None = None) -> "FrameLoop":
        """Choose the steps once: motion previews leave out the noise, the sharpening and the
        post-generation match, and mirror smeared edges; the warp follows the plan's camera (2D, or
        3D re-projected on `device`); the noise keeps to the noise mask when there is one. In Video
        Input mode every frame is its own img2img pass from its clip frame, with none of the warp's
        steps (Deforum's)."""
        preview = backend.is_preview
        from_clip = plan.settings.animation_mode == "Video Input"
        noise_mask = guide.noise_mask if guide.noise is not None else None
        prepare = [] if from_clip else preparation_steps(plan, reference, preview=preview, noise_mask=noise_mask)
        finish = [] if from_clip else generation_steps(reference, preview, plan.settings.hybrid_composite != "None")
        return cls(plan, backend, reference, prepare, finish, choose_warps(plan, device, preview), depth, guide,
                   video, from_clip)

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
                moves = self.video.segment_moves(previous.image, begin, end)
                new = self.next_key(previous, motion, end, moves)
                segments.submit(previous, new, motion, begin, end, moves)
                previous = new

    def motion(self, start: int, end: int) -> list[Move]:
        """The camera motion from frame `start` to each frame start+1 .. end, accumulated frame over frame."""
        total, accumulated = STILL, []
        for index in range(start + 1, end + 1):
            total = total.then(frame_move(self.plan, index))
            accumulated.append(total)
        return accumulated

    def next_key(self, previous: Key, motion: list[Move], end: int, moves: list | None = None) -> Key:
        """Warp the last diffused frame to frame `end` (Video Input: take its clip frame), composite and
        move it with the clip, prepare it, redo, generate the new diffused frame, composite after
        generation, and estimate its depth. `moves`: the clip's motion over the segment (hybrid motion)."""
        frame = self.plan.frame(end)
        if self.from_clip:
            picture = self.video.init_picture(end)
        else:
            picture = self.warps.picture(previous.image, previous.depth, motion[-1])
        unnoised = self.video.match_colors(self.video.before_prepare(picture, moves, end, previous.depth), end)
        prepared = run_steps(self.prepare, unnoised, frame)
        request = frame_request(frame, prepared, frame.denoise, **self.guide.extras(end, prepared, previous))
        prepared = self.video.redo(prepared, unnoised, end, frame.seed,
                                   lambda image, seed: self.backend.generate(replace(request, image=image, seed=seed)))
        generated = self.guide.finish(self.backend.generate(replace(request, image=prepared)), prepared,
                                      request.mask, end)
        generated = self.video.match_colors(self.video.after_generation(generated, end, previous.depth), end)
        return self.depth.key(run_steps(self.finish, generated, frame), previous.steady)

    def in_between(self, previous: Key, new: Key, motion: list[Move], start: int,
                   picture: Callable[[Key], np.ndarray] = _key_image, moves: list | None = None):
        """Cadence frames: both neighbouring diffused frames warped to each frame's camera (each through
        its own depth), moved with the clip (`moves`, hybrid motion) and along the optical-flow
        cadence's flow, and crossfaded, each pixel from the neighbours that cover it (frame/cadence.py).
        `picture` chooses what is warped: the frame, or its depth map."""
        before, after = picture(previous), picture(new)
        cadence = None
        if len(motion) > 1 and picture is _key_image and self.video.uses_cadence_flow(start):
            cadence = self.video.segment_cadence_flow(self.warps.picture(before, previous.depth, motion[-1]), after,
                                                      start, moves)
        for offset, to_here in enumerate(motion[:-1], start=1):
            back = to_here.back_from(motion[-1])  # undo the motion from this frame to the new one
            forward, forward_seen = self.warps.covered(before, previous.depth, to_here)
            backward, backward_seen = self.warps.covered(after, new.depth, back)
            weight = offset / len(motion)
            if moves or cadence is not None:
                forward, backward = self.video.tween(forward, backward, offset, moves, cadence, weight, start + offset)
            yield start + offset, crossfade(forward, backward, weight, forward_seen, backward_seen)

    def depth_maps(self, previous: Key, new: Key, motion: list[Move], start: int) -> list[np.ndarray]:
        """The depth map of each frame start+1 .. end (in-betweens: both keys' maps moved to the frame
        and crossfaded, like the frames), grey."""
        maps = [tween[..., 0] for _, tween in self.in_between(previous, new, motion, start, depth_picture)]
        return [*maps, _depth_map(new)]


def _no_depth_maps(previous: Key, new: Key, motion: list[Move], start: int) -> list[None]:
    return [None] * len(motion)


class CadenceSegments:
    """Hands each finished segment (its in-between frames, then its key) to the sink on a worker
    thread, one segment at a time and in order, while the backend generates the next key."""

    def __init__(self, loop: FrameLoop, sink: FrameSink) -> None:
        self.loop, self.sink = loop, sink
        self._depth_maps = loop.depth_maps if loop.depth.save_maps else _no_depth_maps
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence")
        self._pending: Future | None = None

    def submit(self, previous: Key, new: Key, motion: list[Move], start: int, end: int,
               moves: list | None = None) -> None:
        self.wait()  # frames stay in order, and an error in the last segment surfaces here
        self._pending = self._worker.submit(self._write, previous, new, motion, start, end, moves)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _write(self, previous: Key, new: Key, motion: list[Move], start: int, end: int, moves: list | None) -> None:
        depth_maps = self._depth_maps(previous, new, motion, start)
        tweens = self.loop.in_between(previous, new, motion, start, _key_image, moves)
        for (index, tween), depth_map in zip(tweens, depth_maps):
            self.sink(index, self.loop.guide.overlay(tween, index), None, depth_map)
        self.sink(end, new.image, resume_point(end, new, self.loop.reference), depth_maps[-1])

    def __enter__(self) -> "CadenceSegments":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._worker.shutdown(wait=True)
