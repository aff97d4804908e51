"""Reading one Deforum value: converters that turn a file's value into the engine's (or say what is
wrong with it), and the `Reader` that hands them out and remembers which keys a file used.

A converter raises `Unusable` with what to write instead; the `Reader` turns that into a
SettingsError naming the file and the key.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from deforum_engine.config import choices
from deforum_engine.config.importers.parseq import is_url
from deforum_engine.errors import SettingsError


class Unusable(ValueError):
    """A converter's complaint about a value: what is wrong and what to write instead."""


def read_whole(value: Any) -> int:
    try:
        value = read_number(value)
    except Unusable:
        raise Unusable("expected a whole number") from None
    if value != int(value):
        raise Unusable("expected a whole number")
    return int(value)


def read_number(value: Any) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise Unusable("expected a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unusable("expected a finite number")
    return value


def read_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if not isinstance(value, str) or value.strip().lower() not in words:
        raise Unusable("expected true or false")
    return words[value.strip().lower()]


def read_schedule(value: Any) -> str | int | float:
    """A keyframe schedule string, or a number (a constant schedule); numeric text becomes a number."""
    if isinstance(value, str) and value.strip():
        try:
            return read_number(value)
        except Unusable:
            return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return read_number(value)
    raise Unusable('expected a schedule such as "0: (1.0), 30: (1.5)" or a number')


def read_text(value: Any) -> str:
    if not isinstance(value, str):
        raise Unusable("expected text")
    return value


def read_depth_algorithm(value: Any) -> str:
    spelled = choices.canonical(value, choices.DEPTH_ALGORITHMS, choices.DEPTH_ALGORITHM_ALIASES) \
        if isinstance(value, str) else None
    if spelled is None:
        raise Unusable(f"expected one of {', '.join(choices.DEPTH_ALGORITHMS)}")
    return spelled


def read_choice(*allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in allowed:
            raise Unusable(f"expected one of {', '.join(allowed)}")
        return text
    return convert


def read_named(*allowed: str) -> Callable[[Any], str]:
    """One of `allowed`, matched without regard to case, returned as spelt there."""
    by_key = {name.lower(): name for name in allowed}

    def convert(value: Any) -> str:
        key = "none" if value is None else value.strip().lower() if isinstance(value, str) else None
        if key not in by_key:
            raise Unusable(f"expected one of {', '.join(allowed)}")
        return by_key[key]
    return convert


class Reader:
    """One Deforum file: hands out converted values and remembers which keys were read."""

    def __init__(self, raw: dict, source: str):
        self.raw, self.source, self.used = raw, source, set()

    def has(self, key: str) -> bool:
        return key in self.raw

    def take(self, key: str, convert: Callable[[Any], Any] = lambda v: v, default: Any = None) -> Any:
        """The converted value of key (default when absent); marks the key as read."""
        if key not in self.raw:
            return default
        self.used.add(key)
        try:
            return convert(self.raw[key])
        except Unusable as problem:
            raise self.error(key, f"{self.raw[key]!r}: {problem}") from None

    def first(self, *keys: str) -> str | None:
        """The first of keys the file has (all of them count as read)."""
        present = [key for key in keys if key in self.raw]
        self.used.update(present)
        return present[0] if present else None

    def error(self, key: str, message: str) -> SettingsError:
        return SettingsError(f"{self.source}: {key} = {message}")


def read_local_path(reader: Reader, key: str, what: str) -> str:
    """A non-empty, non-URL path from key, kept as written."""
    value = reader.raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise reader.error(key, f"{value!r}: {what} is switched on but has no path; give the file's path")
    if is_url(value):
        raise reader.error(key, f"{value!r}: URLs are not fetched (renders run without network); "
                                f"download the file and give its path")
    return value.strip()


def read_legacy_switch(on: str, *allowed: str) -> Callable[[Any], str]:
    """One of `allowed`; an old true / false means `on` / "None"."""
    named = read_named(*allowed)
    return lambda value: ({True: on, False: "None"}[value] if isinstance(value, bool) else named(value))
