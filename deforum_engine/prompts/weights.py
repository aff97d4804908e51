"""Prompt syntax as AUTOMATIC1111 and Deforum users write it: text in, structure out (no torch).

- Attention weights: `(words)` multiplies the words' weight by 1.1, `[words]` divides it by 1.1,
  `(words:1.3)` multiplies it by 1.3; brackets nest and multiply. `\\(`, `\\)`, `\\[`, `\\]` and
  `\\\\` are literal characters. An unclosed bracket weights everything after it; a stray `)` or
  `]` is literal text, and so is a `:` that is not `:number)` (`(a:1.3 b)` is "a:1.3 b" at 1.1).
- `BREAK` (in capitals) ends the current 75-token chunk early.
- Composable prompts: the word `AND` splits a positive prompt into sub-prompts, each with an
  optional trailing `:weight` (default 1): `a cat:1.2 AND a dog:0.5`. Negative prompts are not
  split, as in A1111.
- LoRA tags: `<lora:name>`, `<lora:name:0.8>`, `<lora:name:te:unet>` (or `te=` / `unet=`) name a
  `name.safetensors` file in one of the `lora_dirs` folders; they are taken out of the text.
- Deforum's prompt maths: `` `expression` `` parts are replaced per frame by their value; the plan
  evaluates them with the schedules' safe evaluator (schedules.evaluate_expression).

The plan uses the LoRA and backtick parts; backends/prompt_embeddings.py turns the rest into
weighted text embeddings.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from deforum_engine.errors import SettingsError

ROUND_FACTOR = 1.1  # (words)
SQUARE_FACTOR = 1 / 1.1  # [words]
LORA_SUFFIX = ".safetensors"

# One attention token: an escape, a bracket, `:number)` closing a weighted bracket, plain text, or
# a lone ':' / '\'. Text runs stop at the characters that may start another token.
_ATTENTION_TOKEN = re.compile(r"\\[()\[\]\\]|:\s*([+-]?[.\d]+)\s*\)|[()\[\]]|[^\\()\[\]:]+|[:\\]")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_AND = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]*)>")
_BACKTICK = re.compile(r"`([^`]*)`")

Fragment = tuple[str, float]  # text and its attention weight


class PromptWarning(UserWarning):
    """Prompt text the engine reads differently from A1111 or ignores (named in the message)."""


class LoraTag(NamedTuple):
    """A `<lora:...>` tag as written: the LoRA's name and its text-encoder and UNet weights."""

    name: str
    text_encoder: float
    unet: float


class ActiveLora(NamedTuple):
    """A LoRA switched on for a frame: its file and its text-encoder and UNet weights."""

    path: str
    text_encoder: float
    unet: float


# ---------------------------------------------------------------------------------- attention


def parse_attention(text: str) -> list[list[Fragment]]:
    """A1111 attention syntax -> sections (split at BREAK) of (text, weight) fragments.

    Neighbouring fragments of equal weight are merged, as A1111 does before tokenizing.
    """
    pieces: list[list] = []  # [text, weight]; a BREAK is [None, 1.0]
    round_open: list[int] = []  # index into pieces where each open bracket starts
    square_open: list[int] = []
    for match in _ATTENTION_TOKEN.finditer(text):
        token, number = match.group(0), match.group(1)
        weight = _number(number) if number is not None else None
        if token[0] == "\\" and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            _multiply(pieces, round_open.pop(), weight)
        elif number is not None and round_open:  # `:1.2.3)`: the text stays, the bracket closes at 1.1
            pieces.append([token[:-1], 1.0])
            _multiply(pieces, round_open.pop(), ROUND_FACTOR)
        elif token == ")" and round_open:
            _multiply(pieces, round_open.pop(), ROUND_FACTOR)
        elif token == "]" and square_open:
            _multiply(pieces, square_open.pop(), SQUARE_FACTOR)
        else:
            for position, part in enumerate(_BREAK.split(token)):
                if position:
                    pieces.append([None, 1.0])
                pieces.append([part, 1.0])
    for start in round_open:  # unclosed brackets weight everything after them
        _multiply(pieces, start, ROUND_FACTOR)
    for start in square_open:
        _multiply(pieces, start, SQUARE_FACTOR)
    return _sections(pieces)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # e.g. "1.2.3": the token stays literal text


def _multiply(pieces: list[list], start: int, factor: float) -> None:
    for piece in pieces[start:]:
        if piece[0] is not None:
            piece[1] *= factor


def _sections(pieces: list[list]) -> list[list[Fragment]]:
    sections: list[list[Fragment]] = [[]]
    for text, weight in pieces:
        if text is None:
            sections.append([])
        elif text:
            current = sections[-1]
            if current and current[-1][1] == weight:
                current[-1] = (current[-1][0] + text, weight)
            else:
                current.append((text, weight))
    return [section or [("", 1.0)] for section in sections]


def split_composable(prompt: str) -> list[Fragment]:
    """`a cat:1.2 AND a dog` -> [("a cat", 1.2), ("a dog", 1.0)]: sub-prompts and their weights."""
    parts = []
    for part in _AND.split(prompt):
        match = _TRAILING_WEIGHT.search(part)
        if match is None:
            parts.append((part.strip(), 1.0))
        else:
            parts.append((part[:match.start()].strip(), float(match.group(1))))
    return parts


