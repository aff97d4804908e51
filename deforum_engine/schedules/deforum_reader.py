"""Deforum files: stray schedule text read the way Deforum Studio reads its own presets."""
from __future__ import annotations

import re
from typing import NamedTuple

from deforum_engine.errors import SettingsError
from deforum_engine.schedules.expressions import _compile, _compile_value
from deforum_engine.schedules.grammar import (
    _INTEGER,
    _parse_entry,
    _Problem,
    _quote,
    _split_entries,
)


class DeforumReading(NamedTuple):
    text: str  # the schedule in the engine's grammar; the input itself when nothing needed reading leniently
    notes: tuple[str, ...]  # one per keyframe read leniently, naming the setting and the keyframe


# A number as Deforum's check_is_number accepts it, once quotes and parentheses are removed.
_DEFORUM_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_NEXT_KEY = re.compile(r"(?:[0-9]+|\"[^\"]*\"|'[^']*')\s*:")


def read_deforum_schedule(text, setting: str = "schedule") -> DeforumReading:
    """A schedule from a Deforum file, with the stray text Deforum tolerates read as Deforum Studio reads it.

    Entries the engine's grammar accepts are kept as written. Otherwise, as Studio's parser does: the
    value is the text between an entry's first and second ':' (`0:0: (x)` is 0:(0)), and a value that
    is a plain number once its parentheses and quotes are dropped is that number (`(0).3` is 0.3).
    Keyframes with no comma between them (`0: (1) 10: (2)`) are split. Nothing is evaluated: every
    value read must pass the expression whitelist, and text that cannot be read is returned as it is,
    so the plan reports it with the usual error.
    """
    if not isinstance(text, str) or not text.strip():
        return DeforumReading(text, ())
    try:
        spans = _split_entries(text, setting)
    except SettingsError:
        return DeforumReading(text, ())
    entries, notes = [], []
    keys = {_integer_key(text[start:end]) for start, end in spans} - {None}
    for index, (start, end) in enumerate(spans, 1):
        entry = text[start:end].strip()
        read, note = _read_deforum_entry(entry, keys)
        entries += read
        if note:
            notes.append(f"{_quote(setting, f'keyframe {index}', entry)} {note}")
    return DeforumReading(", ".join(entries) if notes else text, tuple(notes))


def _read_deforum_entry(entry: str, keys: set[int] = frozenset()) -> tuple[list[str], str]:
    """The entry's keyframes in the engine's grammar, and a note when they had to be read leniently.

    `keys`: the schedule's keys (each entry's first), to check split-off keyframes against."""
    if _reads_as_written(entry):
        return [entry], ""
    studio = _studio_entry(entry)
    if studio is not None:
        read, why = studio
        return [read], f"read as {read} as Deforum Studio does ({why})"
    pieces = _split_on_spaces(entry)
    if pieces is None:
        return [entry], ""
    read = [piece if _reads_as_written(piece) else _studio_entry(piece)[0] for piece in pieces]
    backwards = _keys_going_back(read, keys)
    if backwards:
        kept = [piece for piece in read if piece not in backwards]
        return kept, (f"has no comma between its keyframes; Deforum's parser takes only the text up to the "
                      f"second ':' of an entry, so {', '.join(backwards)} is never a keyframe there (it would "
                      f"go back to a frame that has its own keyframe): read as {', '.join(kept)} (Deforum "
                      f"itself stops with a syntax error at this keyframe's frame)")
    return read, (f"has no comma between its keyframes: read as {', '.join(read)} "
                  f"(Deforum itself stops with a syntax error at this keyframe's frame)")


def _integer_key(entry: str) -> int | None:
    key = entry.split(":", 1)[0].strip().strip("\"'")
    return int(key) if _INTEGER.fullmatch(key) else None


def _keys_going_back(pieces: list[str], keys: set[int]) -> list[str]:
    """Split-off keyframes (after the entry's first) at or before the entry's own frame, or at a frame that
    another entry keys: reading them as keyframes would overwrite a value Deforum reads from its own entry."""
    first = _integer_key(pieces[0])
    going_back = []
    for piece in pieces[1:]:
        frame = _integer_key(piece)
        if frame is not None and ((first is not None and frame <= first) or frame in keys):
            going_back.append(piece)
    return going_back


def _reads_as_written(entry: str) -> bool:
    """True when the engine's grammar and whitelist accept the entry (variable names are checked later)."""
    try:
        keyframe = _parse_entry(1, entry)
        if not _INTEGER.fullmatch(keyframe.key_text):
            _compile(keyframe.key_text)
        _compile_value(keyframe.value_text)
    except _Problem:
        return False
    return True


def _studio_entry(entry: str) -> tuple[str, str] | None:
    """`key:(value)` by Deforum Studio's split on ':', and why it differs from the text; None if unreadable."""
    parts = entry.split(":")
    key, value = parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""
    if not key or not value:
        return None
    bare = re.sub(r"[()\"']", "", value)
    why = "it keeps the text between the first and second ':'" if len(parts) > 2 else ""
    if _DEFORUM_NUMBER.fullmatch(bare):
        value = bare
        why = why or "it drops the parentheses and quotes around a number"
    read = f"{key}:({value})"
    return (read, why or "it reads a value without its parentheses") if _reads_as_written(read) else None


def _split_on_spaces(entry: str) -> list[str] | None:
    """`0: (1) 10: (2)` -> ["0: (1)", "10: (2)"] when each piece reads; None otherwise."""
    cuts, depth = [], 0
    for pos, char in enumerate(entry):
        depth += (char == "(") - (char == ")")
        if depth == 0 and char.isspace() and _NEXT_KEY.match(entry, pos + 1) and ":" in entry[:pos]:
            cuts.append(pos + 1)
    if not cuts:
        return None
    pieces = [entry[a:b].strip() for a, b in zip([0] + cuts, cuts + [len(entry)])]
    pieces = [piece for piece in pieces if piece]
    if all(_reads_as_written(piece) or _studio_entry(piece) is not None for piece in pieces):
        return pieces
    return None

