"""The loop's video steps, chosen once from the plan: Video Input's init frames, hybrid compositing
and motion, optical-flow cadence, optical-flow redo and diffusion redo, colour matched to the clip.

`VideoSteps.for_render` decides which of them a render needs; a render without video gets steps
that hand pictures back unchanged, so the loop has no feature checks. Every value comes from the
plan and every picture from the clip or the frames, so a resumed render computes the same.
"""
from __future__ import annotations

import bisect
import functools
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from deforum_engine.models.cache import cached_model
from deforum_engine.models.depth import depth_image
from deforum_engine.frame.color import color_reference, match_color
from deforum_engine.plan.frame_plan import FramePlan
from deforum_engine.video.clip import VideoFrames
from deforum_engine.video.flow import Flow, choose_flow, compose_flows, consistent_flow, invert_flow, matrix_flow, warp_by_flow
from deforum_engine.video.hybrid import MaskValues, hybrid_composite, matrix_between, sift_features

Generate = Callable[[np.ndarray, int], np.ndarray]  # (init picture, seed) -> a generated picture


def redo_seed(seed: int, index: int, attempt: int) -> int:
    """A throw-away diffusion's seed: Deforum draws a random one; here it follows from the frame's seed,
    so a resumed render redoes the same."""
    return (seed * 1_000_003 + index * 7919 + attempt * 104_729 + 1) % 2**32


