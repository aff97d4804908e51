"""The variables a schedule may use (t, max_f, s, fps, sec, bpm, beat, audio features), built only when used."""
from __future__ import annotations

import difflib
import keyword
import math
import re

import numexpr
import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.schedules.expressions import _ARITY, _Compiled
from deforum_engine.schedules.grammar import _Problem


AUDIO_VARIABLES = ("amp", "onset", "pulse", "bass", "mid", "treble")
TEMPO_VARIABLES = ("bpm", "beat")
BUILTIN_VARIABLES = ("t", "max_f", "s", "fps", "sec", "pi", "e")


def schedule_variables(max_frames: int, seed: float = 0, fps: float = 15, variables: dict | None = None) -> dict:
    """The names a schedule may use: t, max_f, s, fps, sec, pi, e, bpm/beat, and the caller's variables."""
    scope = _Scope(_check_max_frames(max_frames, "schedule"), seed, fps, variables)
    return {name: scope.value(name) for name in scope.known}


class _Scope:
    """The variables of one evaluation; t, sec and beat are only built when an expression uses them."""

    def __init__(self, frames: int, seed, fps, variables: dict | None):
        self.frames = frames
        self.fps = _number("fps", fps, positive=True)
        self.scalars = {"max_f": float(frames - 1), "s": _number("seed", seed), "fps": self.fps,
                        "pi": math.pi, "e": math.e}
        self.arrays: dict[str, np.ndarray] = {}
        for name, value in (variables or {}).items():
            _check_variable_name(name)
            value = _variable_value(name, value, frames)
            (self.arrays if isinstance(value, np.ndarray) else self.scalars)[name] = value
        if "bpm" in self.arrays or self.scalars.get("bpm", 1.0) <= 0:
            raise SettingsError(f"variables: bpm must be one positive number, got {variables['bpm']!r}")
        self.derived = ("t", "sec") + (("beat",) if "bpm" in self.scalars and "beat" not in self.arrays
                                        and "beat" not in self.scalars else ())
        self.varying = set(self.derived) | set(self.arrays)
        self.known = sorted(self.varying | set(self.scalars))
        self.fixed = sorted(self.scalars)  # what a key may use

    def value(self, name: str):
        """A scalar, or the per-frame array (built once for t, sec and beat)."""
        if name in self.scalars:
            return self.scalars[name]
        if name not in self.arrays:  # derived
            if name == "t":
                self.arrays[name] = np.arange(self.frames, dtype=np.float64)
            elif name == "sec":
                self.arrays[name] = self.value("t") / self.fps
            else:
                self.arrays[name] = self.value("sec") * self.scalars["bpm"] / 60.0
        return self.arrays[name]

    def check(self, compiled: _Compiled, in_key: bool) -> None:
        """Every name the expression uses must be known (keys: only names that do not vary per frame)."""
        known = self.fixed if in_key else self.known
        for name, offset in compiled.names:
            if name not in known:
                what, hint = _unknown_name(name, known, in_key, self.varying)
                raise _Problem(what, offset, hint)

    def over(self, names, start: int, stop: int) -> dict:
        return {name: self.value(name)[start:stop] if name in self.varying else self.scalars[name] for name in names}

    def take(self, names, frames: np.ndarray) -> dict:
        return {name: self.value(name)[frames] if name in self.varying else self.scalars[name] for name in names}

    def at(self, names, frame: int) -> dict:
        """Values at one frame; past the last frame t, sec and beat go on and arrays keep their last value."""
        sec = frame / self.fps
        derived = {"t": float(frame), "sec": sec, "beat": sec * self.scalars.get("bpm", 0) / 60.0}
        values = {}
        for name in names:
            if name in self.scalars:
                values[name] = self.scalars[name]
            elif name in self.derived:
                values[name] = derived[name]
            else:
                values[name] = float(self.arrays[name][min(frame, self.frames - 1)])
        return values


def _check_variable_name(name) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or keyword.iskeyword(name):
        raise SettingsError(f"variables: {name!r} is not a valid variable name (letters, digits and _)")
    numexpr_names = getattr(getattr(numexpr, "expressions", None), "functions", {})
    if name in BUILTIN_VARIABLES or name in _ARITY or name in numexpr_names or name.startswith("__"):
        raise SettingsError(f"variables: {name!r} is a built-in name and cannot be redefined")


def _variable_value(name: str, value, frames: int):
    """A finite number, or a finite float64 array with one value per frame."""
    if np.ndim(value) == 0:
        return _number(f"variables: {name}", value)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SettingsError(f"variables: {name} must be a number or one number per frame") from None
    if array.shape != (frames,):
        raise SettingsError(f"variables: {name} has shape {array.shape}; expected {frames} values, one per frame")
    if not np.isfinite(array).all():
        raise SettingsError(f"variables: {name} is not finite at frame {int(np.flatnonzero(~np.isfinite(array))[0])}")
    return array


def _number(name: str, value, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingsError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0):
        raise SettingsError(f"{name}: expected a finite{' positive' if positive else ''} number, got {value!r}")
    return number


def _check_max_frames(max_frames, setting: str) -> int:
    if isinstance(max_frames, (bool, np.bool_)) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise SettingsError(f"{setting}: max_frames must be a positive whole number, got {max_frames!r}")
    return int(max_frames)


def _unknown_name(name: str, known: list[str], in_key: bool, frame_varying: set[str]) -> tuple[str, str]:
    """(what, hint) for a name that is not available."""
    if name in AUDIO_VARIABLES:
        return f"{name!r} needs a soundtrack", "set soundtrack_path to use the audio variables"
    if name in TEMPO_VARIABLES:
        return f"{name!r} needs a tempo", "set bpm (or soundtrack_path, to detect it)"
    if in_key and name in frame_varying:
        return f"{name!r} changes per frame and cannot be used in a key", "keys may use " + ", ".join(known)
    close = difflib.get_close_matches(name, known, 1)
    suggestion = f"did you mean {close[0]}? " if close else ""
    return f"unknown variable {name!r}", f"{suggestion}known variables: {', '.join(known)}"

