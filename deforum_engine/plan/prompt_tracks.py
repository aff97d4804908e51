"""The plan's per-frame text: prompts and negative prompts (a prompt holds until the next key), with
the global prompts and the style applied, Deforum's backtick maths evaluated at each frame, LoRA tags
taken out (their files found by plan_inputs), prompt blending, and Parseq's prompts in their place.

Text is kept as `TextTrack`s: a few distinct strings and one index per frame.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from deforum_engine.config.importers.parseq import extend_to
from deforum_engine.config.settings import Settings
from deforum_engine.config.styles import apply_style
from deforum_engine.errors import SettingsError
from deforum_engine.prompts.text import split_negative
from deforum_engine.prompts.weights import LORA_SUFFIX, ActiveLora, backtick_expressions, backtick_filler, extract_loras
from deforum_engine.schedules import evaluate_expression, evaluate_frame_key


class TextTrack(Sequence[str]):
    """Per-frame text (prompts, samplers) as a few distinct strings and one index per frame.

    A 100,000-frame render has a handful of prompts; storing an index per frame keeps the plan
    small and fast to build, and reads like a list.
    """

    def __init__(self, table: Sequence[str], codes: np.ndarray) -> None:
        self.table = tuple(table)
        self.codes = np.asarray(codes, dtype=np.int32)

    @classmethod
    def constant(cls, text: str, frames: int) -> TextTrack:
        return cls([text], np.zeros(frames, dtype=np.int32))

    @classmethod
    def from_list(cls, items: Sequence[str]) -> TextTrack:
        table = list(dict.fromkeys(items))
        lookup = {text: code for code, text in enumerate(table)}
        return cls(table, np.fromiter((lookup[text] for text in items), dtype=np.int32, count=len(items)))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.table[code] for code in self.codes[index]]
        return self.table[self.codes[index]]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"TextTrack({len(self)} frames, {len(self.table)} distinct)"


def _join(*parts: str) -> str:
    return " ".join(part.strip() for part in parts if part and part.strip())


def prompt_tracks(settings: Settings, frames: int, variables: dict, lora_files: dict[str, str],
             keyed: dict[int, tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """Per-frame prompt, negative prompt and LoRAs (a prompt holds until the next key), styled, with
    Deforum's backtick maths evaluated at each frame, LoRA tags taken out, and blending.

    `keyed` (frame -> (prompt, negative, where it comes from)) replaces the settings' prompts: Parseq's."""
    if keyed is None:
        keyed = _keyed_prompts(settings, frames, variables)
    keys = sorted(keyed)
    owner = np.searchsorted(np.array(keys, dtype=np.int64), np.arange(frames, dtype=np.int64), side="right") - 1
    owner = np.maximum(owner, 0)  # before the first key, the first prompt holds
    texts = _PromptTexts(settings, frames, variables, lora_files)
    bounds = np.searchsorted(owner, np.arange(len(keys) + 1))  # key i owns frames bounds[i] .. bounds[i+1]-1
    table: list[tuple[str, str, tuple]] = []
    codes = np.zeros(frames, dtype=np.int32)
    for position, key in enumerate(keys):
        start, stop = int(bounds[position]), int(bounds[position + 1])
        if start < stop:
            entries, local = texts.at(keyed[key], np.arange(start, stop))
            codes[start:stop] = len(table) + local
            table.extend(entries)
    targets = {key: texts.at(keyed[key], np.array([key]))[0][0] for key in keys}  # each key at its own frame
    blend_prompt, blend_negative, blend_weight = _blend(keys, targets, frames, settings.prompt_blend_frames)
    return {"prompt": TextTrack([entry[0] for entry in table], codes),
            "negative_prompt": TextTrack([entry[1] for entry in table], codes),
            "loras": TextTrack([entry[2] for entry in table], codes),
            "blend_prompt": blend_prompt, "blend_negative_prompt": blend_negative, "blend_weight": blend_weight}


def _keyed_prompts(settings: Settings, frames: int, variables: dict) -> dict[int, tuple[str, str, str]]:
    """The settings' prompts by frame, split at --neg, with the global prompts and the style applied."""
    if not settings.prompts:
        raise SettingsError("prompts: no prompts given; add at least {\"0\": \"your prompt\"}")
    keyed: dict[int, tuple[str, str, str]] = {}  # frame -> (prompt, negative, the setting it comes from)
    scalars = {k: v for k, v in variables.items() if np.ndim(v) == 0}
    for key, text in settings.prompts.items():
        setting = f"prompts[{key!r}]"
        frame = evaluate_frame_key(str(key), frames, seed=settings.seed, fps=settings.fps, variables=scalars,
                                   setting=setting)
        positive, negative = split_negative(text)
        styled = apply_style(settings.prompt_style, _join(settings.positive_prompts, positive),
                             _join(negative, settings.negative_prompts))
        keyed[frame] = (*styled, setting)
    return keyed


