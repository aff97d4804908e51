"""`render()` and `resume()`: the recipe of a render, step by step.

    1. check every input (settings, schedules, images, soundtrack)    inputs.check_inputs
    2. load the model and set it up for this render; the depth model    backends.make_backend,
       too when the render uses one (checked first: offline, missing)   depth.load_depth_estimator
    3. open the folder: record the settings, or read the saved state    output.RenderFolder
    4. say what will happen                                             summary.describe_plan
    5. the frame loop: frame 0 or the saved state, then every           loop.start_or_resume,
       diffused frame with the cadence frames before it                 loop.FrameLoop.run
    6. the video: streamed while rendering; rebuilt for a resumed one   output.VideoWriter / encode_folder
    7. after the video: loop, upscaling, interpolation (when asked)      post.pipeline.post_process

Nothing is written before steps 1 and 2 have passed, so bad input or a model that will not load
leaves no folder behind; from step 5 on, every frame lands atomically and a render stopped at any
moment resumes with the same frames.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deforum_engine.backends import make_backend
from deforum_engine.backends.base import Backend, RenderContext
from deforum_engine.config.settings import Settings, save_settings
from deforum_engine.errors import RenderCancelled, SettingsError
from deforum_engine.models.depth import (
    DepthEstimator,
    depth_choice,
    load_depth_estimator,
)
from deforum_engine.rendering.guidance import Guide
from deforum_engine.output.folder import RenderFolder, default_folder
from deforum_engine.output.resume import ResumeState, load_resume_state
from deforum_engine.output.video import VideoWriter, encode_folder
from deforum_engine.output.writer import FrameWriter
from deforum_engine.plan.frame_plan import FramePlan
from deforum_engine.post.pipeline import check_post, post_process, wants_post
from deforum_engine.post.srt import check_gen_info, write_gen_info
from deforum_engine.rendering.inputs import RenderInputs, check_inputs
from deforum_engine.rendering.loop import DepthSteps, FrameLoop, start_or_resume
from deforum_engine.rendering.summary import describe_plan
from deforum_engine.rendering.video_steps import VideoSteps, needs_depth

FrameCallback = Callable[[int, np.ndarray], "np.ndarray | None"]
PhaseCallback = Callable[[str], None]  # "preparing", "generating", "post_processing", each when that work starts


@dataclass(frozen=True)
class RenderResult:
    """Where a render's frames and video are."""

    folder: Path
    frames_dir: Path
    video: Path | None
    frames: int
    seconds: float
    resumed: bool
    preview: bool
    extra_videos: tuple[Path, ...] = ()  # upscaled / interpolated videos beside the main one
    srt: Path | None = None  # Deforum's gen-info subtitles, when the settings ask for them


def render(
    settings: Settings,
    out: str | Path | None = None,
    *,
    preview: bool = False,
    backend: Backend | None = None,
    on_frame: FrameCallback | None = None,
    quiet: bool = False,
    cancel: threading.Event | None = None,
    on_phase: PhaseCallback | None = None,
) -> RenderResult:
    """Render `settings` into `out` (default `renders/<name>-<time>/`): PNG frames, settings, video.

    `on_frame(index, image)` is called for every finished frame, in frame order (from a worker
    thread for most frames); it may return a replacement image for the stored frame and video
    (post-processing), or None. Setting `cancel` (from any thread) stops the render before its
    next diffused frame with RenderCancelled; the folder then resumes like any stopped render.
    `on_phase(name)` is told when checking and loading ("preparing"), the frames ("generating") and
    finishing the video ("post_processing") start.
    """
    folder = RenderFolder(Path(out)) if out is not None else default_folder(settings.name, preview)
    return _render(settings, folder, backend, preview, resuming=False, on_frame=on_frame, quiet=quiet,
                   cancel=cancel, on_phase=on_phase)


def resume(
    folder: str | Path,
    *,
    backend: Backend | None = None,
    on_frame: FrameCallback | None = None,
    quiet: bool = False,
    cancel: threading.Event | None = None,
    on_phase: PhaseCallback | None = None,
) -> RenderResult:
    """Continue a stopped render from its folder; the frames equal those of an uninterrupted run."""
    render_folder = RenderFolder(Path(folder))
    info, settings = render_folder.read()
    if info.get("status") == "finished":
        raise SettingsError(
            f"{render_folder.root}: this render is already finished; "
            f"`deforum-engine encode {render_folder.root}` rebuilds its video"
        )
    return _render(settings, render_folder, backend, bool(info.get("preview")), resuming=True,
                   on_frame=on_frame, quiet=quiet, cancel=cancel, on_phase=on_phase)


