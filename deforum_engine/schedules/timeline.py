"""Keyframes -> one value per frame, evaluated vectorised with numexpr (Deforum's interpolation rules)."""
from __future__ import annotations

import bisect
import math
import warnings

import numexpr
import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.schedules.expressions import _Compiled, _compile, _compile_value
from deforum_engine.schedules.grammar import (Keyframe, _INTEGER, _KEYED, _NUMBER, _Problem, _error, _quote,
                                              parse_schedule)
from deforum_engine.schedules.scope import _Scope, _check_max_frames


class _EvalFailure(Exception):
    """numexpr could not evaluate checked text (e.g. a constant division by zero)."""


def _run(expr: str, local_dict: dict) -> np.ndarray:
    """numexpr on whitelisted text with explicit variables only (no caller frames); float64 result."""
    try:
        with np.errstate(all="ignore"):
            result = numexpr.evaluate(expr, local_dict=local_dict, global_dict={}, sanitize=True)
    except ZeroDivisionError:
        raise _EvalFailure("it divides by zero") from None
    except OverflowError:
        raise _EvalFailure("a number gets too large (overflow)") from None
    except (ArithmeticError, ValueError, TypeError, KeyError, NotImplementedError, RuntimeError,
            MemoryError) as exc:
        if "opcode" in str(exc) or "operand" in str(exc):
            raise _EvalFailure(f"unsupported operation ({exc}); & | ~ apply to comparisons, "
                               "e.g. (t>5) & (t<10)") from None
        raise _EvalFailure(f"{type(exc).__name__}: {exc}") from None
    if np.iscomplexobj(result):  # numexpr folds constants in Python, where (-1)**0.5 is complex: NaN as on frames
        result = np.where(np.imag(result) == 0, np.real(result), np.nan)
    return np.asarray(result, dtype=np.float64)


_NAN_HINT = ("values must be finite numbers (a power or root of a negative number, or 0/0?); to fill such frames "
             "from the frames around them as Deforum does, set deforum_nan_fill = true")


def _checked_run(kf: Keyframe, expr: str, local_dict: dict, first: int, frames: np.ndarray | None = None,
                 allow_nan: bool = False):
    """_run, then the finite check (NaN passes when allow_nan); frames evaluated are `frames`, or first, first + 1..."""
    try:
        values = _run(expr, local_dict)
    except _EvalFailure as failure:
        raise _Problem(f"the expression at column {kf.value_column} cannot be evaluated at frame {first}",
                       None, str(failure), frame=first) from None
    finite = np.isfinite(values)
    if not finite.all():
        bad_mask = np.isinf(values) if allow_nan else ~finite
        if not bad_mask.any():
            return values
        bad = 0 if values.ndim == 0 else int(np.flatnonzero(bad_mask)[0])
        frame = int(frames[bad]) if frames is not None and values.ndim else first + bad
        value = values.flat[bad]
        hint = _NAN_HINT if np.isnan(value) else "values must be finite numbers (a division by zero, log of 0 or an overflow?)"
        raise _Problem(f"the expression at column {kf.value_column} gives {value} at frame {frame}", None, hint,
                       frame=frame)
    return values


def _frame_of(key: str, scope: _Scope) -> int:
    """A key's frame number: an integer, or an expression truncated with int(); never negative."""
    if not key:
        raise _Problem("empty frame key", 0, "expected a frame number, e.g. 0:(1.0)")
    if len(key) <= 15 and _INTEGER.fullmatch(key):
        return int(key)
    compiled = _compile(key)
    scope.check(compiled, in_key=True)
    try:
        value = float(_run(compiled.expr, scope.at([name for name, _ in compiled.names], 0)))
    except _EvalFailure as failure:
        raise _Problem("the frame key cannot be evaluated", 0, str(failure)) from None
    if not math.isfinite(value) or value >= 2**53:
        raise _Problem(f"the frame key gives {value}", 0, "expected a frame number below 2**53")
    if value < 0:
        raise _Problem(f"the frame key is negative ({value:g})", 0, "frames count from 0")
    return int(value)


def _keyframe_frame(kf: Keyframe, scope: _Scope, setting: str) -> int:
    try:
        return _frame_of(kf.key_text, scope)
    except _Problem as problem:
        raise _error(setting, kf.label, kf.text, problem.shifted(kf.key_column - 1)) from None


def _keyframe_value(kf: Keyframe, scope: _Scope, setting: str) -> _Compiled:
    try:
        compiled = _compile_value(kf.value_text)
        scope.check(compiled, in_key=False)
        return compiled
    except _Problem as problem:
        raise _error(setting, kf.label, kf.text, problem.shifted(kf.value_column - 1)) from None


