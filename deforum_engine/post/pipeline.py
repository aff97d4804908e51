"""After a render's video is written: the seamless loop, upscaling, then interpolation (Deforum's order).

    1. seamless loop: `<name>.mp4` is made again with the last frames dissolving to frame 0
    2. upscaling (r_upscale_video): `<name>_Upscaled_x2.mp4`, frames in `upscaled_frames_x2/`
    3. interpolation (frame_interpolation_engine RIFE): `<name>_RIFE_x2.mp4`, from the upscaled
       frames with frame_interpolation_use_upscaled (then `<name>_RIFE_x2_upscaled.mp4`)

The raw frames in `frames/` are never changed, so any step can be made again (`deforum-engine
interpolate` / `upscale` on the folder). Each model loads once per process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from deforum_engine.models.loading import resolve_device
from deforum_engine.output import RenderFolder
from deforum_engine.post.frames import FrameSink, open_source
from deforum_engine.post.interpolate import Interpolation, interpolate_source
from deforum_engine.post.loop import choose_loop_frames
from deforum_engine.post.rife import DEFAULT_RIFE_MODEL, load_rife, resolve_weights
from deforum_engine.post.upscale import Upscaling, parse_factor, upscale_source
from deforum_engine.post.upscalers import load_upscaler, resolve_upscaler

if TYPE_CHECKING:
    from deforum_engine.config.settings import Settings

log = logging.getLogger(__name__)


def wants_post(settings: Settings) -> bool:
    return settings.seamless_loop or settings.r_upscale_video or settings.frame_interpolation_engine == "RIFE"


def check_post(settings: Settings) -> None:
    """Find the weights that post-processing will need (SettingsError / RenderError now, not after the render)."""
    if settings.r_upscale_video:
        resolve_upscaler(settings.r_upscale_model)
    if settings.frame_interpolation_engine == "RIFE":
        resolve_weights(settings.rife_model or DEFAULT_RIFE_MODEL, "rife_model")


def post_process(folder: str | os.PathLike, settings: Settings, device: str | None = None) -> list[Path]:
    """Every product that `settings` asks for, made from the render folder; returns the new videos."""
    folder, device = Path(folder), device or resolve_device(settings.device)
    made: list[Path] = []
    loop_frames = make_loop(folder, settings) if settings.seamless_loop else 0
    upscaled_frames = None
    if settings.r_upscale_video:
        job = Upscaling(parse_factor(settings.r_upscale_factor), keep_frames=settings.r_upscale_keep_imgs)
        source = open_source(folder, loop_frames=loop_frames)
        made.append(upscale_source(source, job, load_upscaler(settings.r_upscale_model, device), device))
        upscaled_frames = job.frames_dir(source) if settings.r_upscale_keep_imgs else None
    if settings.frame_interpolation_engine == "RIFE":
        made.append(_interpolate(folder, settings, loop_frames, upscaled_frames, device))
    return made


def _interpolate(folder: Path, settings: Settings, loop_frames: int, upscaled_frames: Path | None,
                 device: str) -> Path:
    use_upscaled = settings.frame_interpolation_use_upscaled and upscaled_frames is not None
    if settings.frame_interpolation_use_upscaled and not use_upscaled:
        log.warning("frame_interpolation_use_upscaled: no upscaled frames were kept (r_upscale_video and "
                    "r_upscale_keep_imgs are needed, as in Deforum); interpolating the rendered frames")
    source = (open_source(folder, frames_dir=upscaled_frames) if use_upscaled
              else open_source(folder, loop_frames=loop_frames))
    job = Interpolation(settings.frame_interpolation_x_amount,
                        settings.frame_interpolation_slow_mo_amount if settings.frame_interpolation_slow_mo_enabled
                        else None, settings.frame_interpolation_keep_imgs, "_upscaled" if use_upscaled else "",
                        loop=settings.seamless_loop)
    net = load_rife(settings.rife_model or DEFAULT_RIFE_MODEL, device)
    return interpolate_source(source, job, net, device)


def make_loop(folder: Path, settings: Settings) -> int:
    """Write `<name>.mp4` again as a seamless loop; returns how many frames dissolve to frame 0."""
    raw = open_source(folder)
    length = settings.seamless_loop_frames or choose_loop_frames(raw.frames, raw.count)
    length = min(length, raw.count - 1)
    source = open_source(folder, loop_frames=length)
    with FrameSink(source.product(""), (source.width, source.height), source.fps, source.count, source.audio,
                   None, source.crf, source.preset) as sink:
        for frame in source.frames():
            sink.write(frame)
    return length



def _loop_of(path: Path) -> tuple[int, bool]:
    """A render folder's loop (frames that dissolve to frame 0, and whether it loops); none for a video."""
    if not path.is_dir():
        return 0, False
    settings = RenderFolder(path).saved_settings()
    if not settings.seamless_loop:
        return 0, False
    raw = open_source(path)
    return settings.seamless_loop_frames or choose_loop_frames(raw.frames, raw.count), True


def interpolate_path(path: str | os.PathLike, x: int = 2, slow_mo: int | None = None, keep_frames: bool = False,
                     model: str | None = None, device: str | None = None) -> Path:
    """`deforum-engine interpolate`: a render folder (its raw frames, its loop) or any video, X times the frames."""
    path = Path(path).expanduser()
    job = Interpolation(x, slow_mo, keep_frames)
    source = open_source(path)
    loop_frames, loops = _loop_of(path)
    if loops:
        source, job = open_source(path, loop_frames=loop_frames), Interpolation(x, slow_mo, keep_frames, loop=True)
    resolve_weights(model or DEFAULT_RIFE_MODEL, "--model")
    device = device or resolve_device(None)
    return interpolate_source(source, job, load_rife(model or DEFAULT_RIFE_MODEL, device, "--model"), device)


def upscale_path(path: str | os.PathLike, factor: str | int = "x2", model: str = "realesr-animevideov3",
                 keep_frames: bool = False, device: str | None = None) -> Path:
    """`deforum-engine upscale`: a render folder (its raw frames, its loop) or any video, `factor` times larger."""
    path = Path(path).expanduser()
    job = Upscaling(parse_factor(factor), keep_frames=keep_frames)
    source = open_source(path, loop_frames=_loop_of(path)[0])
    resolve_upscaler(model)
    device = device or resolve_device(None)
    return upscale_source(source, job, load_upscaler(model, device), device)
