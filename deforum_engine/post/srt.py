"""Deforum's gen-info subtitles: `<timestring>.srt` beside the video, one block per frame.

With `deforum_save_gen_info_as_srt`, a render folder `NAME/` gets `NAME/NAME.srt` (the folder's name
is the render's timestring, as the `/deforum_api` reports it), in the extension's exact format:

    {frame + 1}
    {start} --> {end}            frame / fps and (frame + 1) / fps, HH:MM:SS,mmm, milliseconds truncated
    F#: {frame}; Cadence: {c}; Seed: {seed}; {label: value; ...}

`c` is `false` at cadence 1; at cadence n it is `True` for every frame but the last of each block of
n (`False`), as Deforum's in-between frames print it, and the seed is then the one of the block's
next diffused frame (Deforum writes a block's lines just before diffusing that frame). The values
are those of `deforum_save_gen_info_as_srt_params` (Deforum's user labels), always in Deforum's
fixed order: numbers that are whole print as integers, others with 3 decimals, text as it is.

Every schedule Deforum reports is there, also those the engine does not use (subseeds, checkpoints,
masks, hybrid video ...): an imported Deforum file keeps their text in `srt_schedules`, and they are
read as Deforum reads them; a schedule the file does not have takes Deforum's default. The values the
engine renders with come from the plan (Parseq's included).
"""
from __future__ import annotations

import warnings
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np

from deforum_engine.config.frame_values import PER_FRAME_VALUES, unread_by
from deforum_engine.config.importers.parseq import extend_to, load_parseq_manifest
from deforum_engine.config.srt_labels import (
    DEFORUM_DEFAULTS,
    GEN_INFO_PARAMS,
    PROMPT_LABEL,
    TEXT_SCHEDULES,
)
from deforum_engine.errors import SettingsError
from deforum_engine.output.folder import RenderFolder
from deforum_engine.plan.frame_plan import FramePlan
from deforum_engine.schedules import (
    ScheduleWarning,
    evaluate_expression,
    evaluate_frame_key,
    evaluate_schedule,
    parse_schedule,
    read_deforum_schedule,
)

# Schedules whose rendered values the plan holds: Deforum's setting -> the plan's array (the per-frame table's rows).
_PLAN_NAMES = {value.setting: value.name for value in PER_FRAME_VALUES if value.evaluated}


def srt_path(folder: RenderFolder) -> Path:
    """`<folder>/<timestring>.srt`, the timestring being the folder's name (the video is `<timestring>.mp4`)."""
    return folder.root / f"{folder.root.name}.srt"


def check_gen_info(plan: FramePlan) -> None:
    """Before a render: every schedule the .srt will report must read (a SettingsError names the one that
    does not), so a render never fails at its end for its subtitles."""
    if plan.settings.deforum_save_gen_info_as_srt:
        gen_info_srt(plan, frames=0)


def write_gen_info(folder: RenderFolder, plan: FramePlan) -> Path | None:
    """Write the folder's .srt when the render's settings ask for it."""
    if not plan.settings.deforum_save_gen_info_as_srt:
        return None
    path = srt_path(folder)
    path.write_text(gen_info_srt(plan), encoding="utf-8")
    return path


def gen_info_srt(plan: FramePlan, frames: int | None = None) -> str:
    """The whole .srt of a render: one block per frame of its video (or of the first `frames`)."""
    settings = plan.settings
    count = plan.frame_count if frames is None else frames
    chosen = set(settings.deforum_save_gen_info_as_srt_params)
    columns = [(printed, _column(plan, key)) for key, label, printed in GEN_INFO_PARAMS if label in chosen]
    prompts = _prompt_column(plan) if PROMPT_LABEL in chosen else None
    seeds, cadence = _seed_and_cadence(plan)
    with localcontext() as context:
        context.prec = 20
        duration = Decimal(1) / Decimal(settings.fps)
        blocks = []
        for frame in range(count):
            values = "".join(f"{printed}: {format_value(column[frame])}; " for printed, column in columns)
            if prompts is not None:
                values += f"{PROMPT_LABEL}: {prompts[frame]}; "
            text = f"F#: {frame}; Cadence: {cadence[frame]}; Seed: {seeds[frame]}; {values.rstrip('; ')}"
            blocks.append(srt_block(frame, duration, text))
    return "".join(blocks)


def srt_block(frame: int, duration: Decimal, text: str) -> str:
    """One subtitle: its number (from 1), the frame's time span, the text, a blank line."""
    start, end = Decimal(frame) * duration, (Decimal(frame) + 1) * duration
    return f"{frame + 1}\n{srt_time(start)} --> {srt_time(end)}\n{text}\n\n"


