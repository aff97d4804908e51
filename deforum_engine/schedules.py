"""Keyframe schedules: Deforum's `frame:(value)` strings -> one value per frame.

A schedule is `key:(value)` entries separated by commas, e.g. `"0:(1.0), 30:(1.5+0.1*sin(t/5))"`.
A key is a frame number or a quoted expression (`"max_f-2"`); a value is a number or a numexpr
expression. Per frame (the rules Deforum users rely on):

- a constant keyframe (a plain number) interpolates linearly toward the next key's value at that
  key's frame; an expression keyframe is evaluated live at every frame up to the next key;
- after the last key a constant holds and an expression stays live; before the first key the
  first key's value at its own frame holds; of two entries for one frame the later wins;
- keys past the last frame still shape the interpolation, so trimming a render never changes the
  frames it keeps.

Schedules are untrusted text. Every expression is parsed with `ast` and checked against a
whitelist (numbers, arithmetic, comparisons, `& | ~`, the functions in FUNCTIONS, the known
variables); the text numexpr sees is rebuilt from that tree, never taken from the user. Each
distinct expression is evaluated once over all the frames it covers, and every value must be finite
(with `nan_fill`, NaN frames are filled as Deforum fills them instead).

Deforum's own parsers accept a value without parentheses (`0: 0.5`), and so does this one.
`read_deforum_schedule` goes further for imported Deforum files: it rewrites the stray text
Deforum Studio tolerates (`0:0: (...)`, `(0).3`, keyframes without commas) into this grammar.
"""
from __future__ import annotations

import ast
import bisect
import difflib
import keyword
import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numexpr
import numpy as np

from .errors import SettingsError

AUDIO_VARIABLES = ("amp", "onset", "pulse", "bass", "mid", "treble")
TEMPO_VARIABLES = ("bpm", "beat")
BUILTIN_VARIABLES = ("t", "max_f", "s", "fps", "sec", "pi", "e")

MAX_EXPRESSION_CHARS = 2_000
MAX_NESTING = 100
MAX_KEYFRAMES = 100_000
MAX_SCHEDULE_CHARS = 20_000_000

# Element-wise numexpr functions on real numbers, with their argument counts. Left out on purpose:
# the reductions (sum, prod, min, max: they would see the whole frame range at once), the complex
# ones (complex, conj, real, imag), `contains` (strings), `copy` and `ones_like`.
_ARITY = {
    **dict.fromkeys(
        ("sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh exp expm1 log log2 "
         "log10 log1p sqrt abs floor ceil round trunc sign signbit isnan isinf isfinite").split(), 1),
    **dict.fromkeys("arctan2 hypot fmod copysign nextafter maximum minimum".split(), 2),
    "where": 3,
}
_HINTS = {"max": "maximum", "min": "minimum", "int": "trunc", "pow": "**", "atan2": "arctan2",
          "atan": "arctan", "asin": "arcsin", "acos": "arccos", "ln": "log", "fabs": "abs", "if": "where"}


def _available_functions() -> tuple[str, ...]:
    """The names in _ARITY that the installed numexpr provides (where is always there)."""
    provided = getattr(getattr(numexpr, "expressions", None), "functions", None)
    if not isinstance(provided, dict):
        return tuple(sorted(_ARITY))
    return tuple(sorted(name for name in _ARITY if name == "where" or name in provided))


FUNCTIONS = _available_functions()

_NUMBER = re.compile(r"[ \t\r\n]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*")
_INTEGER = re.compile(r"[0-9]+")
_SPECIAL = re.compile(r"[(),\"']")
_BAD_CHAR = re.compile(r"[^0-9A-Za-z_ \t\r\n+\-*/%()<>=!&|~^.,]")
_KEYED = re.compile(r":[ \t\r\n]*\(")
_SIMPLE = r"\s*([0-9]+)\s*:\s*\(([^()\"',:]*)\)\s*"  # integer key, value without ( ) quotes , :
_SIMPLE_ENTRY = re.compile(_SIMPLE)
_SIMPLE_SCHEDULE = re.compile(rf"(?:{_SIMPLE},)*{_SIMPLE},?\s*")
_NEXT_ENTRY = re.compile(r",\s*(?:[0-9]+|\"[^\"]*\"|'[^']*')\s*:\s*\(")
_CHAR_HINTS = {
    ";": "a value is a single expression",
    "[": "indexing is not allowed", "]": "indexing is not allowed",
    "'": "strings are not allowed in a number schedule", '"': "strings are not allowed in a number schedule",
    ":": "a value cannot contain ':' (is a ')' or ',' missing between keyframes?)",
    "#": "comments are not allowed",
}
_ALLOWED = "allowed: numbers, + - * / // % **, comparisons, & | ~, parentheses, function calls and variables"