def is_plain(text: str, composable: bool = False) -> bool:
    """True when the text has no weights, escapes, BREAK (or, with `composable`, AND / :weight) to read."""
    if composable and split_composable(text) != [(text.strip(), 1.0)]:
        return False
    return parse_attention(text) == [[(text, 1.0)]]


# ---------------------------------------------------------------------------------- LoRA tags


def extract_loras(text: str, setting: str = "prompts") -> tuple[str, list[LoraTag]]:
    """Take `<lora:...>` tags out of `text`: (the text without them, the tags in order).

    Other extra-network tags (`<hypernet:...>`) are removed with a PromptWarning: not supported.
    """
    tags: list[LoraTag] = []
    if "<" not in text:
        return text, tags

    def take(match: re.Match) -> str:
        kind = match.group(1).lower()
        if kind in ("lora", "lyco"):
            tags.append(_lora_tag(match.group(0), match.group(2), setting))
        else:
            warnings.warn(f"{setting}: {match.group(0)} removed: <{kind}:...> networks are not supported "
                          "(only <lora:name:weight>)", PromptWarning, stacklevel=4)
        return ""

    stripped = _EXTRA_NETWORK.sub(take, text)
    return (stripped.strip() if tags or stripped != text else text), tags


def _lora_tag(tag: str, arguments: str, setting: str) -> LoraTag:
    """`name[:te[:unet]]` with optional `te=` / `unet=`; the UNet weight defaults to the text encoder's."""
    positional, named = [], {}
    for item in arguments.split(":"):
        key, sep, value = item.partition("=")
        if sep:
            named[key.strip()] = value.strip()
        else:
            positional.append(item.strip())
    if not positional or not positional[0]:
        raise SettingsError(f"{setting}: {tag} has no LoRA name; write <lora:name:weight>, e.g. <lora:add_detail:0.8>")
    unknown = sorted(set(named) - {"te", "unet"})
    if unknown:
        warnings.warn(f"{setting}: {tag}: {', '.join(unknown)} ignored (only te= and unet= are read)",
                      PromptWarning, stacklevel=5)
    text_encoder = _weight(named.get("te", positional[1] if len(positional) > 1 else "1"), tag, setting)
    unet = _weight(named.get("unet", positional[2] if len(positional) > 2 else None), tag, setting, text_encoder)
    return LoraTag(positional[0], text_encoder, unet)


def _weight(text: str | None, tag: str, setting: str, default: float = 1.0) -> float:
    if text is None or text == "":
        return default
    value = _number(text)
    if value is None or not np.isfinite(value):
        raise SettingsError(f"{setting}: {tag}: {text!r} is not a weight; write a number, e.g. <lora:name:0.8>")
    return value


def lora_names(text: str) -> list[str]:
    """The names of the LoRAs `<lora:name:...>` (or `<lyco:...>`) tags in `text` load, in order."""
    names = []
    for match in _EXTRA_NETWORK.finditer(text):
        positional = [item.strip() for item in match.group(2).split(":") if "=" not in item]
        if match.group(1).lower() in ("lora", "lyco") and positional and positional[0]:
            names.append(positional[0])  # as _lora_tag reads it: the first argument without `=`
    return names


def find_lora(name: str, folders: Sequence[Path]) -> Path | None:
    """`name.safetensors` in the first folder that has it (directly, else in a subfolder); None if absent.

    A name may hold a subfolder (`styles/ink`) but never leave its folder.
    """
    file_name = name if name.lower().endswith(LORA_SUFFIX) else name + LORA_SUFFIX
    for folder in folders:
        root = Path(folder).resolve()
        direct = (root / file_name).resolve()
        if direct.is_relative_to(root) and direct.is_file():
            return direct
        if "/" not in file_name and "\\" not in file_name and root.is_dir():
            found = sorted(root.rglob(file_name))
            if found:
                return found[0].resolve()
    return None


# ---------------------------------------------------------------------------------- backticks


def backtick_expressions(text: str) -> list[str]:
    """The expressions inside `...` in a prompt, in order."""
    return _BACKTICK.findall(text)


def fill_backticks(text: str, values: Sequence[float]) -> str:
    """Replace each `...` part of `text` by the matching value, written as a plain decimal."""
    return backtick_filler(text)(values)


def backtick_filler(text: str):
    """A function values -> `text` with its `...` parts replaced (the text is split once, for many frames)."""
    pieces = _BACKTICK.split(text)  # literal, expression, literal, ..., literal
    literals = pieces[::2]

    def fill(values: Sequence[float]) -> str:
        out = [literals[0]]
        for value, literal in zip(values, literals[1:]):
            out += (format_number(value), literal)
        return "".join(out)

    return fill


def format_number(value: float) -> str:
    """1 -> "1", 0.25 -> "0.25", 1/3 -> "0.333333": at most 6 decimals and never an exponent
    (A1111's `:weight` has none)."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