def _constant(text, setting: str) -> float | None:
    """The value of a bare number or numeric string; None for a keyframe string."""
    if isinstance(text, str):
        if not _NUMBER.fullmatch(text):
            return None
        value = float(text)
    elif isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, (bool, np.bool_)):
        value = float(text)
    else:
        raise SettingsError(f"{setting}: expected a schedule like 0:(1.0) or a number, got {text!r}")
    if not math.isfinite(value):
        raise SettingsError(f"{setting}: expected a finite number, got {text!r}")
    return value


def _latest_by_frame(frames: list[int]) -> tuple[list[int], list[int]]:
    """Sorted distinct frames, and for each the position of the last entry for it (the later wins)."""
    latest = {frame: position for position, frame in enumerate(frames)}
    order = sorted(latest)
    return order, [latest[frame] for frame in order]


class ScheduleWarning(UserWarning):
    """A schedule was read the lenient way Deforum reads it (NaN frames filled, stray text repaired)."""


def evaluate_schedule(text, max_frames: int, seed: float = 0, fps: float = 15, variables: dict | None = None,
                      setting: str = "schedule", nan_fill: bool = False) -> np.ndarray:
    """Per-frame float64 values of a number schedule (a keyframe string, or a number for a constant).

    With nan_fill, frames whose expression gives NaN are filled as Deforum fills them (pandas
    `interpolate(limit_direction='both')`): linearly between the finite frames around them, with the
    nearest finite value before the first and after the last; one ScheduleWarning says how many.
    """
    frames = _check_max_frames(max_frames, setting)
    constant = _constant(text, setting)
    if constant is not None:
        return np.full(frames, constant)
    scope = _Scope(frames, seed, fps, variables)
    keyframes = parse_schedule(text, setting)
    keys, compiled = [], []
    for kf in keyframes:  # key then value, so the first fault in reading order is the one reported
        keys.append(_keyframe_frame(kf, scope, setting))
        compiled.append(_keyframe_value(kf, scope, setting))
    order, positions = _latest_by_frame(keys)
    timeline = _Timeline(scope, order, [keyframes[p] for p in positions], [compiled[p] for p in positions], nan_fill)
    try:
        values = timeline.values()
    except _Located as located:
        raise _error(setting, located.keyframe.label, located.keyframe.text, located.problem) from None
    if timeline.filled:
        count, frame, kf = timeline.filled
        warnings.warn(f"{_quote(setting, kf.label, kf.text)} gives NaN from frame {frame}: {count} of {frames} "
                      f"frames filled by linear interpolation from the finite frames around them, as Deforum "
                      f"does (deforum_nan_fill)", ScheduleWarning, stacklevel=2)
    return values


class _Located(Exception):
    def __init__(self, keyframe: Keyframe, problem: _Problem):
        super().__init__(problem.what)
        self.keyframe, self.problem = keyframe, problem


