"""Settings -> FramePlan: every per-frame value of a render, computed once before the loop starts.

The loop never evaluates a schedule; it reads `plan.frame(i)`. Everything that can be wrong with
the settings (a schedule, a prompt key, a sampler name, a value out of range) fails here, with a
SettingsError naming the setting and frame, before any model loads.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deforum_engine.config.frame_values import (
    BY_NAME,
    PER_FRAME_VALUES,
    TEXT_VALUES,
    unread_by,
)
from deforum_engine.config.importers.parseq import extend_to
from deforum_engine.config.settings import INFLUENCE_LEVELS, Settings
from deforum_engine.errors import SettingsError
from deforum_engine.frame.motion import (
    PerspectiveFlip,
    motion_matrix,
    perspective_matrix,
)
from deforum_engine.frame.motion3d import Lens, camera_moves
from deforum_engine.plan.control import ControlPlan, build_control_plan
from deforum_engine.plan.plan_inputs import SEED_LIMIT, PlanInputs, load_plan_inputs
from deforum_engine.plan.prompt_tracks import TextTrack, parseq_prompts, prompt_tracks
from deforum_engine.prompts.samplers import check_sampler
from deforum_engine.schedules import (
    evaluate_schedule,
    evaluate_string_schedule,
)
from deforum_engine.video.timeline import VideoPlan, video_plan

# Per-frame name -> the setting it comes from, for the values the plan evaluates as plain schedules.
NUMERIC_SCHEDULES = {value.name: value.setting for value in PER_FRAME_VALUES if value.evaluated}
INTEGER_VALUES = tuple(value.name for value in PER_FRAME_VALUES if value.integer)


def _denoise(self) -> float:
    """img2img denoising strength: Deforum's strength is how much of the frame survives."""
    return 1.0 - self.strength


# Everything one frame needs, as plain typed values: the table's numbers, then the frame's texts.
FrameValues = make_dataclass(
    "FrameValues",
    [("index", int), *[(value.name, int if value.integer else float) for value in PER_FRAME_VALUES],
     *[(name, str) for name in TEXT_VALUES],
     ("loras", tuple, field(default=())),  # ActiveLora entries (file, text-encoder weight, UNet weight)
     ],
    namespace={"denoise": property(_denoise), "__doc__": "Everything one frame needs, as plain typed values."},
    frozen=True,
)


@dataclass(frozen=True)
class Canvas:
    """The picture every frame is drawn on: its size, and what fills edges that motion uncovers."""

    width: int
    height: int
    border: str  # replicate | wrap | reflect


@dataclass(frozen=True)
class Camera3D:
    """3D mode's camera, frame by frame (frame/motion3d.py), and how the re-projection samples."""

    moves: np.ndarray  # (frames, 4, 4): how the camera moves from frame i - 1 to frame i
    fov: np.ndarray  # (frames,) field of view, degrees
    aspect: np.ndarray  # (frames,) aspect_ratio_schedule, or W / H with aspect_ratio_use_old_formula
    padding_mode: str  # border | reflection | zeros
    sampling_mode: str  # bicubic | bilinear | nearest
    depth_warping: bool  # use_depth_warping; False: the camera moves over flat depth

    def lens(self, index: int) -> Lens:
        return Lens(float(self.fov[index]), float(self.aspect[index]))


@dataclass(frozen=True)
class FramePlan:
    """Everything a render does, frame by frame, computed before the first frame.

    The loop reads only `canvas`, `motion`, `camera`, `diffused_frames` and `frame(i)`; `settings`
    (the resolved settings: seed, frame count ...) is kept for the summary, the output and `plan --json`.
    """

    settings: Settings
    canvas: Canvas
    motion: np.ndarray  # (frames, 3, 3): how frame i moves the picture of frame i - 1 (see frame/warp.py)
    values: dict[str, np.ndarray]
    strings: dict[str, TextTrack]
    diffused_frames: tuple[int, ...]
    audio: Any = None  # AudioFeatures when a soundtrack was analysed
    notes: tuple[str, ...] = field(default=())
    camera: Camera3D | None = None  # 3D mode's camera; None in 2D mode
    control: ControlPlan = field(default_factory=ControlPlan)  # ControlNet units and masks, frame by frame
    video: VideoPlan | None = None  # the clip and its frame per output frame (video/timeline.py)

    @property
    def frame_count(self) -> int:
        return int(self.settings.max_frames)

    def frame(self, index: int) -> FrameValues:
        """The values of one frame."""
        numbers = {
            name: int(array[index]) if name in INTEGER_VALUES else float(array[index])
            for name, array in self.values.items()
        }
        texts = {name: items[index] for name, items in self.strings.items()}
        return FrameValues(index=index, **numbers, **texts)

    def to_json(self) -> dict[str, Any]:
        """`{"settings": {...}, "frames": {name: [value per frame]}}` as `plan --json` prints it."""
        frames: dict[str, list] = {}
        for name, array in self.values.items():
            frames[name] = [int(v) for v in array] if name in INTEGER_VALUES else [float(v) for v in array]
        frames.update({name: list(items) for name, items in self.strings.items()})  # TextTrack -> list
        frames.update(self.control.to_json())
        if self.video is not None:
            frames.update(self.video.to_json(self.frame_count))
        return {"settings": self.settings.to_json_dict(), "frames": frames}


