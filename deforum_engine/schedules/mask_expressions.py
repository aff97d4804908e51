"""Deforum's composable mask expressions, read by a small parser (no eval, no regular-expression rewriting).

An expression combines masks:
- `{video_mask}` (the `mask_file` picture, or its video's frame), `{init_mask}` (the init image's
  alpha channel), `{everywhere}` (all white);
- `[path]` a mask picture file; `<words>` a word mask (needs a segmentation model: refused by the
  render with a warning, see the README);
- `!a` (invert), `a & b` (and), `a | b` (or), `a ^ b` (xor), `a \\ b` or `a - b` (a and not b), and
  parentheses.
Precedence, tightest first, as Deforum's documentation gives it: `!`, `&`, `|`, `^`, `\\` / `-`;
operators of one level group from the left. So `{a} | {b} & {c}` is `{a} | ({b} & {c})`
(Deforum's own evaluator fails on mixed operators like this one).

Anything else is a SettingsError naming the setting and the column: the text is untrusted, like a schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from deforum_engine.errors import SettingsError

NAMES = ("video_mask", "init_mask", "everywhere")
MAX_LENGTH = 2000
MAX_DEPTH = 32
# Binary operators, loosest first; each level's operators group from the left.
LEVELS = ((("\\", "-"), "difference"), (("^",), "xor"), (("|",), "or"), (("&",), "and"))
_CLOSERS = {"{": "}", "[": "]", "<": ">"}
_LEAVES = {"{": "name", "[": "file", "<": "words"}


@dataclass(frozen=True)
class Node:
    """One step of a parsed expression: a leaf (name, file, words) or an operator over its parts."""

    kind: str  # name | file | words | not | and | or | xor | difference
    text: str = ""
    parts: tuple["Node", ...] = ()

    def leaves(self) -> list["Node"]:
        """Every leaf, left to right."""
        if not self.parts:
            return [self]
        return [leaf for part in self.parts for leaf in part.leaves()]


class _Parser:
    def __init__(self, text: str, setting: str):
        self.text, self.setting, self.pos, self.depth = text, setting, 0, 0

    def fail(self, problem: str, column: int | None = None) -> SettingsError:
        column = self.pos if column is None else column
        return SettingsError(f"{self.setting}: mask expression {self.text!r}: {problem} at column {column + 1}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Node:
        node = self.binary(0)
        if self.peek():
            raise self.fail(f"unexpected {self.peek()!r}; expected an operator (& | ^ \\ -) or the end")
        return node

    def binary(self, level: int) -> Node:
        if level == len(LEVELS):
            return self.unary()
        symbols, kind = LEVELS[level]
        node = self.binary(level + 1)
        while self.peek() and self.peek() in symbols:
            self.pos += 1
            node = Node(kind, parts=(node, self.binary(level + 1)))
        return node

    def unary(self) -> Node:
        char = self.peek()
        if char == "!":
            self.pos += 1
            return Node("not", parts=(self.nested(self.unary),))
        if char == "(":
            start = self.pos
            self.pos += 1
            node = self.nested(lambda: self.binary(0))
            if self.peek() != ")":
                raise self.fail("unbalanced parenthesis: this one is never closed", start)
            self.pos += 1
            return node
        if char in _LEAVES:
            return self.leaf(char)
        what = f"{char!r}" if char else "the end"
        raise self.fail(f"expected a mask ({{video_mask}}, {{init_mask}}, {{everywhere}}, [file], <words>), "
                        f"'!' or '(' but found {what}")

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep")
        node = parse()
        self.depth -= 1
        return node

    def leaf(self, opener: str) -> Node:
        start = self.pos
        end = self.text.find(_CLOSERS[opener], start + 1)
        if end < 0:
            raise self.fail(f"{opener!r} is never closed with {_CLOSERS[opener]!r}", start)
        content = self.text[start + 1:end].strip()
        self.pos = end + 1
        kind = _LEAVES[opener]
        if kind == "name" and content not in NAMES:
            raise self.fail(f"unknown mask {{{content}}}; the named masks are "
                            + ", ".join(f"{{{name}}}" for name in NAMES), start)
        if not content:
            raise self.fail(f"empty {opener}{_CLOSERS[opener]}", start)
        return Node(kind, text=content)


def parse_mask_expression(text: str, setting: str = "mask_schedule") -> Node:
    """Parse one mask expression; a SettingsError naming `setting` and the column when it is not one."""
    if not isinstance(text, str):
        raise SettingsError(f"{setting}: a mask expression must be text, got {text!r}")
    if len(text) > MAX_LENGTH:
        raise SettingsError(f"{setting}: mask expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if "\x00" in text:
        raise SettingsError(f"{setting}: mask expression contains a NUL character")
    return _Parser(text, setting).parse()


def evaluate_mask(node: Node, leaf: Callable[[Node], np.ndarray]) -> np.ndarray:
    """The boolean mask (H x W, True = repaint) an expression gives, with `leaf` supplying each leaf's mask."""
    if not node.parts:
        return np.asarray(leaf(node), dtype=bool)
    values = [evaluate_mask(part, leaf) for part in node.parts]
    if node.kind == "not":
        return ~values[0]
    a, b = values
    return {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
            "difference": lambda x, y: x & ~y}[node.kind](a, b)
