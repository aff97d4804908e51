"""ControlNet units and masks in the frame loop: checked up front, then one `Guide` the loop asks per frame.

`check_guidance` runs with the other input checks, before any model loads: every unit's model
(present, offline included, and of the render model's family), its picture or video (long enough),
the mask picture or video, the init image's alpha for {init_mask}, and the pictures a mask
expression names. The `Guide` then gives the loop, per diffused frame,
- the ControlNet units acting on it (`extras`): each unit's control map from its picture, its video's
  frame, the previous output frame (loopback) or the depth the loop already has (depth modules);
- the inpainting mask (`extras`), and after the backend the mask's joins (`finish`): the prepared
  frame pasted back outside the mask through mask_overlay_blur, then overlay_mask over the init image;
- the noise mask (`noise_mask`) and the overlay of in-between frames (`overlay`).
A render without units or masks gets `NO_GUIDE`, whose steps do nothing.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deforum_engine.backends.base import ControlInput
from deforum_engine.config.control_units import UNIT_DEFAULTS
from deforum_engine.control import masks
from deforum_engine.control.preprocess import control_map
from deforum_engine.control.sources import FrameSource, check_source, fitted
from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import check_image_file, load_image
from deforum_engine.models import controlnet as controlnets
from deforum_engine.models.depth import depth_image
from deforum_engine.plan.control import MaskTrack, UnitTrack
from deforum_engine.plan.frame_plan import FramePlan
from deforum_engine.schedules.mask_expressions import Node, evaluate_mask


@dataclass(frozen=True, eq=False)
class MaskPictures:
    """The pictures mask expressions name, at the render size: {video_mask} per frame, the rest fixed."""

    width: int
    height: int
    fit: str
    brightness: float
    contrast: float
    video: FrameSource | None = None  # mask_file: a picture or a video
    init_alpha: np.ndarray | None = None  # {init_mask}: the init image's alpha (bool)
    files: dict[str, np.ndarray] = field(default_factory=dict)  # [path] masks (bool)

    def grey(self, picture: np.ndarray, setting: str, path: Path) -> np.ndarray:
        """A mask picture fitted, greyed and adjusted (mask_brightness_adjust, mask_contrast_adjust)."""
        picture, _ = fitted(picture, self.width, self.height, self.fit, setting, path)
        return masks.adjust_mask(masks.to_grey(picture), self.brightness, self.contrast)

    def leaf(self, node: Node, index: int) -> np.ndarray:
        if node.kind == "name" and node.text == "video_mask":
            return masks.binary(self.grey(self.video.frame(index), "mask_file", self.video.path))
        if node.kind == "name" and node.text == "init_mask":
            return self.init_alpha
        if node.kind == "file":
            return self.files[node.text]
        return np.ones((self.height, self.width), dtype=bool)  # {everywhere}, and word masks (warned about)


@dataclass(frozen=True, eq=False)
class Guide:
    """A render's ControlNet units and masks, asked by the loop frame by frame."""

    units: tuple[UnitTrack, ...] = ()
    sources: dict[str, FrameSource] = field(default_factory=dict)  # unit name -> its picture or video
    models: dict[str, str] = field(default_factory=dict)  # unit name -> resolved ControlNet source
    mask: MaskTrack | None = None
    noise: MaskTrack | None = None
    pictures: MaskPictures | None = None
    invert: bool = False
    blur: float = 0.0
    original: np.ndarray | None = None  # overlay_mask's picture: the init image (None: no overlay)
    init: np.ndarray | None = None
    depth_of: Callable[[np.ndarray], np.ndarray] | None = None  # a picture's depth (z), for depth modules
    size: tuple[int, int] = (0, 0)  # the render's height, width
    # The last frames' masks: a frame's mask is asked for its request, its noise and its overlay, and the
    # in-betweens' overlays ask again (from the cadence thread: a miss only recomputes).
    _masks: dict = field(default_factory=dict, repr=False)

    @property
    def controlnets(self) -> tuple:
        """(setting, source) of each unit's ControlNet, for the backend to load once."""
        return tuple((f"{name}_model", source) for name, source in self.models.items())

    def extras(self, index: int, prepared: np.ndarray | None, previous: Any = None) -> dict[str, Any]:
        """The frame request's units and mask. `previous`: the last diffused frame (loop.Key), None at frame 0."""
        extras: dict[str, Any] = {}
        control = tuple(unit for unit in (self._unit_input(track, index, previous) for track in self.units) if unit)
        if control:
            extras["control"] = control
        if self.mask is not None and prepared is not None:
            extras["mask"] = self.frame_mask(self.mask, index)
        return extras

    def frame_mask(self, track: MaskTrack, index: int) -> np.ndarray:
        """A mask expression's result at `index`, inverted with invert_mask (True = repaint); read-only."""
        key = (id(track), index)
        mask = self._masks.get(key)
        if mask is None:
            mask = evaluate_mask(track.at(index), lambda leaf: self.pictures.leaf(leaf, index))
            mask = ~mask if self.invert else mask
            mask.flags.writeable = False
            if len(self._masks) >= 16:
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def noise_mask(self, index: int) -> np.ndarray | None:
        return None if self.noise is None else self.frame_mask(self.noise, index)

    def finish(self, generated: np.ndarray, prepared: np.ndarray | None, request_mask: np.ndarray | None,
               index: int) -> np.ndarray:
        """After the backend: the prepared frame outside the mask, then the overlay over the init image."""
        if request_mask is not None:
            generated = masks.inpaint_composite(generated, prepared, request_mask, self.blur)
        return self.overlay(generated, index)

    def overlay(self, image: np.ndarray, index: int) -> np.ndarray:
        """overlay_mask: the frame where the mask is white, the init image where it is black."""
        if self.original is None or self.mask is None:
            return image
        return masks.overlay(image, self.original, self.frame_mask(self.mask, index))

    def _unit_input(self, track: UnitTrack, index: int, previous: Any) -> ControlInput | None:
        if not track.active(index):
            return None
        picture = self._unit_picture(track, index, previous)
        if picture is None:
            return None  # loopback / depth at frame 0 without an init image: the unit sits it out, as in Deforum
        unit = track.unit
        height, width = self.size
        return ControlInput(unit=unit.name, model=self.models[unit.name], image=control_map(unit, picture, width, height),
                            weight=float(track.weight[index]), guidance_start=float(track.guidance_start[index]),
                            guidance_end=float(track.guidance_end[index]), control_mode=unit.control_mode)

    def _unit_picture(self, track: UnitTrack, index: int, previous: Any) -> np.ndarray | None:
        """The unit's input: its picture or video frame, or the previous output (loopback); as a depth
        picture for depth modules. None: the unit sits this frame out."""
        unit = track.unit
        if unit.loopback_mode:
            picture = self.init if previous is None else previous.image
        elif unit.vid_path:
            picture = self.sources[unit.name].frame(index)
        else:
            return self._frame_depth(previous)  # a depth module on the frame itself
        if picture is None or unit.module != "depth":
            return picture
        return depth_image(self._depth(picture), *picture.shape[:2])

    def _frame_depth(self, previous: Any) -> np.ndarray | None:
        """The frame's own depth: the depth the loop already has for the last output (never estimated
        twice), or the init image's at frame 0 (none without an init image)."""
        if previous is None:
            return None if self.init is None else depth_image(self._depth(self.init), *self.init.shape[:2])
        z = previous.depth if previous.depth is not None else self._depth(previous.image)
        return depth_image(z, *previous.image.shape[:2])

    def _depth(self, picture: np.ndarray) -> np.ndarray:
        if self.depth_of is None:
            raise SettingsError("a ControlNet depth module needs the depth model, which this render did not load")
        return self.depth_of(picture)


