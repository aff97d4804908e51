"""The safe-expression compiler: a value's text is parsed with `ast`, checked against a whitelist
(numbers, arithmetic, comparisons, `& | ~`, FUNCTIONS, known variables) and rebuilt as the text numexpr sees."""
from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from functools import lru_cache
from typing import NamedTuple

import numexpr

from deforum_engine.schedules.grammar import _NUMBER, _Problem


MAX_EXPRESSION_CHARS = 2_000
MAX_NESTING = 100


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
_BAD_CHAR = re.compile(r"[^0-9A-Za-z_ \t\r\n+\-*/%()<>=!&|~^.,]")
_CHAR_HINTS = {
    ";": "a value is a single expression",
    "[": "indexing is not allowed", "]": "indexing is not allowed",
    "'": "strings are not allowed in a number schedule", '"': "strings are not allowed in a number schedule",
    ":": "a value cannot contain ':' (is a ')' or ',' missing between keyframes?)",
    "#": "comments are not allowed",
}


_ALLOWED = "allowed: numbers, + - * / // % **, comparisons, & | ~, parentheses, function calls and variables"


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

