"""The loop's steps, chosen once from the plan: image steps, (image, frame values) -> image, and the warp.

The image functions in `frame/` take plain numbers; these adapters read them from a frame's
values. `preparation_steps` decides, before the first frame, which of them a render needs, and
`choose_warp` how a picture follows the camera (2D matrices, or 3D re-projection through depth),
so the loop itself has no feature checks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import numpy as np

from deforum_engine.control.masks import noise_only_in
from deforum_engine.frame.adjust import adjust_contrast, unsharp_mask
from deforum_engine.frame.cadence import coverage
from deforum_engine.frame.detail import restore_detail
from deforum_engine.frame.color import ColorReference, match_color
from deforum_engine.frame.noise import add_noise
from deforum_engine.frame.motion3d import CameraStep
from deforum_engine.frame.warp import warp_frame
from deforum_engine.frame.warp3d import warp_3d_path, warp_3d_path_covered
from deforum_engine.plan.frame_plan import Camera3D, FramePlan, FrameValues

ImageStep = Callable[[np.ndarray, FrameValues], np.ndarray]


def match_colors(image: np.ndarray, frame: FrameValues, *, reference: ColorReference) -> np.ndarray:
    """Colour coherence: pull the frame's histograms to the reference's."""
    return match_color(image, reference)


def contrast(image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """The frame's contrast schedule."""
    return adjust_contrast(image, frame.contrast)