def build_plan(settings: Settings, base_dir: Path | None = None) -> FramePlan:
    """Read what the settings point at (seed -1, Parseq, soundtrack, LoRA files), then plan every frame."""
    return plan_frames(load_plan_inputs(settings, base_dir))


def plan_frames(inputs: PlanInputs) -> FramePlan:
    """Every frame's values from the loaded inputs. Pure: the same inputs always give the same plan."""
    settings, parseq, audio, source = inputs.settings, inputs.parseq, inputs.audio, inputs.video
    frames = int(settings.max_frames)
    variables = audio.variables(settings.bpm) if audio is not None else {}
    if settings.bpm is not None:
        variables["bpm"] = settings.bpm

    unused = _unused_by_mode(settings)
    values = {
        name: np.full(frames, BY_NAME[name].neutral) if field_name in unused else
        _evaluate(settings, name, frames, variables)
        for name, field_name in NUMERIC_SCHEDULES.items()
    }
    values["steps"] = _steps(settings, frames, variables)
    values["noise_multiplier"] = _noise_multiplier(settings, frames, variables)
    values["image_prompt_scale"] = _image_prompt_scale(settings, frames, variables)
    strings = {"sampler": _samplers(settings, frames, variables)}
    strings.update(prompt_tracks(settings, frames, variables, inputs.lora_files, parseq_prompts(parseq, frames)))
    values["blend_weight"] = strings.pop("blend_weight")
    diffused = _diffused_frames(frames, settings.diffusion_cadence)
    values["seed"] = _seeds(settings, frames, variables, diffused)
    if parseq is not None:
        _override_with_parseq(values, strings, parseq, frames)
    _check_ranges(values, skip=_read_as_deforum(values, settings))
    values = {name: np.ascontiguousarray(array) for name, array in values.items()}
    canvas = Canvas(settings.W, settings.H, settings.border)
    return FramePlan(
        settings=settings,
        canvas=canvas,
        motion=_motion(values, canvas, settings),
        values=values,
        strings=strings,
        diffused_frames=diffused,
        audio=audio,
        camera=_camera(values, settings),
        control=build_control_plan(settings, frames, variables),
        video=video_plan(settings, source),
        notes=(source.note,) if source is not None and source.note else (),
    )


def _evaluate(settings: Settings, name: str, frames: int, variables: dict) -> np.ndarray:
    """A plain schedule of the table, per frame; whole-number values truncated as Deforum's int() does."""
    setting = BY_NAME[name].setting
    array = evaluate_schedule(getattr(settings, setting), frames, seed=settings.seed, fps=settings.fps,
                              variables=variables, setting=setting, nan_fill=settings.deforum_nan_fill)
    return np.trunc(array) if BY_NAME[name].integer else array


def _motion(values: dict[str, np.ndarray], canvas: Canvas, settings: Settings) -> np.ndarray:
    """Every frame's 2D motion matrix, in one vectorised pass.

    In 3D mode the camera moves through the depth map instead; only the perspective flip (which
    Deforum applies before the 3D warp) is a 2D motion there.
    """
    flip = None
    if settings.enable_perspective_flip:
        flip = PerspectiveFlip(values["perspective_flip_theta"], values["perspective_flip_phi"],
                               values["perspective_flip_gamma"], values["perspective_flip_fv"])
    if settings.animation_mode == "3D":
        frames = len(values["zoom"])
        still = np.broadcast_to(np.eye(3), (frames, 3, 3))
        return np.ascontiguousarray(still if flip is None else perspective_matrix(canvas.width, canvas.height, flip))
    return motion_matrix(canvas.width, canvas.height, angle=values["angle"], zoom=values["zoom"],
                         translation_x=values["translation_x"], translation_y=values["translation_y"],
                         center_x=values["transform_center_x"], center_y=values["transform_center_y"],
                         perspective=flip)