@dataclass(frozen=True)
class Keyframe:
    """One `key:(value)` entry as written; columns are 1-based within `text`."""

    index: int  # 1-based position among the schedule's entries
    text: str  # the entry, surrounding whitespace removed
    key_text: str  # the frame key, outer quotes removed
    value_text: str  # what is inside the value's parentheses, stripped
    key_column: int
    value_column: int

    @property
    def label(self) -> str:
        return f"keyframe {self.index}"


class _Problem(Exception):
    """A fault at a 0-based offset within some piece of text; callers add context and columns."""

    def __init__(self, what: str, offset: int | None = None, hint: str = "", frame: int | None = None):
        super().__init__(what)
        self.what, self.offset, self.hint, self.frame = what, offset, hint, frame

    def shifted(self, by: int) -> "_Problem":
        return _Problem(self.what, None if self.offset is None else self.offset + by, self.hint, self.frame)


def _quote(setting: str, label: str, text: str) -> str:
    """`zoom: keyframe 2 ("30:(1.5+")`, the text shortened and made printable."""
    shown = "".join(char if char.isprintable() else " " if char.isspace() else "\ufffd" for char in text[:120])
    shown += "..." if len(text) > 120 else ""
    return f'{setting}: {label} ("{shown}")'


def _error(setting: str, label: str, text: str, problem: _Problem) -> SettingsError:
    """`zoom: keyframe 2 ("30:(1.5+") : unbalanced parenthesis at column 9: expected ...`."""
    where = "" if problem.offset is None else f" at column {problem.offset + 1}"
    hint = f": {problem.hint}" if problem.hint else ""
    return SettingsError(f"{_quote(setting, label, text)} : {problem.what}{where}{hint}")


# ----------------------------------------------------------------------------------------------
# Grammar: schedule text -> Keyframes


def parse_schedule(text: str, setting: str = "schedule") -> list[Keyframe]:
    """Split a schedule into its `key:(value)` entries (a trailing comma is fine)."""
    if not isinstance(text, str):
        raise SettingsError(f"{setting}: expected a schedule string like 0:(1.0), got {type(text).__name__}")
    if len(text) > MAX_SCHEDULE_CHARS:
        raise SettingsError(f"{setting}: schedule is {len(text):,} characters long; at most {MAX_SCHEDULE_CHARS:,}")
    if not text.strip():
        raise SettingsError(f"{setting}: empty schedule: expected key:(value) entries, e.g. 0:(1.0)")
    if _SIMPLE_SCHEDULE.fullmatch(text):
        return _parse_simple(text, setting)
    return _parse_general(text, setting)


def _parse_simple(text: str, setting: str) -> list[Keyframe]:
    """Fast path for the common shape: integer keys, values without parentheses, quotes or commas."""
    keyframes = []
    for index, match in enumerate(_SIMPLE_ENTRY.finditer(text), 1):
        begin, value = match.start(1), match.group(2)
        value_at = match.start(2) + len(value) - len(value.lstrip()) - begin
        keyframes.append(Keyframe(index, text[begin:match.end(2) + 1], match.group(1), value.strip(), 1, value_at + 1))
    _check_count(keyframes, setting)
    return keyframes


def _parse_general(text: str, setting: str) -> list[Keyframe]:
    spans = _split_entries(text, setting)
    keyframes = []
    for index, (start, end) in enumerate(spans, 1):
        entry = text[start:end].strip()
        try:
            keyframes.append(_parse_entry(index, entry))
        except _Problem as problem:
            raise _error(setting, f"keyframe {index}", entry, problem) from None
    return keyframes


