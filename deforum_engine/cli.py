"""The `deforum-engine` command: argument parsing, and nothing else that the Python API lacks.

Each subcommand is a thin call into the package. The rendering side (OpenCV, and through it
torch, diffusers, Ray, the web server) is imported inside the commands that render, so `schedule`,
`plan` and `presets` start instantly and never load torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from deforum_engine.config.files import check_override_names, load_settings, parse_override
from deforum_engine.config.frame_values import BY_NAME, motion_values
from deforum_engine.config.presets import list_presets, load_preset
from deforum_engine.config.settings import IgnoredSettingsWarning
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.limits import env_name
from deforum_engine.plan.audio import analyse_audio, features_to_json, plot_features
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.plan.plot import plot_plan
from deforum_engine.schedules import evaluate_schedule
from deforum_engine.studio.config import DEFAULT_DATA, TOKEN_ENV, StudioConfig

if TYPE_CHECKING:
    from deforum_engine.config.settings import Settings


def _overrides(pairs: list[str] | None, model: str | None = None) -> dict:
    overrides = dict(parse_override(pair) for pair in pairs or [])
    check_override_names(overrides)
    if model:
        overrides["model"] = model
    return overrides


def _load(args) -> Settings:
    settings = load_settings(args.settings, _overrides(getattr(args, "set", None), getattr(args, "model", None)))
    if settings.name is None:
        settings = settings.model_copy(update={"name": Path(args.settings).stem})
    return settings


# ----------------------------------------------------------------------------------------- commands


def cmd_schedule(args) -> int:
    values = evaluate_schedule(args.text, args.frames, seed=args.seed, fps=args.fps, setting="schedule")
    if args.json:
        print(json.dumps([float(v) for v in values]))
    else:
        for frame, value in enumerate(values):
            print(f"{frame:>6}  {value:.6g}")
    return 0


def cmd_plan(args) -> int:
    plan = build_plan(_load(args))
    if args.json:
        print(json.dumps(plan.to_json()))
        return 0
    print(_plan_table(plan))
    return 0


def _plan_table(plan) -> str:
    settings = plan.settings
    head = (f"{settings.name}: {settings.animation_mode}, {plan.frame_count} frames, {settings.W}x{settings.H}, "
            f"{settings.fps:g} fps, seed {settings.seed}, cadence {settings.diffusion_cadence}, "
            f"border {settings.border}, color coherence {settings.color_coherence}")
    columns = [value.name for value in motion_values(settings.animation_mode)]
    columns += ["strength", "noise", "cfg_scale", "steps", "seed"]
    clip = _clip_column(plan)
    values = {**plan.values, **clip}
    columns += [*clip, *_video_columns(plan)]
    header = f"{'frame':>6} " + " ".join(f"{_header(c):>10}" for c in columns) + "  sampler    prompt"
    rows = [head, header]
    for index in range(plan.frame_count):
        cells = " ".join(f"{values[c][index]:>10.5g}" for c in columns)
        prompt = plan.strings["prompt"][index]
        rows.append(f"{index:>6} {cells}  {plan.strings['sampler'][index]:<10} {prompt[:60]}")
    return "\n".join(rows)


def _header(column: str) -> str:
    return column if column == "video" else BY_NAME[column].header


def _clip_column(plan) -> dict:
    """The plan table's clip column: the clip frame each frame uses (none without a clip)."""
    if plan.video is None or plan.video.source is None:
        return {}
    return {"video": plan.video.source.frames.sources()}


def _video_columns(plan) -> list[str]:
    """The hybrid / flow values the render uses, as plan table columns."""
    if plan.video is None:
        return []
    settings = plan.settings
    wanted = {"hybrid_comp_alpha": settings.hybrid_composite != "None",
              "hybrid_flow_factor": settings.hybrid_motion == "Optical Flow",
              "cadence_flow_factor": settings.optical_flow_cadence != "None",
              "redo_flow_factor": settings.optical_flow_redo_generation != "None"}
    return [name for name, used in wanted.items() if used]