def render_or_resume(settings: Settings, out: str | Path, *, preview: bool = False, backend: Backend | None = None,
                     **hooks) -> tuple[str, RenderResult | None]:
    """What a queued job does with its folder, for the batch runner and the studio alike: a finished
    render is skipped ("skipped", None), a stopped one resumed ("resumed"), anything else rendered from
    `settings` ("rendered"). `hooks` are render()'s on_frame, quiet, cancel and on_phase."""
    status = RenderFolder(Path(out)).status()
    if status == "finished":
        return "skipped", None
    if status is not None:
        return "resumed", resume(out, backend=backend, **hooks)
    return "rendered", render(settings, out=out, preview=preview, backend=backend, **hooks)


def _render(settings: Settings, folder: RenderFolder, backend: Backend | None, preview: bool, *, resuming: bool,
            on_frame: FrameCallback | None, quiet: bool, cancel: threading.Event | None,
            on_phase: PhaseCallback | None = None) -> RenderResult:
    started = time.perf_counter()
    phase = on_phase or (lambda name: None)
    phase("preparing")
    # 1. Check every input, before any model loads.
    inputs = check_inputs(settings, with_models=not preview)
    plan = inputs.plan
    check_post(plan.settings)  # the interpolation / upscaling weights are found before anything renders
    check_gen_info(plan)  # every schedule the gen-info .srt reports reads
    # 2. Load the model and set it up for this render (pipeline, image-prompt adapter and embedding),
    #    and the depth model when the render uses one (not for motion previews: they use flat depth).
    backend = backend or make_backend(plan.settings, preview)
    inputs = _for_backend(inputs, backend)
    backend.begin(_render_context(plan, inputs.guide))
    depth = _depth_model(plan, backend)
    if depth is not None and inputs.guide.units:  # depth modules see pictures through the render's depth model
        depth_of = lambda image: depth.estimate(image, None)[0]  # noqa: E731
        inputs = dataclasses.replace(inputs, guide=dataclasses.replace(inputs.guide, depth_of=depth_of))
    # 3. Open the folder: a new render records its resolved settings, a stopped one gives its state.
    state = _open_folder(folder, plan, backend, resuming)
    # 4. Say what will happen.
    if not quiet:
        print(describe_plan(plan, backend, depth.choice if depth is not None else None), file=sys.stderr)
        print(f"Output: {folder.root}", file=sys.stderr)
    # 5. The frame loop, from frame 0 or from the saved state.
    phase("generating")
    _run_loop(inputs, backend, depth, folder, state, on_frame, quiet, cancel, phase)
    # 6. The video was streamed while rendering; a resumed render's stream was cut by the stop,
    #    so its video is rebuilt from the frames.
    if state is not None:
        encode_folder(folder, plan.settings.fps, plan.settings.crf, plan.settings.video_preset,
                      audio_path=_soundtrack(plan), frame_count=plan.frame_count)
    # 7. After the video: the seamless loop, upscaling, interpolation, from the raw frames (kept).
    extra = tuple(post_process(folder.root, plan.settings)) if wants_post(plan.settings) else ()
    srt = write_gen_info(folder, plan)
    folder.update_info(status="finished")
    return RenderResult(folder.root, folder.frames_dir, folder.video_path, plan.frame_count,
                        time.perf_counter() - started, state is not None, backend.is_preview, extra, srt)


def _render_context(plan: FramePlan, guide: Guide) -> RenderContext:
    """What a backend sets up once per render."""
    settings = plan.settings
    return RenderContext(plan.canvas.width, plan.canvas.height, settings.image_prompt, settings.image_prompt_mode,
                         controlnets=guide.controlnets)


def _for_backend(inputs: RenderInputs, backend: Backend) -> RenderInputs:
    """Motion previews have no model for ControlNet units: the units are left out (masks stay)."""
    if not backend.is_preview or not inputs.guide.units:
        return inputs
    return dataclasses.replace(inputs, guide=dataclasses.replace(inputs.guide, units=(), models={}))