@dataclass
class VideoSteps:
    """What a render does with its clip and with optical flow, frame by frame."""

    plan: FramePlan
    frames: VideoFrames | None = None
    composite: str = "None"  # None | Normal | Before Motion | After Generation
    motion: str = "None"  # None | Optical Flow | Perspective | Affine
    hybrid_flow: Flow | None = None
    cadence_flow: Flow | None = None
    redo_flow: Flow | None = None
    redo_count: int = 0
    color_every: int = 0  # colour coherence 'Video Input': every N frames (0: off)
    composite_picture: np.ndarray | None = None  # hybrid_use_init_image: the init image, not the clip
    depth: object = None  # the render's DepthEstimator (Depth / Video Depth masks); None: no depth masks
    extra_frames: Path | None = None  # hybrid_comp_save_extra_frames: where masks and composites are written
    _colors: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict)  # clip frame -> SIFT features, for the next frame's match
    _ahead: ClipMovesAhead | None = None  # the clip's own moves, measured ahead on a worker thread

    def __enter__(self) -> VideoSteps:
        if self.extra_frames is not None:
            self.extra_frames.mkdir(parents=True, exist_ok=True)
        if self.motion != "None" and self.frames is not None and not self.plan.settings.hybrid_motion_use_prev_img:
            self._ahead = ClipMovesAhead(self._clip_move, self.frames)
        return self

    def __exit__(self, *exc) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    @classmethod
    def for_render(cls, plan: FramePlan, frames: VideoFrames | None, init: np.ndarray | None,
                   preview: bool, depth=None, folder: Path | None = None) -> "VideoSteps":
        """The steps `plan` needs; `depth`: the render's depth model; `folder`: the render folder."""
        settings = plan.settings
        if plan.video is None:
            return cls(plan)
        hybrid = settings.animation_mode in ("2D", "3D")
        method = settings.hybrid_flow_method
        use_init = settings.hybrid_use_init_image and init is not None
        if needs_depth(settings) and depth is None:
            print(f"warning: hybrid_comp_mask_type {settings.hybrid_comp_mask_type!r} needs a depth model, which "
                  "motion previews do not load: composited without a mask", file=sys.stderr)
        return cls(
            plan, frames,
            composite=settings.hybrid_composite if hybrid else "None",
            motion=settings.hybrid_motion if hybrid else "None",
            hybrid_flow=_flow(method, "hybrid_flow_method", settings.device)
            if hybrid and settings.hybrid_motion == "Optical Flow" else None,
            cadence_flow=_optional_flow(settings.optical_flow_cadence, "optical_flow_cadence", settings.device)
            if hybrid else None,
            redo_flow=None if preview or not hybrid else
            _optional_flow(settings.optical_flow_redo_generation, "optical_flow_redo_generation", settings.device),
            redo_count=0 if preview or not hybrid else settings.diffusion_redo,
            color_every=settings.color_coherence_video_every_N_frames
            if settings.color_coherence == "Video Input" else 0,
            composite_picture=init if use_init else None,
            depth=depth if needs_depth(settings) else None,
            extra_frames=folder / "hybridframes" if folder is not None and settings.hybrid_comp_save_extra_frames
            and hybrid and settings.hybrid_composite != "None" else None,
        )

    # ----------------------------------------------------------------------------- Video Input

    def init_picture(self, index: int) -> np.ndarray:
        """Video Input mode: the clip frame output frame `index` starts from."""
        return self.frames[index]

    # ---------------------------------------------------------------------- hybrid, key frames

    def before_prepare(self, image: np.ndarray, moves: list[np.ndarray] | None, end: int,
                       previous_depth: np.ndarray | None = None) -> np.ndarray:
        """Deforum's order after the warp: composite 'Before Motion', the clip's motion, composite 'Normal'.
        `previous_depth`: the last diffused frame's depth (z), for Depth masks."""
        if self.composite == "Before Motion":
            image = self._composite(image, end, previous_depth)
        if moves:
            image = warp_by_flow(image, _chain(moves))
        if self.composite == "Normal":
            image = self._composite(image, end, previous_depth)
        return image

    def after_generation(self, image: np.ndarray, index: int, previous_depth: np.ndarray | None = None) -> np.ndarray:
        """Composite 'After Generation' (frames after 0)."""
        if self.composite != "After Generation" or index == 0:
            return image
        return self._composite(image, index, previous_depth)

    def _depth_mask(self, video: np.ndarray, previous_depth: np.ndarray | None) -> np.ndarray | None:
        """Depth: the last diffused frame's depth map; Video Depth: the clip frame's (grey, near white)."""
        height, width = video.shape[:2]
        if self.plan.settings.hybrid_comp_mask_type == "Video Depth":
            return depth_image(self.depth.estimate(video, None)[0], height, width)
        return None if previous_depth is None else depth_image(previous_depth, height, width)

    def _composite(self, image: np.ndarray, index: int, previous_depth: np.ndarray | None = None) -> np.ndarray:
        values = self.plan.values
        video = self.composite_picture if self.composite_picture is not None else self.frames[index]
        mask_type, depth = self.plan.settings.hybrid_comp_mask_type, None
        if mask_type in ("Depth", "Video Depth"):
            depth = None if self.depth is None else self._depth_mask(video, previous_depth)
            mask_type = mask_type if depth is not None else "None"
        settings = self.plan.settings
        mask = MaskValues(float(values["hybrid_comp_mask_blend_alpha"][index]),
                          float(values["hybrid_comp_mask_contrast"][index]),
                          int(values["hybrid_comp_mask_auto_contrast_cutoff_low"][index]),
                          int(values["hybrid_comp_mask_auto_contrast_cutoff_high"][index]),
                          settings.hybrid_comp_mask_auto_contrast, settings.hybrid_comp_mask_inverse,
                          settings.hybrid_comp_mask_equalize)
        result, processed = hybrid_composite(image, video, mask_type, float(values["hybrid_comp_alpha"][index]),
                                             mask, depth)
        if self.extra_frames is not None:
            self._save_extra(index, processed, result)
        return result

    def _save_extra(self, index: int, mask: np.ndarray | None, result: np.ndarray) -> None:
        """hybrid_comp_save_extra_frames: the processed mask and the composited frame, as PNGs (the folder
        is made by __enter__)."""
        if mask is not None:
            cv2.imwrite(str(self.extra_frames / f"mask_{index:09}.png"), mask)
        cv2.imwrite(str(self.extra_frames / f"comp_{index:09}.png"), cv2.cvtColor(result, cv2.COLOR_RGB2BGR))

    def segment_moves(self, previous: np.ndarray, begin: int, end: int) -> list[np.ndarray] | None:
        """The clip's motion for each frame begin+1 .. end (frame j-1 -> j, as flows), or None without
        hybrid motion. With hybrid_motion_use_prev_img the first is measured from the picture itself."""
        if self.motion == "None":
            return None
        if self._ahead is not None:
            return [self._ahead.move(j) for j in range(begin + 1, end + 1)]
        return [self._move(previous if j == begin + 1 and self.plan.settings.hybrid_motion_use_prev_img
                           else None, j, self.frames) for j in range(begin + 1, end + 1)]

    def _clip_move(self, frames: VideoFrames, j: int) -> np.ndarray:
        return self._move(None, j, frames)

    def _move(self, picture: np.ndarray | None, j: int, frames: VideoFrames) -> np.ndarray:
        """The clip's move from frame j - 1 (or from `picture`) to frame j, reading `frames`."""
        if self.hybrid_flow is None:
            before = sift_features(picture) if picture is not None else self._sift(j - 1, frames)
            canvas = self.plan.canvas
            return matrix_flow(matrix_between(before, self._sift(j, frames), self.motion), canvas.width, canvas.height)
        source = picture if picture is not None else frames[j - 1]
        settings = self.plan.settings
        if settings.hybrid_flow_consistency:
            flow = consistent_flow(source, frames[j], self.hybrid_flow, settings.hybrid_consistency_blur)
        else:
            flow = self.hybrid_flow(source, frames[j])
        return flow * np.float32(self.plan.values["hybrid_flow_factor"][j])

    def _sift(self, index: int, frames: VideoFrames) -> tuple:
        # one thread only reads this cache: the loop's, or ClipMovesAhead's worker when it measures every move
        if index not in self._features:
            self._features = {k: v for k, v in self._features.items() if k >= index - 2}
            self._features[index] = sift_features(frames[index])
        return self._features[index]

    # ------------------------------------------------------------------------- colour matching

    @functools.cached_property
    def _color_samples(self) -> list[int]:
        """The diffused frames whose clip frame colours are matched to (every color_every-th frame)."""
        return [k for k in self.plan.diffused_frames if k % self.color_every == 0]

    def match_colors(self, image: np.ndarray, index: int) -> np.ndarray:
        """color_coherence 'Video Input': matched (LAB) to the clip frame sampled every N frames."""
        if not self.color_every:
            return image
        samples = self._color_samples
        sample = samples[bisect.bisect_right(samples, index) - 1]
        if self._colors.get("index") != sample:
            self._colors = {"index": sample, "reference": color_reference(self.frames[sample], "LAB")}
        return match_color(image, self._colors["reference"])

    # ------------------------------------------------------------------------------------ redo

    def redo(self, prepared: np.ndarray, unnoised: np.ndarray, index: int, seed: int, generate: Generate) -> np.ndarray:
        """Optical-flow redo, then diffusion redo: throw-away diffusions whose result becomes the init."""
        strength = float(self.plan.values["strength"][index])
        if strength <= 0:
            return prepared
        if self.redo_flow is not None:
            disposable = generate(prepared, redo_seed(seed, index, 0))
            flow = self.redo_flow(unnoised, disposable)
            prepared = warp_by_flow(disposable, flow, float(self.plan.values["redo_flow_factor"][index]))
        for attempt in range(1, self.redo_count + 1):
            prepared = generate(prepared, redo_seed(seed, index, attempt))
        return prepared

    # ------------------------------------------------------------------------- in-between frames

    def tween(self, forward: np.ndarray, backward: np.ndarray, offset: int, moves: list[np.ndarray] | None,
              cadence: np.ndarray | None, weight: float, index: int) -> tuple[np.ndarray, np.ndarray]:
        """An in-between frame's two neighbours moved by the clip (forward up to the frame, the newer
        key back from the segment's end) and along the cadence flow by their share of it."""
        if moves:
            forward = warp_by_flow(forward, _chain(moves[:offset]))
            backward = warp_by_flow(backward, invert_flow(_chain(moves[offset:])))
        if cadence is not None:
            factor = float(self.plan.values["cadence_flow_factor"][index])
            forward = warp_by_flow(forward, cadence, weight * factor)
            backward = warp_by_flow(backward, cadence, -(1 - weight) * factor)
        return forward, backward

    def uses_cadence_flow(self, begin: int) -> bool:
        """Whether the segment starting at diffused frame `begin` moves its in-betweens along an optical flow."""
        return self.cadence_flow is not None and float(self.plan.values["strength"][begin]) > 0

    def segment_cadence_flow(self, before_at_end: np.ndarray, after: np.ndarray, begin: int,
                             moves: list[np.ndarray] | None = None) -> np.ndarray | None:
        """Optical-flow cadence: the flow from the older key (moved to the segment's end by the camera
        and the clip's `moves`) to the newer one, so only what neither explains is left (used when
        strength_schedule at the segment's start is above 0, as in Deforum)."""
        if not self.uses_cadence_flow(begin):
            return None
        if moves:
            before_at_end = warp_by_flow(before_at_end, _chain(moves))
        return self.cadence_flow(before_at_end, after)