def cmd_presets(args) -> int:
    if args.action == "show":
        if not args.name:
            raise SettingsError("presets show: give a preset name, e.g. `deforum-engine presets show zoom_in`")
        preset = load_preset(args.name)
        if args.json:
            print(json.dumps({"name": preset.name, "description": preset.description, "settings": preset.settings}))
        else:
            print(f"{preset.name}: {preset.description}")
            for key, value in preset.settings.items():
                print(f"  {key} = {value!r}")
        return 0
    presets = list_presets()
    if args.json:
        print(json.dumps([{"name": p.name, "description": p.description} for p in presets.values()]))
    else:
        width = max(len(name) for name in presets)
        for preset in presets.values():
            print(f"{preset.name:<{width}}  {preset.description}")
    return 0


def cmd_plot(args) -> int:

    path = plot_plan(build_plan(_load(args)), Path(args.output))
    print(f"wrote {path}")
    return 0


def cmd_render(args) -> int:
    from deforum_engine.rendering.recipe import render

    result = render(_load(args), out=args.out, preview=args.preview, quiet=args.quiet)
    _report(result, args.quiet)
    return 0


def cmd_resume(args) -> int:
    from deforum_engine.rendering.recipe import resume

    result = resume(args.folder, quiet=args.quiet)
    _report(result, args.quiet)
    return 0


def _report(result, quiet: bool) -> None:
    kind = "motion preview" if result.preview else "render"
    rate = result.frames / result.seconds if result.seconds else 0.0
    if result.srt is not None and not quiet:
        print(f"gen-info subtitles: {result.srt}", file=sys.stderr)
    if not quiet:
        print(f"{kind} finished: {result.frames} frames in {result.seconds:.1f} s ({rate:.1f} frames/s)",
              file=sys.stderr)
    print(result.video)
    for video in result.extra_videos:  # upscaled / interpolated videos (post-processing)
        print(video)


def cmd_encode(args) -> int:
    from deforum_engine.output.folder import RenderFolder
    from deforum_engine.output.video import encode_folder

    folder = RenderFolder(Path(args.folder))
    _, settings = folder.read()
    audio = settings.soundtrack_path if settings.add_soundtrack else None
    video = encode_folder(folder, settings.fps, settings.crf, settings.video_preset, audio_path=audio,
                          frame_count=int(settings.max_frames))
    print(video)
    return 0


def cmd_interpolate(args) -> int:
    from deforum_engine.post.pipeline import interpolate_path

    print(interpolate_path(args.path, args.x, args.slow_mo, args.keep_frames, args.model, args.device))
    return 0


def cmd_upscale(args) -> int:
    from deforum_engine.post.pipeline import upscale_path

    print(upscale_path(args.path, args.factor, args.model, args.keep_frames, args.device))
    return 0


def cmd_audio(args) -> int:
    features = analyse_audio(Path(args.file), args.fps, bpm=args.bpm)
    if args.plot:
        plot_features(features, Path(args.plot))
    if args.json:
        print(json.dumps(features_to_json(features)))
    else:
        print(f"{args.file}: {features.duration:.1f} s, {features.bpm:.1f} BPM, {features.frames} frames "
              f"at {args.fps:g} fps, {len(features.beat_frames)} beats")
    return 0


def cmd_batch(args) -> int:
    from deforum_engine.batch.local import run_batch

    report = run_batch(
        [Path(p) for p in args.settings], out=Path(args.out), preview=args.preview, model=args.model,
        executor=args.executor, address=args.address, workers=args.workers, quiet=args.quiet,
        lockstep=args.lockstep,
    )
    print(report.summary())
    return 0 if report.ok else 1


def cmd_serve(args) -> int:
    import os

    try:
        from deforum_engine.studio.server import serve
    except ModuleNotFoundError as error:
        raise SettingsError(f"serve: the studio needs {error.name}: pip install -c constraints.txt 'deforum-engine[studio]'") from None

    for option, limit in ((args.max_frames, "max_frames"), (args.max_batch_jobs, "max_jobs")):
        if option is not None:  # the render threads read the limits from the environment, as the CLI does
            if option < 1:
                raise SettingsError(f"serve: --{limit.replace('_', '-')} must be at least 1, got {option}")
            os.environ[env_name(limit)] = str(option)
    if args.max_body_mb <= 0 or args.upload_retention_days <= 0:
        raise SettingsError("serve: --max-body-mb and --upload-retention-days must be above 0")
    serve(StudioConfig(data=Path(args.data), model=args.model, ip_adapter=args.ip_adapter, preview_only=args.preview,
                       controlnet_models=tuple(args.controlnet or ()), rife_model=args.rife_model,
                       upscale_model=args.upscale_model,
                       token=args.token or os.environ.get(TOKEN_ENV) or None, api_auth=args.api_auth,
                       host=args.host, port=args.port, max_body_mb=args.max_body_mb,
                       upload_retention_days=args.upload_retention_days))
    return 0