def anti_blur(image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """Unsharp mask against the softening that repeated warps cause."""
    return unsharp_mask(image, frame.kernel, frame.sigma, frame.amount, frame.threshold)


def noise(image: np.ndarray, frame: FrameValues, *, noise_type: str, octaves: int, persistence: float) -> np.ndarray:
    """Seeded noise, so that diffusion has fresh detail to work with."""
    return add_noise(image, frame.noise, noise_seed(frame), noise_type, octaves, persistence)


def masked_noise(image: np.ndarray, frame: FrameValues, *, noise_step: ImageStep,
                 noise_mask: Callable[[int], np.ndarray]) -> np.ndarray:
    """The frame's noise only where its noise mask is white (use_mask / use_noise_mask)."""
    return noise_only_in(image, noise_step(image, frame), noise_mask(frame.index))


def noise_seed(frame: FrameValues) -> int:
    """The frame's noise seed: its seed and index together, so a fixed seed still varies the noise."""
    return (frame.seed * 100_003 + frame.index) % 2**63


def preparation_steps(plan: FramePlan, reference: ColorReference | None, preview: bool = False,
                      noise_mask: Callable[[int], np.ndarray] | None = None) -> list[ImageStep]:
    """Steps between the warp and the backend that this render needs, in Deforum's order.

    Motion previews leave out the noise and the anti-blur sharpening: with no model to turn them
    into detail, they would only pile up frame after frame (grain, then jagged halos).
    """
    values, settings = plan.values, plan.settings
    steps: list[ImageStep] = []
    if reference is not None:
        steps.append(partial(match_colors, reference=reference))
    if np.any(values["contrast"] != 1.0):
        steps.append(contrast)
    if not preview and np.any(values["amount"] > 0):
        steps.append(anti_blur)
    if not preview and np.any(values["noise"] > 0):
        step = partial(noise, noise_type=settings.noise_type, octaves=settings.perlin_octaves,
                       persistence=settings.perlin_persistence)
        steps.append(step if noise_mask is None else partial(masked_noise, noise_step=step, noise_mask=noise_mask))
    return steps


def restore_warped_detail(image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """A motion preview's stand-in for the model: the fine detail the warps wore away, put back (frame 0,
    the user's picture, as it is)."""
    return restore_detail(image, frame.seed * 7919 + frame.index) if frame.index > 0 else image


def generation_steps(reference: ColorReference | None, is_preview: bool, clip_composited: bool = False
                     ) -> list[ImageStep]:
    """Steps after the backend: colour coherence again, since diffusion drifts colours; a motion preview
    has no diffusion, and puts back the detail its warps wore away instead (unless hybrid video
    composites a clip into every frame: the clip brings its own detail)."""
    if is_preview:
        return [] if clip_composited else [restore_warped_detail]
    return [] if reference is None else [partial(match_colors, reference=reference)]


def run_steps(steps: list[ImageStep], image: np.ndarray, frame: FrameValues) -> np.ndarray:
    """Apply the chosen steps in order."""
    for step in steps:
        image = step(image, frame)
    return image


# ----------------------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class Move:
    """How a picture moves from one frame to another: a 2D matrix (3x3; in 3D mode the perspective
    flip, else the identity) and, in 3D mode, the camera's steps frame by frame (CameraStep: move
    and lens; the 3D warp composes Deforum's one-frame warps along them)."""

    flat: np.ndarray
    camera: tuple[CameraStep, ...] = ()

    def then(self, step: "Move") -> "Move":
        """This move, then `step`."""
        return Move(step.flat @ self.flat, self.camera + step.camera)

    def back_from(self, later: "Move") -> "Move":
        """From where `later` (this move, continued) ends back to where this one ends."""
        undo = tuple(step.inverse() for step in reversed(later.camera[len(self.camera):]))
        return Move(self.flat @ np.linalg.inv(later.flat), undo)


def frame_move(plan: FramePlan, index: int) -> Move:
    """The move from frame index - 1 to frame `index`, from the plan."""
    if plan.camera is None:
        return Move(plan.motion[index])
    return Move(plan.motion[index], (CameraStep(plan.camera.moves[index], plan.camera.lens(index)),))


STILL = Move(np.eye(3))  # no motion


# A warp: (picture, its depth z or None, move) -> the picture where the move ends; a covered warp
# also gives how much of each pixel comes from inside the picture (None: all of it).
Warp = Callable[[np.ndarray, "np.ndarray | None", Move], np.ndarray]
CoveredWarp = Callable[[np.ndarray, "np.ndarray | None", Move], "tuple[np.ndarray, np.ndarray | None]"]


@dataclass(frozen=True)
class Warps:
    """How pictures follow the camera in one render: `picture` for key frames, `covered` for the
    in-between frames' crossfade (frame/cadence.py)."""

    picture: Warp
    covered: CoveredWarp


def warp_2d(image: np.ndarray, depth, move: Move, *, border: str) -> np.ndarray:
    """2D mode: the picture moved by the matrix (depth plays no part)."""
    return warp_frame(image, move.flat, border)


def warp_2d_covered(image: np.ndarray, depth, move: Move, *, border: str):
    height, width = image.shape[:2]
    return warp_frame(image, move.flat, border), coverage(move.flat, width, height)


def warp_camera(image: np.ndarray, depth, move: Move, *, camera: Camera3D, device: str, covered: bool = False):
    """3D mode: the picture re-projected through its depth along the camera's steps (flat depth
    where depth warping is off or no depth is known); with `covered`, its coverage too."""
    z = depth if camera.depth_warping else None
    warp = warp_3d_path_covered if covered else warp_3d_path
    return warp(image, z, move.camera, camera.padding_mode, camera.sampling_mode, device)


def flip_then_camera(image: np.ndarray, depth, move: Move, *, border: str, camera):
    """3D mode with the perspective flip: flipped first, then re-projected, as Deforum orders them
    (a covered warp counts the re-projection's coverage)."""
    return camera(warp_frame(image, move.flat, border), depth, move)


# What a motion preview fills uncovered edges with instead: a smeared edge (replicate, border) is
# what a model paints over; with no model it would spread over the whole frame in a long pan, and a
# mirrored one, mirrored again frame after frame, turns into stripes. In 2D the picture wraps round
# (the default picture tiles seamlessly), so a pan keeps showing it; 3D sampling has no wrap, and
# mirrors.
PREVIEW_BORDER = {"replicate": "wrap", "reflect": "wrap"}
PREVIEW_PADDING = {"border": "reflection", "zeros": "reflection"}
# ... and how it samples in 3D: bicubic's overshoot, repeated hundreds of times with no model to
# repaint it, piles up into a woven pattern.
PREVIEW_SAMPLING = {"bicubic": "bilinear"}


def choose_warps(plan: FramePlan, device: str = "cpu", preview: bool = False) -> Warps:
    """How pictures follow the camera in this render; `device` runs the 3D re-projection. A motion
    preview wraps the picture round (2D) or mirrors it (3D) at the edges where a render would smear
    them, and samples 3D bilinearly (PREVIEW_BORDER, PREVIEW_PADDING, PREVIEW_SAMPLING)."""
    border = plan.canvas.border
    camera = plan.camera
    if preview:
        border = PREVIEW_BORDER.get(border, border)
        if camera is not None:
            camera = replace(camera, padding_mode=PREVIEW_PADDING.get(camera.padding_mode, camera.padding_mode),
                             sampling_mode=PREVIEW_SAMPLING.get(camera.sampling_mode, camera.sampling_mode))
    if camera is None:
        return Warps(partial(warp_2d, border=border), partial(warp_2d_covered, border=border))
    picture = partial(warp_camera, camera=camera, device=device)
    covered = partial(warp_camera, camera=camera, device=device, covered=True)
    if np.array_equal(plan.motion, np.broadcast_to(np.eye(3), plan.motion.shape)):
        return Warps(picture, covered)
    return Warps(partial(flip_then_camera, border=border, camera=picture),
                 partial(flip_then_camera, border=border, camera=covered))