class _Timeline:
    """Distinct keys in frame order -> one value per frame, by the rules in the module docstring."""

    def __init__(self, scope: _Scope, order: list[int], keyframes: list[Keyframe], compiled: list[_Compiled],
                 nan_fill: bool = False):
        self.scope, self.n = scope, scope.frames
        self.nan_fill = nan_fill
        self.filled: tuple[int, int, Keyframe] | None = None  # (frames filled, first one, its keyframe)
        cut = bisect.bisect_left(order, self.n)
        self.keyframes, self.compiled = keyframes[:cut], compiled[:cut]
        self.starts = np.array(order[:cut], dtype=np.int64)
        self.ends = np.append(self.starts[1:], self.n)
        # Only the first key at or past the end matters: its value at its frame is an interpolation target.
        self.tail = (order[cut], keyframes[cut], compiled[cut]) if cut < len(order) else None

    def values(self) -> np.ndarray:
        out = np.empty(self.n)
        groups: dict[str, list[int]] = {}
        for segment, compiled in enumerate(self.compiled):
            if compiled.constant is None:
                groups.setdefault(compiled.expr, []).append(segment)
        for segments in groups.values():
            self.fill_expression(out, segments)
        tail_value = self.tail_value()
        if len(self.starts):
            self.fill_constants(out, tail_value)
        first = int(self.starts[0]) if len(self.starts) else self.n
        out[:first] = out[first] if first < self.n else tail_value  # before the first key
        if self.nan_fill:
            self.fill_nan(out)
        self.check_finite(out)
        return out

    def fill_nan(self, out: np.ndarray) -> None:
        """Deforum's NaN rule: linear between the finite frames around a NaN, the nearest one at the ends."""
        if not np.isnan(out).any():
            return
        source, kf = self.nan_source(np.flatnonzero(np.isnan(out)))
        for start, compiled in zip(self.starts.tolist(), self.compiled):
            if compiled.constant is not None:  # a constant key keeps its value even when its target was NaN
                out[start] = compiled.constant
        missing, known = np.flatnonzero(np.isnan(out)), np.flatnonzero(np.isfinite(out))
        if not len(known):
            raise _Located(kf, _Problem("the schedule gives NaN on every frame", None,
                                        "nothing to fill from: values must be finite numbers"))
        out[missing] = np.interp(missing, known, out[known])
        self.filled = (len(missing), source, kf)

    def nan_source(self, nan_frames: np.ndarray) -> tuple[int, Keyframe]:
        """The first NaN frame an expression key gave, and that key (a constant only inherits NaN as its target)."""
        if len(self.keyframes):
            segments = np.maximum(np.searchsorted(self.starts, nan_frames, side="right") - 1, 0)
            is_expression = np.array([c.constant is None for c in self.compiled])[segments]
            if is_expression.any():
                at = int(np.argmax(is_expression))
                return int(nan_frames[at]), self.keyframes[int(segments[at])]
        if self.tail is not None and self.tail[2].constant is None:
            return int(self.tail[0]), self.tail[1]
        return int(nan_frames[0]), self.keyframe_for(int(nan_frames[0]))

    def fill_expression(self, out: np.ndarray, segments: list[int]) -> None:
        """One numexpr call for every frame an expression covers, however many keyframes use it."""
        compiled = self.compiled[segments[0]]
        names = [name for name, _ in compiled.names]
        if len(segments) == 1:
            start, stop = int(self.starts[segments[0]]), int(self.ends[segments[0]])
            where: slice | np.ndarray = slice(start, stop)
            frames, local_dict = None, self.scope.over(names, start, stop)
        else:
            frames = _ranges(self.starts[segments], self.ends[segments])
            start, where, local_dict = int(frames[0]), frames, self.scope.take(names, frames)
        try:
            out[where] = _checked_run(self.keyframes[segments[0]], compiled.expr, local_dict, start, frames,
                                      self.nan_fill)
        except _Problem as problem:
            raise _Located(self.keyframe_at(problem, segments), problem) from None

    def keyframe_at(self, problem: _Problem, segments: list[int]) -> Keyframe:
        """The keyframe whose segment holds the frame a problem names."""
        segment = int(np.searchsorted(self.starts, problem.frame, side="right")) - 1
        return self.keyframes[segment if segment in segments else segments[0]]

    def keyframe_for(self, frame: int) -> Keyframe:
        """The keyframe whose segment holds frame (the first key for frames before it)."""
        if not len(self.keyframes):
            return self.tail[1]
        return self.keyframes[max(int(np.searchsorted(self.starts, frame, side="right")) - 1, 0)]

    def tail_value(self) -> float | None:
        if self.tail is None:
            return None
        frame, kf, compiled = self.tail
        if compiled.constant is not None:
            return compiled.constant
        local_dict = self.scope.at([name for name, _ in compiled.names], frame)
        try:
            return float(_checked_run(kf, compiled.expr, local_dict, frame, allow_nan=self.nan_fill))
        except _Problem as problem:
            raise _Located(kf, problem) from None

    def fill_constants(self, out: np.ndarray, tail_value: float | None) -> None:
        """Constant keys: a straight line toward the next key's value at its frame, or a hold after the last."""
        constants = np.array([np.nan if c.constant is None else c.constant for c in self.compiled])
        is_constant = ~np.isnan(constants)
        if not is_constant.any():
            return
        at_key = np.where(is_constant, constants, out[self.starts])  # expression keys are filled by now
        target, span = np.empty(len(constants)), np.ones(len(constants))
        target[:-1], span[:-1] = at_key[1:], np.diff(self.starts)
        if self.tail is None:
            target[-1] = constants[-1]
        else:
            target[-1], span[-1] = tail_value, float(self.tail[0] - int(self.starts[-1]))
        with np.errstate(all="ignore"):
            slope = (target - constants) / span
        starts, ends = self.starts[is_constant], self.ends[is_constant]
        constants, slope = constants[is_constant], slope[is_constant]
        with np.errstate(all="ignore"):  # overflow shows up in check_finite, with the frame
            if len(starts) <= 16:
                for start, stop, value, step in zip(starts.tolist(), ends.tolist(), constants, slope):
                    out[start:stop] = value if step == 0 else value + step * np.arange(stop - start)
                return
            lengths = ends - starts  # many keys (an export with a key on every frame): no Python loop
            frames = _ranges(starts, ends)
            offsets = frames - np.repeat(starts, lengths)
            out[frames] = np.repeat(constants, lengths) + np.repeat(slope, lengths) * offsets

    def check_finite(self, out: np.ndarray) -> None:
        finite = np.isfinite(out)
        if finite.all():
            return
        frame = int(np.flatnonzero(~finite)[0])
        kf = self.keyframe_for(frame)
        raise _Located(kf, _Problem(f"interpolating from column {kf.value_column} gives {out[frame]} at frame {frame}",
                                    None, "values must be finite numbers; use smaller values"))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The frames of several [start, end) ranges, concatenated, without a Python loop."""
    lengths = ends - starts
    if len(starts) == 1:
        return np.arange(starts[0], ends[0])
    offsets = starts - np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.arange(int(lengths.sum())) + np.repeat(offsets, lengths)


def evaluate_string_schedule(text, max_frames: int, seed: float = 0, fps: float = 15,
                             variables: dict | None = None, setting: str = "schedule") -> list[str]:
    """Per-frame strings of a string schedule (`0:("Euler a"), 40:("DDIM")`): each value holds until the next key.

    Text without a `key:(` entry (e.g. `Euler a`) is a constant.
    """
    frames = _check_max_frames(max_frames, setting)
    if not isinstance(text, str):
        raise SettingsError(f"{setting}: expected a string schedule like 0:(\"Euler a\"), got {text!r}")
    if not _KEYED.search(text):
        return [_unquote(text.strip())] * frames
    scope = _Scope(frames, seed, fps, variables)
    keyframes = parse_schedule(text, setting)
    keys, values = [], []
    for kf in keyframes:
        keys.append(_keyframe_frame(kf, scope, setting))
        values.append(_string_value(kf, setting))
    order, positions = _latest_by_frame(keys)
    out = [values[positions[0]]] * frames  # before the first key, the first value holds
    bounds = order[1:] + [frames]
    for frame, stop, position in zip(order, bounds, positions):
        if frame >= frames:
            break
        stop = min(stop, frames)
        out[frame:stop] = [values[position]] * (stop - frame)
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1]
    return text


def _string_value(kf: Keyframe, setting: str) -> str:
    value = kf.value_text
    if value[:1] in ("\"", "'") and (len(value) < 2 or value[-1] != value[0] or value[0] in value[1:-1]):
        problem = _Problem("expected one quoted string", kf.value_column - 1, 'e.g. 0:("Euler a")')
        raise _error(setting, kf.label, kf.text, problem)
    return _unquote(value)


def evaluate_frame_key(text, max_frames: int, seed: float = 0, fps: float = 15, variables: dict | None = None,
                       setting: str = "prompts") -> int:
    """A keyframe key's frame: `30`, `max_f/2` or `"max_f-2"`, truncated with int(); negative is an error."""
    frames = _check_max_frames(max_frames, setting)
    if isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, (bool, np.bool_)):
        if not math.isfinite(float(text)) or text < 0:
            raise SettingsError(f'{setting}: key ("{text}") : not a frame number: expected 0 or more')
        return int(text)
    if not isinstance(text, str):
        raise SettingsError(f"{setting}: expected a frame key like 30 or \"max_f/2\", got {text!r}")
    shown = text.strip()
    key, at = (shown[1:-1], 1) if len(shown) >= 2 and shown[0] in "\"'" and shown[-1] == shown[0] else (shown, 0)
    at += len(key) - len(key.lstrip())
    try:
        return _frame_of(key.strip(), _Scope(frames, seed, fps, variables))
    except _Problem as problem:
        raise _error(setting, "key", shown, problem.shifted(at)) from None


