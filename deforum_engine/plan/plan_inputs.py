"""What a plan reads besides the settings, loaded in one place so that planning itself is pure.

`load_plan_inputs` does every read and every draw a plan needs: it resolves seed -1 (recorded in
the settings so the render can be repeated), reads the Parseq manifest and applies its frame
count, fps and cadence, probes the clip of Video Input mode and hybrid video (its frames set the
frame count), analyses the soundtrack when a schedule uses audio (or max_frames is
"auto"), and finds the files of the LoRAs the prompts name. `frame_plan.plan_frames` then computes
every per-frame value from these alone: the same inputs always give the same plan.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deforum_engine.config.frame_values import PER_FRAME_VALUES, unread_by
from deforum_engine.config.importers.parseq import (
    ParseqOverrides,
    load_parseq_manifest,
    parseq_overrides,
)
from deforum_engine.config.settings import Settings
from deforum_engine.config.styles import apply_style
from deforum_engine.errors import SettingsError
from deforum_engine.limits import Limits, env_name
from deforum_engine.plan.audio import AudioFeatures, analyse_audio
from deforum_engine.prompts.text import split_negative
from deforum_engine.prompts.weights import backtick_expressions, find_lora, lora_names
from deforum_engine.schedules import AUDIO_VARIABLES
from deforum_engine.video.timeline import VideoSource, frame_count_update, video_source

SEED_LIMIT = 2**32
_AUDIO_NAME = re.compile(r"\b(" + "|".join(AUDIO_VARIABLES) + r")\b")
_TEMPO_NAME = re.compile(r"\b(bpm|beat)\b")


@dataclass(frozen=True)
class PlanInputs:
    """The settings as the plan uses them, and what was read for them."""

    settings: Settings  # seed resolved; Parseq's options and the soundtrack's length applied
    parseq: ParseqOverrides | None = None
    audio: AudioFeatures | None = None
    lora_files: dict[str, str] = field(default_factory=dict)  # a prompt's LoRA name -> its file (found ones)
    video: VideoSource | None = None  # the probed clip and its frame per output frame (Video Input, hybrid)


def load_plan_inputs(settings: Settings, base_dir: Path | None = None) -> PlanInputs:
    """Read and draw everything a plan needs; SettingsError for a bad manifest or soundtrack."""
    settings = _resolve_seed(settings)
    parseq = None
    if settings.parseq_manifest:
        manifest = load_parseq_manifest(settings.parseq_manifest, base_dir)
        parseq = parseq_overrides(manifest, use_deltas=settings.parseq_use_deltas)
        settings = _apply_parseq_options(settings, parseq)
    video = video_source(settings)  # the clip sets the frame count, as in Deforum
    settings = settings.model_copy(update=frame_count_update(settings, video))
    audio = _analyse_soundtrack(settings)
    if settings.max_frames == "auto":
        settings = settings.model_copy(update={"max_frames": audio.frames})
    _check_frame_count(int(settings.max_frames))
    return PlanInputs(settings, parseq, audio, _find_loras(settings, parseq), video)


def _check_frame_count(frames: int) -> None:
    """The frame count, refused above the limit before any per-frame value is computed (a plan holds
    about 0.4 KB per frame: 100,000 frames take about 43 MB)."""
    limits = Limits.from_env()
    if frames > limits.max_frames:
        raise SettingsError(f"max_frames: {frames:,} frames (from the settings, the soundtrack or the Parseq manifest) "
                            f"is more than the limit of {limits.max_frames:,} frames for one render; render it in "
                            f"parts, or raise the limit with {env_name('max_frames')} (`serve --max-frames`)")


def _resolve_seed(settings: Settings) -> Settings:
    """Seed -1 picks a seed; it is recorded in the resolved settings so the render can be repeated."""
    if settings.seed != -1:
        return settings
    return settings.model_copy(update={"seed": random.SystemRandom().randrange(SEED_LIMIT)})


def _apply_parseq_options(settings: Settings, parseq: ParseqOverrides) -> Settings:
    """Parseq's frame count, fps and cadence win over the settings', as in Deforum, unless
    parseq_non_schedule_overrides is off: then only Parseq's per-frame values apply."""
    update: dict[str, Any] = {}
    if settings.parseq_non_schedule_overrides:
        update["max_frames"] = parseq.frame_count
        if parseq.fps:
            update["fps"] = float(parseq.fps)
        if parseq.cadence:
            update["diffusion_cadence"] = int(parseq.cadence)
    if any(name.startswith("perspective_flip") for name in parseq.managed):
        update["enable_perspective_flip"] = True
    return settings.model_copy(update=update)


def _uses(settings: Settings, pattern: re.Pattern) -> bool:
    """Whether a schedule the plan evaluates (or a prompt's backtick maths) names a variable matching `pattern`."""
    unread = {value.setting for value in unread_by(settings.animation_mode)}
    texts = [getattr(settings, value.setting) for value in PER_FRAME_VALUES
             if value.evaluated and value.setting not in unread]
    texts += [settings.steps_schedule or "", settings.seed_schedule, str(settings.image_prompt_influence)]
    texts += [settings.noise_multiplier_schedule if settings.enable_noise_multiplier_scheduling else ""]
    texts += [source for text in (*settings.prompts.values(), settings.positive_prompts, settings.negative_prompts)
              for source in backtick_expressions(text)]  # Deforum's prompt maths
    return any(isinstance(text, str) and pattern.search(text) for text in texts)


def _analyse_soundtrack(settings: Settings) -> AudioFeatures | None:
    """Audio features when a schedule uses them (or max_frames is 'auto'); a SettingsError if unreadable."""
    if settings.soundtrack_path is None:
        return None  # schedules using audio variables fail in the evaluator with a clear message
    needs_audio = _uses(settings, _AUDIO_NAME) or (settings.bpm is None and _uses(settings, _TEMPO_NAME))
    if not needs_audio and settings.max_frames != "auto":
        return None
    max_frames = None if settings.max_frames == "auto" else int(settings.max_frames)
    return analyse_audio(settings.soundtrack_path, settings.fps, bpm=settings.bpm, max_frames=max_frames)


def _find_loras(settings: Settings, parseq: ParseqOverrides | None) -> dict[str, str]:
    """The file of every LoRA any prompt names (styles and Parseq's prompts included); names not found
    are left out, and the plan reports them against the prompt that names them."""
    texts = {settings.positive_prompts, settings.negative_prompts}
    for text in settings.prompts.values():
        texts.update(apply_style(settings.prompt_style, *split_negative(text)))
    if parseq is not None:
        texts.update(parseq.strings.get("prompt", ()), parseq.strings.get("negative_prompt", ()))
    found = {}
    for name in {name for text in texts for name in lora_names(text)}:
        path = find_lora(name, settings.lora_dirs)
        if path is not None:
            found[name] = str(path)
    return found
