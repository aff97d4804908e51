"""The ControlNet units' and the masks' per-frame values, computed once for the plan.

Each enabled unit's weight and guidance window become per-frame arrays; the mask schedules become a
parsed expression per frame (a few distinct ones, each parsed once). Every problem is a SettingsError
naming the setting and frame, before any model loads.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.schedules import evaluate_schedule, evaluate_string_schedule
from deforum_engine.schedules.mask_expressions import Node, parse_mask_expression
from deforum_engine.config.control_units import ControlUnit, read_units

WEIGHT_RANGE = (0.0, 2.0)  # the ControlNet extension's weight slider


class WordMaskWarning(UserWarning):
    """A mask expression names a word mask (<words>), which needs a segmentation model download."""


@dataclass(frozen=True)
class UnitTrack:
    """One enabled unit and its weight and guidance window at every frame."""

    unit: ControlUnit
    weight: np.ndarray
    guidance_start: np.ndarray
    guidance_end: np.ndarray

    def active(self, index: int) -> bool:
        """Whether the unit acts on frame `index`: a weight above 0 and a window of some width."""
        return bool(self.weight[index] > 0 and self.guidance_start[index] < self.guidance_end[index])


@dataclass(frozen=True)
class MaskTrack:
    """A mask schedule: the distinct expressions (text and parsed) and each frame's index among them."""

    texts: tuple[str, ...]
    trees: tuple[Node, ...]
    codes: np.ndarray

    def at(self, index: int) -> Node:
        return self.trees[self.codes[index]]

    def text(self, index: int) -> str:
        return self.texts[self.codes[index]]

    def leaves(self) -> list[Node]:
        return [leaf for tree in self.trees for leaf in tree.leaves()]


@dataclass(frozen=True)
class ControlPlan:
    """The units and masks of a render, frame by frame (`FramePlan.control`)."""

    units: tuple[UnitTrack, ...] = ()
    mask: MaskTrack | None = None  # use_mask: where frames are repainted
    noise_mask: MaskTrack | None = None  # where the noise goes: noise_mask_schedule, or the mask's

    def to_json(self) -> dict[str, list]:
        """Per-frame values for `plan --json`: each unit's weight and window, the mask expressions."""
        frames: dict[str, list] = {}
        for track in self.units:
            for key in ("weight", "guidance_start", "guidance_end"):
                frames[track.unit.setting(key)] = [float(v) for v in getattr(track, key)]
        for name, track in (("mask_schedule", self.mask), ("noise_mask_schedule", self.noise_mask)):
            if track is not None:
                frames[name] = [track.texts[code] for code in track.codes]
        return frames

    @property
    def empty(self) -> bool:
        return not self.units and self.mask is None and self.noise_mask is None


def build_control_plan(settings: Any, frames: int, variables: dict) -> ControlPlan:
    """Evaluate the enabled units' schedules and the mask schedules over every frame."""
    units = read_units(settings.model_dump())
    tracks = tuple(_unit_track(unit, settings, frames, variables) for unit in units)
    mask = _mask_track(settings.mask_schedule, "mask_schedule", settings, frames) if settings.use_mask else None
    noise = None
    if settings.use_noise_mask:
        noise = _mask_track(settings.noise_mask_schedule, "noise_mask_schedule", settings, frames)
    elif mask is not None:
        noise = mask  # Deforum: without use_noise_mask the mask decides where the noise goes too
    return ControlPlan(units=tracks, mask=mask, noise_mask=noise)


def _unit_track(unit: ControlUnit, settings: Any, frames: int, variables: dict) -> UnitTrack:
    arrays = {}
    for key, (low, high) in (("weight", WEIGHT_RANGE), ("guidance_start", (0.0, 1.0)), ("guidance_end", (0.0, 1.0))):
        setting = unit.setting(key)
        values = evaluate_schedule(getattr(unit, key), frames, seed=settings.seed, fps=settings.fps,
                                   variables=variables, setting=setting, nan_fill=settings.deforum_nan_fill)
        bad = (values < low) | (values > high)
        if bad.any():
            frame = int(np.argmax(bad))
            raise SettingsError(f"{setting}: frame {frame} has value {values[frame]:g}; it must be in "
                                f"{low:g} .. {high:g}")
        arrays[key] = values
    return UnitTrack(unit=unit, **arrays)


def _mask_track(schedule: str, setting: str, settings: Any, frames: int) -> MaskTrack:
    texts = evaluate_string_schedule(schedule, frames, seed=settings.seed, fps=settings.fps, setting=setting)
    table = list(dict.fromkeys(texts))
    lookup = {text: code for code, text in enumerate(table)}
    trees = tuple(parse_mask_expression(text, setting) for text in table)
    for tree in trees:
        words = [leaf.text for leaf in tree.leaves() if leaf.kind == "words"]
        if words:
            warnings.warn(f"{setting}: word masks ({', '.join(f'<{w}>' for w in words)}) need a segmentation model "
                          "(CLIPSeg) downloaded at run time, which this engine does not do; each is taken as "
                          "{everywhere} (all white)", WordMaskWarning, stacklevel=2)
    codes = np.fromiter((lookup[text] for text in texts), dtype=np.int32, count=frames)
    return MaskTrack(texts=tuple(table), trees=trees, codes=codes)