class ClipMovesAhead:
    """The clip's motion from frame j - 1 to frame j depends on the clip alone, so it is measured a few
    frames ahead on a worker thread (with its own stream of the clip), while the loop warps, prepares and
    generates: optical flow and feature matching release the GIL, so on two cores hybrid motion costs
    little more than the frame itself. The moves are the same, measured ahead or not."""

    def __init__(self, measure: Callable[[VideoFrames, int], np.ndarray], frames: VideoFrames, ahead: int = 2):
        self._measure, self._ahead = measure, ahead
        self._frames = VideoFrames(frames.clip, frames.frames, *frames.size, frames.fit, keep=ahead + 2)
        self._last = frames.frames.count - 1
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="clip-moves")
        self._pending: dict[int, Future] = {}

    def move(self, j: int) -> np.ndarray:
        for k in range(j, min(j + self._ahead, self._last) + 1):
            if k not in self._pending:
                self._pending[k] = self._pool.submit(self._measure, self._frames, k)
        for old in [k for k in self._pending if k < j]:
            self._pending.pop(old).cancel()
        return self._pending.pop(j).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._frames.close()


def needs_depth(settings) -> bool:
    """Hybrid compositing with a Depth or Video Depth mask (the render then loads its depth model, as Deforum does)."""
    return (settings.animation_mode in ("2D", "3D") and settings.hybrid_composite != "None"
            and settings.hybrid_comp_mask_type in ("Depth", "Video Depth"))


def _optional_flow(method: str, setting: str, device: str | None) -> Flow | None:
    return None if method == "None" else _flow(method, setting, device)


def _flow(method: str, setting: str, device: str | None) -> Flow:
    """The flow function for `method`; RAFT's network loads once per device for every flow setting and render."""
    if method == "RAFT":
        return cached_model("raft", (device,), lambda: choose_flow(method, setting, device))
    return choose_flow(method, setting, device)


def _chain(moves: list[np.ndarray]) -> np.ndarray:
    """Moves one after the other, as one."""
    total = moves[0]
    for move in moves[1:]:
        total = compose_flows(total, move)
    return total