# ----------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deforum-engine", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    def settings_command(name: str, help_text: str):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("settings", help="settings file: JSON, TOML or a Deforum .txt")
        sub.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
        return sub

    sub = commands.add_parser("schedule", help="evaluate one schedule")
    sub.add_argument("text")
    sub.add_argument("--frames", type=int, required=True)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--fps", type=float, default=15)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(func=cmd_schedule)

    sub = settings_command("plan", "show the resolved settings and every per-frame value")
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(func=cmd_plan)

    sub = commands.add_parser("presets", help="list motion presets, or show one")
    sub.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    sub.add_argument("name", nargs="?")
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(func=cmd_presets)

    sub = settings_command("plot", "draw the motion curves of a settings file")
    sub.add_argument("-o", "--output", required=True, help="PNG file to write")
    sub.set_defaults(func=cmd_plot)

    sub = settings_command("render", "render a settings file to frames and a video")
    sub.add_argument("--preview", action="store_true", help="motion preview: no model, seconds per render")
    sub.add_argument("--model", help="hub id, diffusers folder or .safetensors/.ckpt file")
    sub.add_argument("--out", help="output folder (default renders/<name>-<time>/)")
    sub.add_argument("--quiet", action="store_true", help="no summary or progress bar")
    sub.set_defaults(func=cmd_render)

    sub = commands.add_parser("resume", help="continue a stopped render from its folder")
    sub.add_argument("folder")
    sub.add_argument("--quiet", action="store_true")
    sub.set_defaults(func=cmd_resume)

    sub = commands.add_parser("encode", help="rebuild a render's video from its frames")
    sub.add_argument("folder")
    sub.set_defaults(func=cmd_encode)

    sub = commands.add_parser("interpolate", help="RIFE in-between frames for a render folder or any video")
    sub.add_argument("path", help="a render folder or a video file")
    sub.add_argument("--x", type=int, default=2, help="frames per source frame (Deforum: 2-10); default 2")
    sub.add_argument("--slow-mo", type=int, default=None, metavar="S", help="play S times slower (no soundtrack)")
    sub.add_argument("--keep-frames", action="store_true", help="keep the interpolated PNGs beside the video")
    sub.add_argument("--model", default=None, help="RIFE 4.x weights: hub id, folder or file (default AlexWortega/RIFE)")
    sub.add_argument("--device", default=None)
    sub.set_defaults(func=cmd_interpolate)

    sub = commands.add_parser("upscale", help="Real-ESRGAN upscaling of a render folder or any video")
    sub.add_argument("path", help="a render folder or a video file")
    sub.add_argument("--factor", default="x2", help="x2, x3 or x4; default x2")
    sub.add_argument("--model", default="realesr-animevideov3",
                     help="Deforum's names, a .pth / .safetensors file, or owner/repo/file.pth")
    sub.add_argument("--keep-frames", action="store_true", help="keep the upscaled PNGs beside the video")
    sub.add_argument("--device", default=None)
    sub.set_defaults(func=cmd_upscale)

    sub = commands.add_parser("audio", help="tempo and per-frame features of a soundtrack")
    sub.add_argument("file")
    sub.add_argument("--fps", type=float, required=True)
    sub.add_argument("--bpm", type=float, help="use this tempo instead of detecting it")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--plot", help="PNG file to draw the features into")
    sub.set_defaults(func=cmd_audio)

    sub = commands.add_parser("batch", help="render many settings files or a jobs file")
    sub.add_argument("settings", nargs="+", help="settings files, or a jobs .toml file")
    sub.add_argument("--preview", action="store_true")
    sub.add_argument("--model")
    sub.add_argument("--out", default="renders", help="folder that receives one folder per job")
    sub.add_argument("--executor", choices=["local", "ray"], default="local")
    sub.add_argument("--address", help="Ray cluster address (default: start a local one)")
    sub.add_argument("--workers", type=int, default=1, help="parallel workers")
    sub.add_argument("--lockstep", type=int, default=1, metavar="N",
                     help="render N model jobs together on one model, batching their frames (big GPUs)")
    sub.add_argument("--quiet", action="store_true")
    sub.set_defaults(func=cmd_batch)


    sub = commands.add_parser("serve", help="the studio: a local web app and HTTP API")
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (other than localhost needs --token)")
    sub.add_argument("--port", type=int, default=7860)
    sub.add_argument("--model", help="the model every render uses (hub id, diffusers folder or checkpoint)")
    sub.add_argument("--ip-adapter", help="IP-Adapter for image prompts (hub id or h94/IP-Adapter-layout folder)")
    sub.add_argument("--controlnet", action="append", metavar="MODEL",
                     help="a ControlNet model the form's units offer (hub id, diffusers folder or .safetensors); "
                          "repeat for several")
    sub.add_argument("--rife-model", help="RIFE weights for interpolation (default: the engine's, from the hub)")
    sub.add_argument("--upscale-model", help="a Real-ESRGAN upscaler offered beside Deforum's names, and chosen first")
    sub.add_argument("--preview", action="store_true", help="no model: every render is a motion preview")
    sub.add_argument("--data", default=str(DEFAULT_DATA), help="folder for uploads, renders and the job table")
    sub.add_argument("--token", help="token every request must carry (default: $DEFORUM_ENGINE_TOKEN)")
    sub.add_argument("--api-auth", metavar="USER:PASS[,USER:PASS]",
                     help="HTTP Basic logins, as AUTOMATIC1111's --api-auth (accepted beside the token)")
    sub.add_argument("--max-body-mb", type=float, default=2.0,
                     help="largest settings document or batch request (uploads have their own limits)")
    sub.add_argument("--max-frames", type=int, help="most frames in one render (default 100000; "
                                                    "same as $DEFORUM_ENGINE_MAX_FRAMES)")
    sub.add_argument("--max-batch-jobs", type=int, help="most jobs in one batch (default 1000; "
                                                        "same as $DEFORUM_ENGINE_MAX_JOBS)")
    sub.add_argument("--upload-retention-days", type=float, default=7.0,
                     help="uploads no unfinished job uses are deleted after this many days")
    sub.set_defaults(func=cmd_serve)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The engine's warnings as one plain line for people; libraries' own deprecation notes are left out."""
    if "deforum_engine" in str(filename) or issubclass(category, IgnoredSettingsWarning):
        print(f"warning: {message}", file=file or sys.stderr)


# Optional packages, and the extra that installs each.
OPTIONAL_PACKAGES = {"matplotlib": "plot", "librosa": "audio", "ray": "ray", "fastapi": "studio",
                     "uvicorn": "studio", "multipart": "studio", "starlette": "studio"}


def _missing_package(error: ModuleNotFoundError, command: str) -> str | None:
    """One line for a missing optional package: what needs it and how to install it; None otherwise."""
    package = (error.name or "").split(".")[0]
    extra = OPTIONAL_PACKAGES.get(package)
    if extra is None:
        return None
    return (f"{command} needs {package}, an optional package: "
            f"pip install -c constraints.txt 'deforum-engine[{extra}]'")


def _in_file(error: Exception, args) -> str:
    """A settings problem named with the file it is in, when the message does not say already."""
    message = str(error)
    path = getattr(args, "settings", None)
    if not isinstance(path, str) or not isinstance(error, SettingsError) or message.startswith(("--set", path)):
        return message
    return f"{path}: {message}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except (SettingsError, RenderError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"error: {_in_file(error, args)}", file=sys.stderr)
        return 2 if isinstance(error, SettingsError) else 1
    except ModuleNotFoundError as error:
        line = _missing_package(error, args.command)
        if line is None or args.debug:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a render has already said where its frames are and how to resume
        return 130


if __name__ == "__main__":
    sys.exit(main())
