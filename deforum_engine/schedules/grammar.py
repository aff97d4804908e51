"""The keyframe grammar: a schedule's text -> Keyframe entries, with errors that name the keyframe and column."""
from __future__ import annotations

import re
from dataclasses import dataclass

from deforum_engine.errors import SettingsError


MAX_KEYFRAMES = 100_000
MAX_SCHEDULE_CHARS = 20_000_000
_NUMBER = re.compile(r"[ \t\r\n]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*")
_INTEGER = re.compile(r"[0-9]+")
_SPECIAL = re.compile(r"[(),\"']")
_KEYED = re.compile(r":[ \t\r\n]*\(")
_SIMPLE = r"\s*([0-9]+)\s*:\s*\(([^()\"',:]*)\)\s*"  # integer key, value without ( ) quotes , :
_SIMPLE_ENTRY = re.compile(_SIMPLE)
_SIMPLE_SCHEDULE = re.compile(rf"(?:{_SIMPLE},)*{_SIMPLE},?\s*")
_NEXT_ENTRY = re.compile(r",\s*(?:[0-9]+|\"[^\"]*\"|'[^']*')\s*:\s*\(")


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