def _split_entries(text: str, setting: str) -> list[tuple[int, int]]:
    """Spans of the top-level, comma-separated entries; quotes and parentheses are opaque."""
    spans: list[tuple[int, int]] = []
    start, depth, quote, opener, quote_at = 0, 0, "", -1, -1
    last_char, last_end = ",", 0  # a quote opens only at the start of a key or a value
    for match in _SPECIAL.finditer(text):
        char, pos = match.group(), match.start()
        if quote:
            if char == quote:
                quote, last_char, last_end = "", char, pos + 1
            continue
        if char in "\"'":
            if last_char in "(," and (last_end == pos or text[last_end:pos].isspace()):
                quote, quote_at = char, pos
        elif char == "(":
            depth, opener = depth + 1, pos if depth == 0 else opener
        elif char == ")":
            depth -= 1
            if depth < 0:
                _fail_split(text, setting, spans, start, pos, "unbalanced parenthesis", "')' without a matching '('")
        elif depth == 0:
            spans.append((start, pos))
            start = pos + 1
            _check_count(spans, setting)
        last_char, last_end = char, pos + 1
    if quote:
        begin = _lstrip_at(text, start)
        _fail_split(text, setting, spans, start, len(text), "unterminated quote",
                    f"expected a closing {quote} for the one at column {quote_at - begin + 1}")
    if depth > 0:
        _fail_unbalanced(text, setting, spans, start, opener)
    if text[start:].strip() or not spans:
        spans.append((start, len(text)))  # else a trailing comma
        _check_count(spans, setting)
    return spans


def _check_count(spans: list, setting: str) -> None:
    if len(spans) > MAX_KEYFRAMES:
        raise SettingsError(f"{setting}: more than {MAX_KEYFRAMES:,} keyframes; at most {MAX_KEYFRAMES:,} are allowed")


def _lstrip_at(text: str, start: int) -> int:
    """Offset of the first non-whitespace character at or after start."""
    return start + len(text[start:]) - len(text[start:].lstrip())


def _fail_split(text, setting, spans, start, pos, what, hint):
    """Raise for a fault at absolute position pos, inside the entry that begins at start."""
    begin = _lstrip_at(text, start)
    comma = text.find(",", pos + 1) if pos < len(text) else -1
    entry = text[begin:comma if comma >= 0 else len(text)].rstrip()
    raise _error(setting, f"keyframe {len(spans) + 1}", entry, _Problem(what, min(pos - begin, len(entry)), hint))


def _fail_unbalanced(text, setting, spans, start, opener):
    """A '(' never closed: if a new `key:(` follows inside it, the ')' was most likely forgotten there."""
    begin = _lstrip_at(text, start)
    nxt = _NEXT_ENTRY.search(text, opener)
    end = nxt.start() if nxt else len(text)
    entry = text[begin:end].rstrip()
    hint = f"expected ')' to close the '(' at column {opener - begin + 1}"
    raise _error(setting, f"keyframe {len(spans) + 1}", entry, _Problem("unbalanced parenthesis", len(entry), hint))


def _parse_entry(index: int, entry: str) -> Keyframe:
    """`key:(value)` -> Keyframe; raises _Problem with offsets within entry."""
    if not entry:
        raise _Problem("empty keyframe", 0, "expected key:(value), e.g. 0:(1.0)")
    key, key_at, colon = _parse_key(entry)
    open_at = _skip_space(entry, colon + 1)
    if open_at >= len(entry):
        raise _Problem("expected '(' after ':'", open_at, "write the value in parentheses, e.g. 0:(1.0)")
    if entry[open_at] != "(":  # Deforum's parsers read `0: 0.5` too: the value is the rest of the entry
        return Keyframe(index, entry, key, entry[open_at:].strip(), key_at + 1, open_at + 1)
    close_at = _matching_paren(entry, open_at)
    rest = _skip_space(entry, close_at + 1)
    if rest < len(entry):
        raise _Problem("unexpected text after ')'", rest, "expected ',' between keyframes")
    inner = entry[open_at + 1:close_at]
    value_at = open_at + 1 + len(inner) - len(inner.lstrip())
    return Keyframe(index, entry, key, inner.strip(), key_at + 1, value_at + 1)