def _camera(values: dict[str, np.ndarray], settings: Settings) -> Camera3D | None:
    """3D mode's per-frame camera moves (4x4, one vectorised pass) and lenses; None in 2D mode."""
    if settings.animation_mode != "3D":
        return None
    aspect = values["aspect_ratio"]
    if settings.aspect_ratio_use_old_formula:
        aspect = np.full_like(aspect, settings.W / settings.H)
    moves = camera_moves(values["translation_x"], values["translation_y"], values["translation_z"],
                         values["rotation_3d_x"], values["rotation_3d_y"], values["rotation_3d_z"])
    return Camera3D(moves=moves, fov=values["fov"], aspect=aspect, padding_mode=settings.padding_mode,
                    sampling_mode=settings.sampling_mode, depth_warping=settings.use_depth_warping)


def _unused_by_mode(settings: Settings) -> tuple[str, ...]:
    """Schedules the animation mode never reads, as in Deforum: 3D ignores the 2D zoom, angle and
    transform centre (files often hold placeholders such as zoom 0 there); 2D ignores the 3D camera.
    They are not evaluated, so a placeholder can never fail a render."""
    return tuple(value.setting for value in unread_by(settings.animation_mode))


def _diffused_frames(frames: int, cadence: int) -> tuple[int, ...]:
    """Frames that go through the backend: every cadence-th, and always the last one."""
    keys = list(range(0, frames, cadence))
    if keys[-1] != frames - 1:
        keys.append(frames - 1)
    return tuple(keys)


def _steps(settings: Settings, frames: int, variables: dict) -> np.ndarray:
    if settings.steps_schedule is None:
        return np.full(frames, float(settings.steps))
    steps = evaluate_schedule(settings.steps_schedule, frames, seed=settings.seed, fps=settings.fps,
                              variables=variables, setting="steps_schedule", nan_fill=settings.deforum_nan_fill)
    return np.trunc(steps)  # Deforum's int()


def _noise_multiplier(settings: Settings, frames: int, variables: dict) -> np.ndarray:
    """img2img starting-noise multiplier per frame (A1111's initial_noise_multiplier); 1.0 unless switched on."""
    if not settings.enable_noise_multiplier_scheduling:
        return np.ones(frames)
    return evaluate_schedule(settings.noise_multiplier_schedule, frames, seed=settings.seed, fps=settings.fps,
                             variables=variables, setting="noise_multiplier_schedule")


def _image_prompt_scale(settings: Settings, frames: int, variables: dict) -> np.ndarray:
    """Image-prompt influence per frame as an IP-Adapter scale (0 without an image prompt)."""
    if settings.image_prompt is None:
        return np.zeros(frames)
    influence = settings.image_prompt_influence
    if isinstance(influence, float):
        return np.full(frames, influence)
    if influence in INFLUENCE_LEVELS:
        return np.full(frames, INFLUENCE_LEVELS[influence])
    return evaluate_schedule(influence, frames, seed=settings.seed, fps=settings.fps, variables=variables,
                             setting="image_prompt_influence", nan_fill=settings.deforum_nan_fill)


def _samplers(settings: Settings, frames: int, variables: dict) -> TextTrack:
    if settings.sampler_schedule is None:
        return TextTrack.constant(check_sampler(settings.sampler, setting="sampler"), frames)
    names = TextTrack.from_list(evaluate_string_schedule(settings.sampler_schedule, frames, seed=settings.seed,
                                                         fps=settings.fps, variables=variables,
                                                         setting="sampler_schedule"))
    return TextTrack([check_sampler(name, setting="sampler_schedule") for name in names.table], names.codes)


def _seeds(settings: Settings, frames: int, variables: dict, diffused: tuple[int, ...]) -> np.ndarray:
    """Per-frame seeds under Deforum's seed behaviours; 'random' and -1 are reproducible from the seed.

    Deforum's next_seed runs after every diffused frame; for `iter` it adds 1 when its counter (from 0)
    is a multiple of seed_iter_N, so with N = 2 the diffused frames get s, s+1, s+1, s+2, s+2 ...
    A seed_schedule value is truncated to a whole number, as Deforum's int() does.
    """
    rng = np.random.default_rng(settings.seed)
    if settings.seed_behavior == "schedule":
        seeds = evaluate_schedule(settings.seed_schedule, frames, seed=settings.seed, fps=settings.fps,
                                  variables=variables, setting="seed_schedule", nan_fill=settings.deforum_nan_fill)
        seeds = np.trunc(seeds).astype(np.int64)  # Deforum's int()
        random_seeds = rng.integers(0, SEED_LIMIT, size=frames)
        return np.where(seeds == -1, random_seeds, seeds) % SEED_LIMIT
    ordinal = np.arange(len(diffused))
    base, every = settings.seed, settings.seed_iter_N
    behaviour = {
        "iter": lambda k: base + (k + every - 1) // every,  # +1 after diffused frames 0, N, 2N ...
        "fixed": lambda k: np.full_like(k, base),
        "random": lambda k: np.concatenate([[base], rng.integers(0, SEED_LIMIT, size=len(k) - 1)]),
        "ladder": lambda k: base + k // 2 + 2 * (k % 2),  # +2, -1, +2, -1 ...
        "alternate": lambda k: base + k % 2,  # +1, -1, +1 ...
    }[settings.seed_behavior]
    per_diffused = np.asarray(behaviour(ordinal), dtype=np.int64) % SEED_LIMIT
    # Frames between diffused frames carry the seed of the diffused frame before them.
    owner = np.arange(frames) // settings.diffusion_cadence
    owner[-1] = len(diffused) - 1
    return per_diffused[owner]