def srt_time(seconds: Decimal) -> str:
    """HH:MM:SS,mmm with the milliseconds truncated (Deforum's; 1/15 s is 00:00:00,066)."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    whole, fraction = divmod(rest, 1)
    return f"{int(hours):02d}:{int(minutes):02d}:{int(whole):02d},{int(fraction * 1000):03d}"


def format_value(value) -> str:
    """A whole number as an integer, another number with 3 decimals, text as it is."""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else f"{float(value):.3f}"
    return str(value)


def _seed_and_cadence(plan: FramePlan) -> tuple[list[int], list[str]]:
    """Per frame: the seed Deforum prints and its Cadence column.

    At cadence n a frame's line is written before the next diffused frame is made, with that frame's
    seed; the last frame of each block of n prints False, the others True."""
    seeds = plan.values["seed"]
    count = len(seeds)
    step = plan.settings.diffusion_cadence
    frames = np.arange(count)
    if _parseq_seeds(plan):
        printed = _seeds_before_parseq(plan)
    elif step == 1:
        printed = [int(seed) for seed in seeds]
    else:
        printed = [int(seeds[frame]) for frame in np.minimum((frames // step + 1) * step, count - 1)]
    if step == 1:
        return printed, ["false"] * count
    last_of_block = (frames % step == step - 1) | (frames == count - 1)
    return printed, ["False" if last else "True" for last in last_of_block]


_NEXT_SEED = {  # Deforum's next_seed after its k-th diffused frame (seed_iter_N for iter)
    "iter": lambda seed, k, every: seed + (1 if k % every == 0 else 0),
    "fixed": lambda seed, k, every: seed,
    "ladder": lambda seed, k, every: seed + (2 if k % 2 == 0 else -1),
    "alternate": lambda seed, k, every: seed + (1 if k % 2 == 0 else -1),
}


def _parseq_seeds(plan: FramePlan) -> bool:
    settings = plan.settings
    return (bool(settings.parseq_manifest) and settings.seed_behavior in _NEXT_SEED
            and _parseq_column(settings.parseq_manifest, "seed", 1) is not None)


def _seeds_before_parseq(plan: FramePlan) -> list[int]:
    """With Parseq managing the seed, Deforum writes a line before it applies the frame's Parseq seed: the
    line shows the previous diffused frame's Parseq seed moved on by next_seed (frame 0: the settings' seed)."""
    settings, seeds, step = plan.settings, plan.values["seed"], plan.settings.diffusion_cadence
    move = _NEXT_SEED[settings.seed_behavior]
    printed = []
    for frame in range(len(seeds)):
        previous = frame - 1 if step == 1 else frame // step * step
        if previous < 0:
            printed.append(int(settings.seed))
        else:
            printed.append(int(move(int(seeds[previous]), previous // step, settings.seed_iter_N)))
    return printed


def _column(plan: FramePlan, key: str) -> list:
    """One schedule's value per frame: the plan's (what was rendered), else its text read as Deforum does."""
    settings = plan.settings
    unused = {value.setting for value in unread_by(settings.animation_mode)}
    clamped = key == "strength_schedule" and not settings.parseq_manifest  # Deforum prints it before its clamp
    if key in _PLAN_NAMES and key not in unused and not clamped:
        return list(plan.values[_PLAN_NAMES[key]])
    if key == "noise_multiplier_schedule" and settings.enable_noise_multiplier_scheduling:
        return list(plan.values["noise_multiplier"])
    if key in _PARSEQ_COLUMNS and settings.parseq_manifest:
        column = _parseq_column(settings.parseq_manifest, _PARSEQ_COLUMNS[key], plan.frame_count)
        if column is not None:
            return column
    text = _schedule_text(plan, key)
    if key in TEXT_SCHEDULES:
        return deforum_text_schedule(text, plan.frame_count, settings.seed, settings.fps, key)
    return list(_numbers(plan, text, key))


# Schedules the engine has no setting for that Parseq may manage: its column, as Deforum prints it (unrounded).
_PARSEQ_COLUMNS = {"seed_schedule": "seed", "subseed_schedule": "subseed", "subseed_strength_schedule": "subseed_strength"}


def _parseq_column(manifest_text: str, column: str, frames: int) -> list | None:
    rendered = load_parseq_manifest(manifest_text).get("rendered_frames") or [{}]
    if column not in rendered[0]:
        return None
    return list(extend_to([float(row.get(column, rendered[0][column])) for row in rendered], frames))


def _schedule_text(plan: FramePlan, key: str):
    """The schedule's text: the Deforum file's (srt_schedules), the engine setting's, or Deforum's default."""
    settings = plan.settings
    if key in settings.srt_schedules:
        return settings.srt_schedules[key]
    if key in ("steps_schedule", "sampler_schedule"):
        own = getattr(settings, key)
        if own is not None:
            return own
        return f"0:({settings.steps})" if key == "steps_schedule" else f'0:("{settings.sampler}")'
    if key in DEFORUM_DEFAULTS:
        return DEFORUM_DEFAULTS[key]
    return getattr(settings, key)


def _numbers(plan: FramePlan, text, key: str) -> np.ndarray:
    settings = plan.settings
    variables = plan.audio.variables(settings.bpm) if plan.audio is not None else {}
    if settings.bpm is not None:
        variables["bpm"] = settings.bpm
    if isinstance(text, str):
        text = _without_negative_keys(read_deforum_schedule(text, key).text, plan, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)  # NaN frames filled as Deforum fills them
        return evaluate_schedule(text, plan.frame_count, seed=settings.seed, fps=settings.fps,
                                 variables=variables, setting=f"srt: {key}", nan_fill=True)


def _without_negative_keys(text: str, plan: FramePlan, key: str) -> str:
    """Keyframes whose key falls before frame 0 dropped, as Deforum never reaches them (the default seed
    schedule's "max_f-2" in a 1- or 2-frame render)."""
    if ":" not in text:
        return text
    settings = plan.settings
    entries = parse_schedule(text, f"srt: {key}")

    def before_start(entry) -> bool:
        if entry.key_text.strip().isdigit():
            return False
        at = evaluate_expression(entry.key_text, [0], plan.frame_count, seed=settings.seed, fps=settings.fps,
                                 setting=f"srt: {key}", label=entry.label)
        return float(at[0]) < 0

    kept = [entry.text for entry in entries if not before_start(entry)]
    return text if len(kept) == len(entries) or not kept else ", ".join(kept)


def deforum_text_schedule(text: str, frames: int, seed: float, fps: float, setting: str) -> list[str]:
    """A text schedule read as Deforum reads one: entries split at ',', key and value at ':', quotes and
    parentheses dropped from the value; a value holds until the next key, keys past the end are dropped."""
    keyed: dict[int, str] = {}
    for entry in str(text).split(","):
        key, colon, value = entry.partition(":")
        if not colon or not key.strip():
            raise SettingsError(f"srt: {setting}: {entry.strip()!r} is not a keyframe such as 0: (\"text\")")
        frame = evaluate_frame_key(key.strip(), frames, seed=seed, fps=fps, setting=f"srt: {setting}")
        keyed[frame] = value.split(":")[0].strip().translate(str.maketrans("", "", "'\"()"))
    keys = sorted(frame for frame in keyed if frame < frames)
    if not keys:
        raise SettingsError(f"srt: {setting}: no keyframe inside the render's {frames} frames ({text!r})")
    out, current = [], keyed[keys[0]]
    for frame in range(frames):
        current = keyed.get(frame, current)
        out.append(current)
    return out


def _prompt_column(plan: FramePlan) -> list[str]:
    """Deforum's raw prompt per frame: "{positive} {prompt} --neg {negative}" (Parseq's prompt as it is)."""
    settings = plan.settings
    frames = plan.frame_count
    parseq = _parseq_prompts(settings.parseq_manifest, frames) if settings.parseq_manifest else None
    if parseq is not None:
        return parseq
    keyed = {evaluate_frame_key(str(key), frames, seed=settings.seed, fps=settings.fps,
                                setting=f"prompts[{key!r}]"): text for key, text in settings.prompts.items()}
    negative = settings.negative_prompts.replace("--neg", "")
    texts = {frame: f"{settings.positive_prompts} {text} {'' if '--neg' in text else '--neg'} {negative}"
             for frame, text in keyed.items()}
    keys = sorted(texts)
    current = texts[keys[0]]
    out = []
    for frame in range(frames):
        current = texts.get(frame, current)
        out.append(current)
    return out


def _parseq_prompts(manifest_text: str, frames: int) -> list[str] | None:
    """Parseq's `deforum_prompt` per frame as written (its last one repeats), or None when it has none."""
    rendered = load_parseq_manifest(manifest_text).get("rendered_frames") or [{}]
    if "deforum_prompt" not in rendered[0]:
        return None
    return list(extend_to([str(row.get("deforum_prompt", "")) for row in rendered], frames))