def _parse_key(entry: str) -> tuple[str, int, int]:
    """(key text without quotes, its offset, offset of the ':')."""
    if entry[0] in "\"'":
        close = entry.find(entry[0], 1)
        if close < 0:
            raise _Problem("unterminated quote", len(entry), f"expected a closing {entry[0]} for the key")
        colon = _skip_space(entry, close + 1)
        if colon >= len(entry) or entry[colon] != ":":
            raise _Problem("expected ':' after the key", colon, "write key:(value), e.g. \"max_f/2\":(1.0)")
        return entry[1:close].strip(), 1 + len(entry[1:close]) - len(entry[1:close].lstrip()), colon
    colon = _top_level_colon(entry)
    if colon < 0:
        where = entry.find("(")
        raise _Problem("missing ':' after the frame key", where if where >= 0 else len(entry),
                       "expected key:(value), e.g. 0:(1.0)")
    key = entry[:colon].strip()
    if not key:
        raise _Problem("missing frame key before ':'", 0, "expected a frame number, e.g. 0:(1.0)")
    return key, 0, colon


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _top_level_colon(entry: str) -> int:
    depth = 0
    for pos, char in enumerate(entry):
        if char == ":" and depth == 0:
            return pos
        depth += (char == "(") - (char == ")")
    return -1


def _matching_paren(entry: str, open_at: int) -> int:
    """Offset of the ')' closing the '(' at open_at; a quoted string right after '(' or ',' is opaque."""
    depth, pos, previous = 0, open_at, ""
    while pos < len(entry):
        char = entry[pos]
        if char in "\"'" and previous in ("(", ","):
            close = entry.find(char, pos + 1)
            pos = len(entry) if close < 0 else close
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos
        previous = previous if char.isspace() else char
        pos += 1
    raise _Problem("unbalanced parenthesis", len(entry), f"expected ')' to close the '(' at column {open_at + 1}")


# ----------------------------------------------------------------------------------------------
# Expressions: whitelist check and numexpr text


class _Compiled(NamedTuple):
    expr: str  # what numexpr evaluates, rebuilt from the checked tree
    names: tuple[tuple[str, int], ...]  # variables used, with the offset of their first use
    constant: float | None  # the value when the source is a plain (signed) number


def _compile_value(source: str) -> _Compiled:
    """_compile, with a fast path for plain numbers (schedules exported with a key on every frame)."""
    if _NUMBER.fullmatch(source):
        value = float(source)
        if math.isfinite(value):
            return _Compiled(repr(value), (), value)
    return _compile(source)


@lru_cache(maxsize=8192)
def _compile(source: str) -> _Compiled:
    """Check an expression against the whitelist; offsets in _Problem are within source."""
    if not source.strip():
        raise _Problem("empty value", 0, "expected a number or an expression")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise _Problem("expression too long", MAX_EXPRESSION_CHARS, f"at most {MAX_EXPRESSION_CHARS} characters")
    bad = _BAD_CHAR.search(source)
    if bad:
        raise _Problem(f"unexpected character {bad.group()!r}", bad.start(), _CHAR_HINTS.get(bad.group(), _ALLOWED))
    flat = source.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    shift = len(flat) - len(flat.lstrip())
    tree = _parse_python(flat.strip(), shift)
    builder = _Builder(shift)
    expr = builder.build(tree.body, 0)
    names = tuple(builder.names.items())
    return _Compiled(expr, names, _literal_value(tree.body))


def _parse_python(source: str, shift: int) -> ast.Expression:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "'int' object is not callable" SyntaxWarnings
            return ast.parse(source, mode="eval")
    except SyntaxError as exc:
        offset = max(0, min((exc.offset or 1) - 1, len(source))) if (exc.lineno or 1) == 1 else len(source)
        raise _Problem(f"invalid expression ({exc.msg})", offset + shift, _ALLOWED) from None
    except (RecursionError, MemoryError, ValueError):
        raise _Problem("expression too complex", shift, f"at most {MAX_NESTING} levels of nesting") from None


def _literal_value(node: ast.AST) -> float | None:
    """The value of a plain number, optionally signed; None for anything else."""
    sign = 1.0
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant):
        return sign * float(node.value)
    return None


_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_REJECTED = {
    ast.BoolOp: ("'and'/'or' are not allowed", "use & and | with parentheses, e.g. (t>5) & (t<10)"),
    ast.IfExp: ("'if' expressions are not allowed", "use where(condition, value_if_true, value_if_false)"),
    ast.Attribute: ("attribute access is not allowed", _ALLOWED),
    ast.Subscript: ("indexing is not allowed", _ALLOWED),
    ast.Lambda: ("lambda is not allowed", _ALLOWED),
    ast.Tuple: ("a value is a single expression", "commas only separate function arguments"),
    ast.NamedExpr: ("':=' is not allowed", _ALLOWED),
}