class DeforumReadingWarning(UserWarning):
    """A value outside the engine's range read the way Deforum reads it."""


def _read_as_deforum(values: dict[str, np.ndarray], settings: Settings) -> tuple[str, ...]:
    """Values outside the engine's ranges that Deforum reads; returns the names the range check leaves
    alone. perspective_flip_fv is not checked while the flip is off (nothing reads it). In files read
    the Deforum way (`deforum_nan_fill`, which imported Deforum files get), each with a warning: a
    strength below 0 or above 1 is clamped per frame (in place), as Deforum clamps it, and with the
    flip on a field of view outside (0, 180] goes through Deforum's camera formula as it is (a
    negative one turns the tilt and pan the other way); only one whose half has no sine (0, 360 ...)
    cannot be read."""
    skip = () if settings.enable_perspective_flip else ("perspective_flip_fv",)
    if not settings.deforum_nan_fill:  # the engine's own files keep the range checks' errors
        return skip
    strength = values["strength"]
    outside = (strength < 0) | (strength > 1)
    if outside.any():
        frames = np.flatnonzero(outside)
        warnings.warn(f"strength_schedule: {len(frames)} frame(s) from frame {frames[0]} are outside [0, 1] "
                      f"({strength[frames[0]]:g} there): clamped to [0, 1] as Deforum does", DeforumReadingWarning,
                      stacklevel=3)
        values["strength"] = np.clip(strength, 0.0, 1.0)
    if skip:
        return skip
    fv = values["perspective_flip_fv"]
    undefined = np.isclose(np.sin(np.deg2rad(fv) / 2.0), 0.0, atol=1e-12)
    if undefined.any():
        frame = int(np.argmax(undefined))
        raise SettingsError(f"perspective_flip_fv: frame {frame} has value {fv[frame]:g}: a field of view of 0 (or "
                            f"a multiple of 360) degrees puts the camera at no distance; keep it away from 0")
    outside = (fv <= 0) | (fv > 180)
    if outside.any():
        frame = int(np.argmax(outside))
        warnings.warn(f"perspective_flip_fv: {int(outside.sum())} frame(s) from frame {frame} are outside (0, 180] "
                      f"({fv[frame]:g} there): read through Deforum's camera formula as they are (a negative field "
                      f"of view turns the tilt and pan the other way)", DeforumReadingWarning, stacklevel=3)
    return ("perspective_flip_fv",)


def _check_ranges(values: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> None:
    for value in PER_FRAME_VALUES:
        name, low, high, inclusive = value.name, value.low, value.high, value.low_inclusive
        if low is None or name in skip:
            continue
        array = values[name]
        bad_low = array < low if inclusive else array <= low
        bad = bad_low | (array > high) if high is not None else bad_low
        if bad.any():
            frame = int(np.argmax(bad))
            bounds = f"{'>=' if inclusive else '>'} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            setting = value.setting
            raise SettingsError(f"{setting}: frame {frame} has value {array[frame]:g}; it must be {bounds}")


def _override_with_parseq(values: dict, strings: dict, parseq, frames: int) -> None:
    """Fields Parseq manages replace the settings' own; the rest fall back to the settings.

    Past Parseq's last frame its last value repeats."""
    for name, array in parseq.values.items():
        if name in values:
            extended = np.asarray(extend_to(np.asarray(array, dtype=np.float64), frames))
            values[name] = np.trunc(extended) if name in INTEGER_VALUES else extended  # Deforum's int()
    if "sampler" in parseq.strings:  # the prompts were read from Parseq with the settings' prompts (prompt_tracks)
        strings["sampler"] = TextTrack.from_list(extend_to(list(parseq.strings["sampler"]), frames))