def evaluate_expression(source: str, frames, max_frames: int, seed: float = 0, fps: float = 15,
                        variables: dict | None = None, setting: str = "expression",
                        label: str = "expression") -> np.ndarray:
    """One expression's float64 values at `frames` (frame numbers), under the schedules' whitelist and variables.

    For expressions outside schedules (Deforum's backtick prompt maths). Past the last frame t, sec
    and beat go on counting and per-frame variables keep their last value. Errors read
    `setting: label ("source") : what at column N`.
    """
    frames = np.asarray(frames, dtype=np.int64)
    scope = _Scope(_check_max_frames(max_frames, setting), seed, fps, variables)
    try:
        compiled = _compile(source)
        scope.check(compiled, in_key=False)
        names = [name for name, _ in compiled.names]
        local_dict = scope.take([name for name in names if name not in scope.derived],
                                np.minimum(frames, scope.frames - 1))
        sec = frames / scope.fps
        derived = {"t": frames.astype(np.float64), "sec": sec, "beat": sec * scope.scalars.get("bpm", 0.0) / 60.0}
        local_dict.update({name: derived[name] for name in names if name in scope.derived})
        values = np.broadcast_to(_run(compiled.expr, local_dict), frames.shape)
    except _Problem as problem:
        raise _error(setting, label, source, problem) from None
    except _EvalFailure as failure:
        raise _error(setting, label, source, _Problem("cannot be evaluated", None, str(failure))) from None
    bad = ~np.isfinite(values)
    if bad.any():
        frame = int(frames[np.argmax(bad)])
        raise _error(setting, label, source, _Problem(f"gives {values[np.argmax(bad)]} at frame {frame}", None,
                                                      "values must be finite numbers"))
    return values