NO_GUIDE = Guide()


def check_guidance(plan: FramePlan, init: np.ndarray | None, with_models: bool = True) -> Guide:
    """Every ControlNet unit and mask input checked (before any model loads); the render's Guide.
    Without `with_models` (motion previews) the units' models are not looked for."""
    control, settings = plan.control, plan.settings
    if control.empty:
        return NO_GUIDE
    frames, width, height = plan.frame_count, plan.canvas.width, plan.canvas.height
    models, sources = {}, {}
    model_width = controlnets.render_model_width(settings.model, settings.model_config_dir) if with_models else None
    for track in control.units:
        unit = track.unit
        source = unit.model
        if with_models:
            source = controlnets.resolve_controlnet(unit.model, unit.setting("model"))
            controlnets.check_family(controlnets.controlnet_width(source, unit.setting("model")), model_width,
                                     unit.setting("model"), source, settings.model or "the default model")
        models[unit.name] = source
        if unit.vid_path and not unit.loopback_mode:
            check_source(Path(unit.vid_path), unit.setting("vid_path"), frames)
            sources[unit.name] = FrameSource(unit.vid_path, unit.setting("vid_path"))
        _warn_ignored(settings, unit)
    pictures = None
    if control.mask is not None or control.noise_mask is not None:
        pictures = _mask_pictures(plan, frames, width, height)
    return Guide(units=control.units, sources=sources, models=models, mask=control.mask, noise=control.noise_mask,
                 pictures=pictures, invert=settings.invert_mask, blur=float(settings.mask_overlay_blur), init=init,
                 original=init if settings.overlay_mask and control.mask is not None else None, size=(height, width))