def _depth_model(plan: FramePlan, backend: Backend) -> DepthEstimator | None:
    """The depth model(s) a render uses (3D depth warping, or saved depth maps as in Deforum), once per
    process, on the render's device and dtype; none for motion previews, which warp over flat depth."""
    settings = plan.settings
    depth_units = any(track.unit.module == "depth" for track in plan.control.units)
    wanted = (plan.camera is not None and plan.camera.depth_warping) or settings.save_depth_maps or depth_units \
        or needs_depth(settings)
    if not wanted or backend.is_preview:
        return None
    return load_depth_estimator(depth_choice(settings), device=settings.device, dtype=settings.dtype)


def _open_folder(folder: RenderFolder, plan: FramePlan, backend: Backend, resuming: bool) -> ResumeState | None:
    """A stopped render's saved state (None if it stopped before saving one); for a new render, the
    folder made writable, with the resolved settings (seed included) and its status, and None."""
    if resuming:
        return load_resume_state(folder)
    folder.ensure_writable()
    save_settings(plan.settings, folder.settings_path)
    folder.update_info(backend=backend.name, preview=backend.is_preview, status="rendering",
                       frames=plan.frame_count, model=plan.settings.model)
    return None


def _soundtrack(plan: FramePlan) -> Path | None:
    return plan.settings.soundtrack_path if plan.settings.add_soundtrack else None


def _new_video(folder: RenderFolder, plan: FramePlan) -> VideoWriter:
    """The H.264 stream the frames go to as they are made, soundtrack muxed in."""
    settings = plan.settings
    return VideoWriter(folder.video_path, plan.canvas.width, plan.canvas.height, settings.fps, crf=settings.crf,
                       preset=settings.video_preset, audio_path=_soundtrack(plan), frame_count=plan.frame_count)


@dataclass
class _Sink:
    """Each finished frame: the caller's callback (which may replace it), the writer, the progress bar."""

    writer: FrameWriter
    progress: tqdm
    on_frame: FrameCallback | None

    def __call__(self, index: int, image: np.ndarray, state: ResumeState | None,
                 depth_map: np.ndarray | None = None) -> None:
        stored = self.on_frame(index, image) if self.on_frame is not None else None
        self.writer.put(index, image if stored is None else stored, state, depth_map)
        self.progress.update(1)


def _run_loop(inputs: RenderInputs, backend: Backend, depth_model: DepthEstimator | None, folder: RenderFolder,
              state: ResumeState | None, on_frame: FrameCallback | None, quiet: bool,
              cancel: threading.Event | None, phase: PhaseCallback) -> None:
    """Frames into the folder (and the video stream for a new render), under a progress bar.

    A stop (Ctrl-C, `cancel`) keeps every frame written so far and says how to resume.
    """
    plan = inputs.plan
    video = None if state is not None else _new_video(folder, plan)
    done = 0 if state is None else state.next_frame
    try:
        with FrameWriter(folder, video) as writer, \
                tqdm(total=plan.frame_count, initial=done, unit="frame", disable=quiet,
                     desc=folder.root.name) as progress:
            sink = _Sink(writer, progress, on_frame)
            depth = DepthSteps.for_render(depth_model, plan.settings.save_depth_maps)
            clip_steps = VideoSteps.for_render(plan, inputs.video, inputs.init, backend.is_preview, depth_model,
                                               folder.root)
            with clip_steps:
                start = start_or_resume(inputs, backend, state, sink, depth, clip_steps)
                device = depth_model.model.device if depth_model is not None else "cpu"
                FrameLoop.for_render(plan, backend, start.reference, depth, device, inputs.guide,
                                     clip_steps).run(start, sink, cancel)
            phase("post_processing")  # the last frames and the video are finished as the writer closes
    except KeyboardInterrupt:
        print(f"\nstopped: the frames written so far are kept in {folder.root}; "
              f"`deforum-engine resume {folder.root}` continues the render", file=sys.stderr)
        raise
    except RenderCancelled as stop:
        raise RenderCancelled(f"{stop}; the frames written so far are kept in {folder.root}, and "
                              f"`deforum-engine resume {folder.root}` continues the render") from None