def parseq_prompts(parseq, frames: int) -> dict[int, tuple[str, str, str]] | None:
    """Parseq's per-frame prompts as keys where the text changes (None when Parseq does not manage them).

    Deforum uses them as they are (no global prompts, no style), but reads backticks and LoRA tags in them."""
    if parseq is None or "prompt" not in parseq.strings:
        return None
    pairs = list(zip(extend_to(parseq.strings["prompt"], frames), extend_to(parseq.strings["negative_prompt"], frames)))
    return {frame: (*pair, f"parseq_manifest: rendered_frames[{frame}].deforum_prompt")
            for frame, pair in enumerate(pairs) if frame == 0 or pair != pairs[frame - 1]}


class _PromptTexts:
    """A keyed prompt's texts at given frames: backticks evaluated, LoRA tags resolved to files and removed."""

    def __init__(self, settings: Settings, frames: int, variables: dict, lora_files: dict[str, str]):
        self.settings, self.frames, self.variables = settings, frames, variables
        self.lora_files = lora_files  # LoRA name -> file, found by load_plan_inputs

    def at(self, entry: tuple[str, str, str], at_frames: np.ndarray) -> tuple[list[tuple[str, str, tuple]], np.ndarray]:
        """Distinct (prompt, negative, LoRAs) over `at_frames`, and for each frame the index of its entry."""
        positive, negative, setting = entry
        sources = backtick_expressions(positive) + backtick_expressions(negative)
        if not sources:
            return [self.without_loras(positive, negative, setting)], np.zeros(len(at_frames), dtype=np.int32)
        settings = self.settings
        values = np.stack([
            evaluate_expression(source, at_frames, self.frames, seed=settings.seed, fps=settings.fps,
                                variables=self.variables, setting=setting, label=f"backtick expression {number}")
            for number, source in enumerate(sources, 1)
        ], axis=1)
        rows, codes = _distinct_rows(values)
        split = len(backtick_expressions(positive))
        fill_positive, fill_negative = backtick_filler(positive), backtick_filler(negative)
        entries = [self.without_loras(fill_positive(row[:split]), fill_negative(row[split:]), setting)
                   for row in rows.tolist()]
        return entries, codes

    def without_loras(self, positive: str, negative: str, setting: str) -> tuple[str, str, tuple]:
        """The texts without their LoRA tags, and the LoRAs they name (one per file, sorted by file)."""
        if "<" not in positive and "<" not in negative:
            return positive, negative, ()
        positive, positive_tags = extract_loras(positive, setting)
        negative, negative_tags = extract_loras(negative, setting)
        active = {}
        for tag in positive_tags + negative_tags:
            path = self.lora_file(tag.name, setting)
            active[path] = ActiveLora(path, tag.text_encoder, tag.unet)
        return positive, negative, tuple(active[path] for path in sorted(active))

    def lora_file(self, name: str, setting: str) -> str:
        if name not in self.lora_files:
            folders = self.settings.lora_dirs
            where = (f"in {', '.join(str(folder) for folder in folders)}" if folders
                     else "because no LoRA folders are set")
            file_name = name if name.lower().endswith(LORA_SUFFIX) else name + LORA_SUFFIX
            raise SettingsError(f"{setting}: LoRA {name!r} not found: no {file_name} {where}; "
                                f"put the file there or add its folder to `lora_dirs`")
        return self.lora_files[name]


def _distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a float array and each row's index among them (np.unique(axis=0) without
    its slow sort of whole rows: one 1-D unique per column, combined into one small integer key)."""
    key = np.zeros(len(values), dtype=np.int64)
    for column in values.T:
        distinct, codes = np.unique(column, return_inverse=True)
        _, key = np.unique(key * len(distinct) + codes.reshape(-1), return_inverse=True)
    _, first = np.unique(key, return_index=True)
    return values[first], key.reshape(-1).astype(np.int32)


def _blend(keys: list[int], keyed: dict, frames: int, span: int) -> tuple[TextTrack, TextTrack, np.ndarray]:
    """Prompt blending: over the `span` frames before a key, fade towards that key's prompt.

    The keyed frame itself shows exactly the keyed prompt, as in Deforum; the frames before it
    interpolate the embeddings with weights 1/(span+1) ... span/(span+1).
    """
    codes = np.zeros(frames, dtype=np.int32)  # code 0: no blending; code i+1: towards keys[i]
    weight = np.zeros(frames)
    for position, (previous, key) in enumerate(itertools.pairwise(keys), start=1):
        start, stop = max(previous + 1, key - span), min(key, frames)
        if span and start < stop:
            codes[start:stop] = position + 1
            weight[start:stop] = (np.arange(start, stop) - (key - span) + 1) / (span + 1)
    positives = [""] + [keyed[key][0] for key in keys]
    negatives = [""] + [keyed[key][1] for key in keys]
    return TextTrack(positives, codes), TextTrack(negatives, codes), weight