def _mask_pictures(plan: FramePlan, frames: int, width: int, height: int) -> MaskPictures:
    settings, control = plan.settings, plan.control
    leaves = [leaf for track in (control.mask, control.noise_mask) if track is not None for leaf in track.leaves()]
    names = {leaf.text for leaf in leaves if leaf.kind == "name"}
    base = MaskPictures(width, height, settings.init_fit, settings.mask_brightness_adjust, settings.mask_contrast_adjust)
    video = None
    if "video_mask" in names:
        if settings.mask_file is None:
            raise SettingsError("mask_file: the mask schedule uses {video_mask} but no mask_file is set; "
                                "give a mask picture or video")
        check_source(settings.mask_file, "mask_file", frames)
        video = FrameSource(settings.mask_file, "mask_file")
        _note_fit(video.frame(0), base, "mask_file", settings.mask_file)
    alpha = _init_alpha(settings) if "init_mask" in names else None
    files = {}
    for leaf in leaves:
        if leaf.kind == "file" and leaf.text not in files:
            path = check_image_file(leaf.text, role="mask_schedule")
            picture = load_image(path)
            _note_fit(picture, base, "mask_schedule", path)
            files[leaf.text] = masks.binary(base.grey(picture, "mask_schedule", path))
    return MaskPictures(width, height, settings.init_fit, settings.mask_brightness_adjust,
                        settings.mask_contrast_adjust, video=video, init_alpha=alpha, files=files)


def _note_fit(picture: np.ndarray, base: MaskPictures, setting: str, path: Path) -> None:
    """Say once when a mask picture is not the render's size (it is fitted as init_fit says)."""
    _, note = fitted(picture, base.width, base.height, base.fit, setting, Path(path))
    if note:
        print(f"note: {note}", file=sys.stderr)


def _init_alpha(settings) -> np.ndarray:
    """{init_mask}: the init image's alpha channel, fitted, as booleans."""
    from PIL import Image

    if settings.init_image is None:
        raise SettingsError("mask_schedule: {init_mask} is the init image's transparency, but no init_image is set")
    with Image.open(settings.init_image) as picture:
        rgba = np.asarray(picture.convert("RGBA"))
    alpha = masks.alpha_mask(rgba)
    if alpha is None:
        raise SettingsError(f"mask_schedule: {{init_mask}} is the init image's transparency, but {settings.init_image} "
                            "has none (its alpha channel is uniform)")
    grey, _ = fitted(np.repeat(alpha[:, :, None], 3, axis=2), settings.W, settings.H, settings.init_fit, "init_image",
                     Path(settings.init_image))
    return masks.binary(grey[:, :, 0])


def _warn_ignored(settings, unit) -> None:
    """Unit settings read and not used say so."""
    reasons = {"mask_vid_path": "Deforum's own UI marks it as not working",
               "low_vram": "diffusers manages memory itself",
               "overwrite_frames": "videos are streamed, never unpacked to frames that could be kept"}
    for key, reason in reasons.items():
        if getattr(settings, unit.setting(key)) != UNIT_DEFAULTS[key]:
            print(f"warning: {unit.setting(key)} is ignored ({reason})", file=sys.stderr)