class _Builder:
    """Walks a parsed expression, rejecting anything off the whitelist; returns numexpr text."""

    def __init__(self, shift: int):
        self.shift = shift
        self.names: dict[str, int] = {}

    def fail(self, node: ast.AST, what: str, hint: str = _ALLOWED):
        raise _Problem(what, getattr(node, "col_offset", 0) + self.shift, hint)

    def build(self, node: ast.AST, depth: int) -> str:
        if depth > MAX_NESTING:
            self.fail(node, "expression nested too deeply", f"at most {MAX_NESTING} levels of operations")
        kind = type(node)
        if kind is ast.Constant:
            return self.number(node)
        if kind is ast.Name:
            return self.name(node)
        if kind is ast.BinOp and type(node.op) in _BINARY:
            left, right = self.build(node.left, depth + 1), self.build(node.right, depth + 1)
            return f"({left} {_BINARY[type(node.op)]} {right})"
        if kind is ast.BinOp:
            hint = "use ** for powers" if isinstance(node.op, ast.BitXor) else _ALLOWED
            self.fail(node, f"operator {type(node.op).__name__} is not allowed", hint)
        if kind is ast.UnaryOp:
            return self.unary(node, depth)
        if kind is ast.Compare:
            return self.compare(node, depth)
        if kind is ast.Call:
            return self.call(node, depth)
        what, hint = _REJECTED.get(kind, (f"{kind.__name__} is not allowed", _ALLOWED))
        self.fail(node, what, hint)

    def number(self, node: ast.Constant) -> str:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(node, f"{value!r} is not a number", "only numbers are allowed here")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.fail(node, "number too large", "numbers must be below 1.8e308")
        return repr(number)  # floats only: no integer overflow, no huge constant folding

    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__"):
            self.fail(node, f"the name {node.id!r} is not allowed", "names starting with __ are not allowed")
        if node.id in _ARITY:
            self.fail(node, f"{node.id} is a function", f"call it, e.g. {node.id}(t)")
        self.names.setdefault(node.id, node.col_offset + self.shift)
        return node.id

    def unary(self, node: ast.UnaryOp, depth: int) -> str:
        operand = self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.USub):
            return f"(-{operand})"
        if isinstance(node.op, ast.Invert):
            return f"(~{operand})"
        if isinstance(node.op, ast.UAdd):
            return operand
        self.fail(node, "'not' is not allowed", "use ~ with parentheses, e.g. ~(t>5)")

    def compare(self, node: ast.Compare, depth: int) -> str:
        parts, left = [], self.build(node.left, depth + 1)
        for op, comparator in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                self.fail(node, f"comparison {type(op).__name__} is not allowed", "use < <= > >= == !=")
            right = self.build(comparator, depth + 1)
            parts.append(f"({left} {_COMPARE[type(op)]} {right})")
            left = right
        return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"  # a < b < c

    def call(self, node: ast.Call, depth: int) -> str:
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only calls of named functions are allowed", _ALLOWED)
        name = node.func.id
        if name not in FUNCTIONS:
            close = _HINTS.get(name) or next(iter(difflib.get_close_matches(name, FUNCTIONS, 1)), None)
            suggestion = f"did you mean {close}? " if close else ""
            self.fail(node, f"unknown function {name!r}", f"{suggestion}functions: {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            self.fail(node, f"{name}() takes positional arguments only", f"e.g. {name}(t)")
        if len(node.args) != _ARITY[name]:
            self.fail(node, f"{name}() takes {_ARITY[name]} argument(s), got {len(node.args)}",
                      "where(condition, value_if_true, value_if_false)" if name == "where" else f"e.g. {name}(t)")
        args = ", ".join(self.build(arg, depth + 1) for arg in node.args)
        return f"{name}({args})"


# ----------------------------------------------------------------------------------------------
# Variables


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


# ----------------------------------------------------------------------------------------------
# Evaluation


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


# ----------------------------------------------------------------------------------------------
# Deforum files: stray text read the way Deforum Studio reads its own presets


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
