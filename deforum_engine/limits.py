"""Upper bounds on what one settings file, jobs file or request may ask for, checked before anything grows.

Every bound has an environment variable to raise it (`serve` has options that set the same ones):

    DEFORUM_ENGINE_MAX_FRAMES       frames in one render                     (100,000)
    DEFORUM_ENGINE_MAX_KEYFRAMES    keyframes in one schedule or prompt list (10,000)
    DEFORUM_ENGINE_MAX_JOBS         jobs in one batch ([matrix] product + [[jobs]]) (1,000)
    DEFORUM_ENGINE_MAX_FILE_MB      size of a settings or jobs file          (16 MB)
    DEFORUM_ENGINE_MAX_DEPTH        nesting of a settings or jobs file       (32)
    DEFORUM_ENGINE_MAX_MEGAPIXELS   pixels of an input image                 (40 MP)

Files are read here: their size is checked before they are read, their nesting before they are
parsed (a scan of the text, so a file nested 100,000 deep never reaches the recursive parsers).
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from deforum_engine.errors import SettingsError

MB = 1024 * 1024
_ENV = {"max_frames": "DEFORUM_ENGINE_MAX_FRAMES", "max_keyframes": "DEFORUM_ENGINE_MAX_KEYFRAMES",
        "max_jobs": "DEFORUM_ENGINE_MAX_JOBS", "max_file_mb": "DEFORUM_ENGINE_MAX_FILE_MB",
        "max_depth": "DEFORUM_ENGINE_MAX_DEPTH", "max_megapixels": "DEFORUM_ENGINE_MAX_MEGAPIXELS"}


@dataclass(frozen=True)
class Limits:
    max_frames: int = 100_000
    max_keyframes: int = 10_000
    max_jobs: int = 1_000
    max_file_mb: float = 16.0
    max_depth: int = 32
    max_megapixels: float = 40.0

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with each environment variable that is set taking its place."""
        values = {}
        for field in fields(cls):
            raw = os.environ.get(_ENV[field.name], "").strip()
            if not raw:
                continue
            try:
                value = float(raw) if field.type == "float" else int(raw)
            except ValueError:
                raise SettingsError(f"{_ENV[field.name]}={raw!r}: must be a number") from None
            if value <= 0:
                raise SettingsError(f"{_ENV[field.name]}={raw!r}: must be above 0")
            values[field.name] = value
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These limits as the environment variables that set them (for `serve` and its render threads)."""
        return {_ENV[field.name]: str(getattr(self, field.name)) for field in fields(self)}


def env_name(limit: str) -> str:
    return _ENV[limit]


# ----------------------------------------------------------------------------------------- files


def read_text_file(path: Path, what: str, limits: Limits | None = None) -> str:
    """A settings / jobs file's text, refused before reading when it is larger than the limit."""
    limits = limits or Limits.from_env()
    try:
        size = path.stat().st_size
        if size > limits.max_file_mb * MB:
            raise SettingsError(f"{path}: the {what} is {size / MB:.1f} MB, larger than the {limits.max_file_mb:g} MB "
                                f"limit for {what}s; a {what} holds settings, not data (raise the limit with "
                                f"{_ENV['max_file_mb']})")
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read(int(limits.max_file_mb * MB) + 1)
    except UnicodeDecodeError as error:
        raise SettingsError(f"{path}: the {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise SettingsError(f"{path}: cannot read the {what}: {error.strerror or error}") from None


def parse_json(text: str, source: str, limits: Limits | None = None) -> Any:
    """JSON text, parsed only after its nesting is checked."""
    check_nesting(text, source, toml=False, limits=limits)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(f"{source}: not valid JSON: {error}") from None
    except RecursionError:  # only with a depth limit raised past Python's recursion limit
        raise SettingsError(f"{source}: nested too deeply to read") from None


def parse_toml(text: str, source: str, limits: Limits | None = None) -> dict[str, Any]:
    """TOML text, parsed only after its nesting (brackets and dotted keys) is checked."""
    check_nesting(text, source, toml=True, limits=limits)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{source}: not valid TOML: {error}") from None
    except RecursionError:
        raise SettingsError(f"{source}: nested too deeply to read") from None


# Strings (and TOML comments) as single tokens, read once from left to right: the possessive `*+` and
# the optional closing quote make an unterminated string end at the line's end instead of being tried
# again from every later quote (which would be quadratic).
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*+"?')
_TOML_STRING = re.compile(r'"""(?:(?!""")[\s\S])*+(?:"""|\Z)|\'\'\'(?:(?!\'\'\')[\s\S])*+(?:\'\'\'|\Z)'
                          r'|"(?:[^"\\\n]|\\.)*+"?|\'[^\'\n]*+\'?|#[^\n]*+')


def _blank_strings(match: re.Match) -> str:
    return "" if match.group(0).startswith("#") else '""'


def check_nesting(text: str, source: str, *, toml: bool, limits: Limits | None = None) -> None:
    """Refuse text nested deeper than the limit: brackets and braces outside strings, and for TOML the
    parts of a dotted key (`a.b.c = 1`, `[a.b.c]`), which nest tables as deeply."""
    limits = limits or Limits.from_env()
    bare = _TOML_STRING.sub(_blank_strings, text) if toml else _JSON_STRING.sub('""', text)
    depth = deepest = 0
    for char in re.findall(r"[\[\]{}]", bare):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
        if deepest > limits.max_depth:
            break
    if toml and deepest <= limits.max_depth:
        dots = max(part.count(".") + 1 for part in re.split(r"[=,{}\[\]\n]", bare))
        deepest = max(deepest, dots)
    if deepest > limits.max_depth:
        raise SettingsError(f"{source}: nested more than {limits.max_depth} levels deep; settings and jobs files are "
                            f"flat (raise the limit with {_ENV['max_depth']})")
