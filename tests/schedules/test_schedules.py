"""Schedules: Deforum's keyframe grammar, the per-frame rules, variables, errors and safety."""
from __future__ import annotations

import math
import re

import numexpr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deforum_engine import schedules
from deforum_engine.schedules import expressions, grammar
from deforum_engine.errors import SettingsError
from deforum_engine.schedules import (
    AUDIO_VARIABLES,
    FUNCTIONS,
    Keyframe,
    ScheduleWarning,
    evaluate_frame_key,
    evaluate_schedule,
    evaluate_string_schedule,
    parse_schedule,
    read_deforum_schedule,
    schedule_variables,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def values(text, frames=12, **kwargs) -> list[float]:
    return evaluate_schedule(text, frames, **kwargs).tolist()


def error(call, *args, **kwargs) -> str:
    with pytest.raises(SettingsError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --- Deforum's own examples -------------------------------------------------------------------


def test_default_zoom_is_a_live_sine():
    t = np.arange(200)
    result = evaluate_schedule("0: (1.0025+0.002*sin(1.25*3.14*t/30))", 200)
    assert result.dtype == np.float64 and result.shape == (200,)
    np.testing.assert_allclose(result, 1.0025 + 0.002 * np.sin(1.25 * 3.14 * t / 30), rtol=1e-14)


def test_default_seed_schedule():
    # Keys 0, 1, max_f-2 = 9 and max_f-1 = 10. Frame 9 is the constant -1 (it would interpolate
    # toward s, but only from frame 10 on is s's keyframe live); frames 10 and 11 are s, live.
    text = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
    assert values(text, seed=42) == [42] + [-1] * 9 + [42, 42]


def test_constants_interpolate_and_hold_after_the_last_key():
    assert values("0:(0), 10:(10)") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]


def test_expression_then_constant_jumps():
    assert values("0:(t*2), 5:(0)") == [0, 2, 4, 6, 8, 0, 0, 0, 0, 0, 0, 0]


def test_constant_interpolates_toward_the_next_expression_then_it_is_live():
    assert values("0:(0), 5:(100+t)") == [0, 21, 42, 63, 84, 105, 106, 107, 108, 109, 110, 111]


# --- Per-frame rules --------------------------------------------------------------------------


def test_before_the_first_key_its_value_at_its_frame_holds():
    assert values("5:(3), 10:(8)") == [3, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8, 8]
    assert values("4:(t*2)", 8) == [8, 8, 8, 8, 8, 10, 12, 14]


def test_keys_past_the_end_shape_the_interpolation():
    assert values("0:(0), 20:(20)", 10) == list(range(10))
    assert values("0:(0), 20:(t)", 10) == list(range(10))  # the expression's value at frame 20
    assert values("0:(0), 20:(20), 25:(1000)", 10) == list(range(10))  # only the first key past the end matters


def test_only_keys_past_the_end():
    assert values("20:(5)", 4) == [5, 5, 5, 5]
    assert values("20:(t), 30:(1)", 4) == [20, 20, 20, 20]


def test_trimming_a_render_keeps_its_frames():
    text = "0:(1), 7:(0.5+sin(t/3)), 15:(2), 31:(t/10), 40:(-1)"
    full = evaluate_schedule(text, 60)
    for frames in (1, 7, 8, 15, 16, 31, 32, 41):
        np.testing.assert_allclose(evaluate_schedule(text, frames), full[:frames], rtol=1e-15, atol=0)


def test_a_huge_key_is_not_an_allocation():
    assert values("0:(0), 1000000000000:(1000000000000)", 3) == [0, 1, 2]
    assert "below 2**53" in error(evaluate_schedule, '0:(0), "1e300":(1)', 3)


def test_the_later_of_two_entries_for_one_frame_wins():
    assert values("0:(1), 0:(2)", 3) == [2, 2, 2]
    assert values("0:(0), 5:(10), 5:(20)", 6) == [0, 4, 8, 12, 16, 20]
    assert values('0:(0), 4:(8), "max_f-7":(4)', 12) == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4]


def test_keys_in_any_order():
    assert values("10:(10), 0:(0)") == values("0:(0), 10:(10)")


def test_an_expression_after_the_last_key_stays_live():
    assert values("0:(0), 3:(t)", 6) == [0, 1, 2, 3, 4, 5]


def test_many_constant_keys_interpolate_without_a_loop():
    keys = list(range(0, 100, 3))  # 34 constant keys: the vectorised path
    text = ", ".join(f"{k}:({k * k})" for k in keys)
    result = evaluate_schedule(text, 100)
    expected = np.interp(np.arange(100), keys, [k * k for k in keys])
    np.testing.assert_allclose(result, expected, rtol=1e-12)


def test_repeated_expression_keys_alternating_with_constants():
    text = ", ".join(f"{k}:(t)" if k % 2 else f"{k}:({-k})" for k in range(40))
    result = evaluate_schedule(text, 40)
    # Odd keys: t, live. Even keys: -k, interpolating toward the next (odd) key's t over one frame.
    assert result.tolist() == [float(k if k % 2 else -k) for k in range(40)]


# --- Grammar ----------------------------------------------------------------------------------


def test_trailing_comma_and_whitespace_anywhere():
    assert values(" 0 : ( 1 ) ,\n\t4 :\t( 5 ) , ", 6) == [1, 2, 3, 4, 5, 5]
    assert values("0:(\n  1 +\n  t\n)", 3) == [1, 2, 3]


def test_commas_and_nested_parentheses_inside_a_value():
    assert values("0:(where(t>5, 1, 0))") == [0] * 6 + [1] * 6
    assert values("0:(((1+2)*(t+1)))", 3) == [3, 6, 9]
    assert values("0:(where((t>2) & (t<5), maximum(t, 3), -1)), 8:(0)", 9) == [-1, -1, -1, 3, 4, -1, -1, -1, 0]


def test_key_forms():
    assert values('0:(0), "max_f":(11)') == list(range(12))
    assert values("0:(0), 'max_f/2':(5)") == [0, 1, 2, 3, 4, 5] + [5] * 6  # max_f/2 = 5.5 -> 5
    assert values("0:(0), max_f-1:(10)") == list(range(11)) + [10]  # unquoted expression key
    assert values('0:(0), " 3 ":(3)', 4) == [0, 1, 2, 3]


def test_parse_schedule_returns_keyframes():
    assert parse_schedule(' 0: (1.0) , "max_f-2" :( t ),') == [
        Keyframe(index=1, text="0: (1.0)", key_text="0", value_text="1.0", key_column=1, value_column=5),
        Keyframe(index=2, text='"max_f-2" :( t )', key_text="max_f-2", value_text="t", key_column=2,
                 value_column=14),
    ]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(-9, 9)), min_size=1, max_size=8),
       st.sampled_from([" ", "", "\n", "  "]))
@QUICK
def test_fast_and_general_parsers_agree(entries, space):
    text = ("," + space).join(f"{space}{key}{space}:{space}({space}{value}{space})" for key, value in entries)
    assert grammar._parse_simple(text, "s") == grammar._parse_general(text, "s")


# --- Numbers and constants --------------------------------------------------------------------


@pytest.mark.parametrize("constant, expected", [
    (1.02, 1.02), (3, 3.0), (np.float32(0.5), 0.5), (np.int64(7), 7.0),
    ("1.02", 1.02), (" -3 ", -3.0), ("1e-3", 0.001), ("+.5", 0.5),
])
def test_a_bare_number_is_a_constant_schedule(constant, expected):
    result = evaluate_schedule(constant, 4)
    assert result.dtype == np.float64 and result.tolist() == [expected] * 4


@pytest.mark.parametrize("bad", [math.nan, math.inf, "1e999", True, None, [1.0], {"0": 1}])
def test_a_bad_constant_is_an_error(bad):
    assert error(evaluate_schedule, bad, 4, setting="zoom").startswith("zoom: ")


def test_integer_and_boolean_results_are_float64():
    result = evaluate_schedule("0:(t>5)", 8)
    assert result.dtype == np.float64 and result.tolist() == [0] * 6 + [1, 1]
    assert values("0:(t//2)", 4) == [0, 0, 1, 1]
    assert values("0:(t%3)", 5) == [0, 1, 2, 0, 1]
    assert values("0:(1<t<4)", 6) == [0, 0, 1, 1, 0, 0]  # a chained comparison
    assert values("0:(~(t>1) | (t>3))", 5) == [1, 1, 0, 0, 1]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_allowed_function_evaluates(name):
    x = "(1.5+t*0)" if name == "arccosh" else "(0.5+t*0)"
    args = {1: x, 2: f"{x}, 0.25", 3: "t>1, 1, 0"}[expressions._ARITY[name]]
    result = evaluate_schedule(f"0:({name}({args}))", 3)
    assert np.isfinite(result).all()


def test_functions_are_numexpr_elementwise_functions_without_reductions():
    assert set(FUNCTIONS) >= {"sin", "cos", "tan", "arctan2", "sqrt", "exp", "log", "abs", "where",
                              "floor", "ceil", "round", "minimum", "maximum"}
    assert not set(FUNCTIONS) & {"sum", "prod", "min", "max", "contains", "complex", "real", "imag"}
    assert set(FUNCTIONS) - {"where"} <= set(numexpr.expressions.functions)


def test_rounding_floor_and_ceil():
    assert values("0:(floor(t/2)), 4:(ceil(t/3)), 6:(round(t+0.5))", 8) == [0, 0, 1, 1, 2, 2, 6, 8]


# --- Variables --------------------------------------------------------------------------------


def test_builtin_variables():
    variables = schedule_variables(5, seed=7, fps=10)
    assert set(variables) == {"t", "max_f", "s", "fps", "sec", "pi", "e"}
    assert variables["t"].tolist() == [0, 1, 2, 3, 4]
    assert variables["sec"].tolist() == [0, 0.1, 0.2, 0.3, 0.4]
    assert (variables["max_f"], variables["s"], variables["fps"]) == (4, 7, 10)
    assert (variables["pi"], variables["e"]) == (math.pi, math.e)
    assert values("0:(max_f+s+fps+pi+e)", 2, seed=7, fps=10) == [1 + 7 + 10 + math.pi + math.e] * 2
    assert values("0:(sec)", 3, fps=4) == [0, 0.25, 0.5]


def test_bpm_and_beat():
    variables = schedule_variables(4, fps=15, variables={"bpm": 120})
    assert variables["bpm"] == 120 and variables["beat"].tolist() == [0, 2 / 15, 4 / 15, 6 / 15]
    assert values("0:(beat)", 4, fps=15, variables={"bpm": 120}) == [t / 15 * 120 / 60 for t in range(4)]
    assert values("0:(bpm/60)", 2, variables={"bpm": 90}) == [1.5, 1.5]
    assert values("0:(0), 10:(beat)", 3, fps=10, variables={"bpm": 60}) == [0, 0.1, 0.2]  # beat at 10 = 1


def test_caller_variables_scalar_and_per_frame():
    assert values("0:(k*t)", 3, variables={"k": 2}) == [0, 2, 4]
    amp = np.array([0.0, 0.5, 1.0, 0.25])
    assert values("0:(1+amp)", 4, variables={"amp": amp}) == [1, 1.5, 2, 1.25]
    assert values("0:(amp), 2:(0)", 4, variables={"amp": amp}) == [0, 0.5, 0, 0]
    # A key past the end sees a per-frame array's last value: 0 -> amp[-1] = 0.25 at frame 5.
    assert values("0:(0), 5:(amp*20)", 4, variables={"amp": amp}) == [0, 1, 2, 3]
    assert values("0:(amp), 2:(amp)", 4, variables={"amp": amp}) == amp.tolist()


@pytest.mark.parametrize("name", AUDIO_VARIABLES)
def test_audio_variables_need_a_soundtrack_unless_given(name):
    message = error(evaluate_schedule, f"0:(1), 5:(1+{name})", 8, setting="zoom")
    assert message.startswith(f'zoom: keyframe 2 ("5:(1+{name})") : \'{name}\' needs a soundtrack at column 6')
    assert "soundtrack_path" in message
    assert values(f"0:(1+{name})", 3, variables={name: [0, 1, 2]}) == [1, 2, 3]


def test_a_caller_beat_array_is_used_as_given():
    beat = [0, 0, 1, 1]
    assert values("0:(beat)", 4, variables={"bpm": 120, "beat": beat}) == [0, 0, 1, 1]


@pytest.mark.parametrize("variables, message", [
    ({"t": 1}, "built-in"), ({"sin": 1}, "built-in"), ({"sum": 1}, "built-in"), ({"__x": 1}, "built-in"),
    ({"2x": 1}, "valid variable name"),
    ({"if": 1}, "valid variable name"), ({"amp": [1, 2]}, "expected 3 values"), ({"amp": [1, np.nan, 2]}, "frame 1"),
    ({"k": "x"}, "expected a number"), ({"bpm": 0}, "bpm must be one positive number"),
    ({"bpm": [1, 2, 3]}, "bpm must be one positive number"), ({"k": math.inf}, "finite"),
])
def test_bad_variables(variables, message):
    assert message in error(evaluate_schedule, "0:(1)", 3, variables=variables)


@pytest.mark.parametrize("frames", [0, -1, 1.5, True, "10"])
def test_bad_max_frames(frames):
    assert "max_frames" in error(evaluate_schedule, "0:(1)", frames)


def test_bad_fps_and_seed():
    assert "fps" in error(evaluate_schedule, "0:(1)", 3, fps=0)
    assert "seed" in error(evaluate_schedule, "0:(1)", 3, seed=math.nan)


# --- Frame keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key, frame", [
    ("30", 30), ("max_f/2", 49), ('"max_f-2"', 97), ("'max_f/2'", 49), (" 7 ", 7), ("1.9", 1), (7, 7),
    (7.9, 7), ("0", 0), ("s*2", 10), ("fps*4", 60), ("bpm", 120), ("1000000000", 1000000000),
])
def test_evaluate_frame_key(key, frame):
    assert evaluate_frame_key(key, 100, seed=5, fps=15, variables={"bpm": 120}) == frame


@pytest.mark.parametrize("key, message", [
    ("-1", 'prompts: key ("-1") : the frame key is negative (-1) at column 1'),
    ('"max_f-200"', 'prompts: key (""max_f-200"") : the frame key is negative (-101) at column 2'),
    ("x", "unknown variable 'x' at column 1"),
    ("t", "'t' changes per frame and cannot be used in a key at column 1"),
    ("amp", "'amp' needs a soundtrack"),
    ("", "empty frame key"),
    ("1/0", "divides by zero"),
    (-3, "not a frame number"),
    (None, "expected a frame key"),
])
def test_bad_frame_keys(key, message):
    assert message in error(evaluate_frame_key, key, 100)


def test_frame_key_errors_name_the_setting():
    assert error(evaluate_frame_key, "max_f/x", 10, setting="prompts['max_f/x']").startswith(
        "prompts['max_f/x']: key (\"max_f/x\") : unknown variable 'x' at column 7")


# --- String schedules -------------------------------------------------------------------------


def test_string_schedule_holds_each_value_until_the_next_key():
    assert evaluate_string_schedule('0:("Euler a"), 3:("DDIM")', 5) == ["Euler a"] * 3 + ["DDIM"] * 2
    assert evaluate_string_schedule("0:('euler'), 2:(dpm2), 3:(\"a (b), c\")", 4) == [
        "euler", "euler", "dpm2", "a (b), c"]


def test_string_schedule_rules():
    assert evaluate_string_schedule('2:("a"), 4:("b")', 6) == ["a"] * 4 + ["b"] * 2  # before the first key
    assert evaluate_string_schedule('0:("a"), 0:("b")', 2) == ["b", "b"]  # the later wins
    assert evaluate_string_schedule('"max_f-1":("end"), 0:("start"),', 4) == ["start"] * 2 + ["end"] * 2
    assert evaluate_string_schedule('0:("a"), 9:("b")', 3) == ["a"] * 3
    assert evaluate_string_schedule('9:("b")', 2) == ["b", "b"]


@pytest.mark.parametrize("text, expected", [("Euler a", "Euler a"), ('"DDIM"', "DDIM"), (" dpm++ 2m ", "dpm++ 2m")])
def test_a_plain_string_is_a_constant(text, expected):
    assert evaluate_string_schedule(text, 3) == [expected] * 3


def test_string_schedule_errors():
    assert error(evaluate_string_schedule, '0:("a"b")', 3, setting="sampler_schedule") == (
        'sampler_schedule: keyframe 1 ("0:("a"b")") : expected one quoted string at column 4: e.g. 0:("Euler a")')
    assert "unknown variable" in error(evaluate_string_schedule, '0:("a"), x:("b")', 3)
    assert "expected a string schedule" in error(evaluate_string_schedule, 3, 3)


# --- Error messages ---------------------------------------------------------------------------


def test_unbalanced_parenthesis_points_one_past_the_end():
    assert error(evaluate_schedule, "0:(1.0), 30:(1.5+", 60, setting="zoom").startswith(
        'zoom: keyframe 2 ("30:(1.5+") : unbalanced parenthesis at column 9')


def test_a_forgotten_parenthesis_is_found_before_the_next_keyframe():
    assert error(evaluate_schedule, "0:(1.0), 30:(1.5+sin(t), 60:(1.0)", 60, setting="zoom").startswith(
        'zoom: keyframe 2 ("30:(1.5+sin(t)") : unbalanced parenthesis at column 15')


@pytest.mark.parametrize("text, message", [
    ("0:(1), 5:(tt)", 'keyframe 2 ("5:(tt)") : unknown variable \'tt\' at column 4: did you mean t?'),
    ("0:(amp)", "'amp' needs a soundtrack at column 4: set soundtrack_path"),
    ("0:(1+beat)", "'beat' needs a tempo at column 6: set bpm"),
    ("0:(bpm)", "'bpm' needs a tempo"),
    ("0:(1/(t-5))", 'keyframe 1 ("0:(1/(t-5))") : the expression at column 4 gives inf at frame 5'),
    ("0:(0), 3:(log(5-t))", 'keyframe 2 ("3:(log(5-t))") : the expression at column 4 gives -inf at frame 5'),
    ("0:(sqrt(t-3)), 5:(1)", "gives nan at frame 0"),
    ("0:(1/0)", "cannot be evaluated at frame 0: it divides by zero"),
    ("0:(1), 20:(1/(t-20))", 'keyframe 2 ("20:(1/(t-20))") : the expression at column 5 gives inf at frame 20'),
    ("0:(2.0**2000)", "too large"),
    ("0:(1e308), 10:(-1e308)", "interpolating from column 4 gives"),
    ("0:(max(t, 1))", "unknown function 'max' at column 4: did you mean maximum?"),
    ("0:(sine(t))", "unknown function 'sine' at column 4: did you mean sin?"),
    ("0:(sin)", "sin is a function at column 4"),
    ("0:(t>5 and t<3)", "'and'/'or' are not allowed at column 4: use & and |"),
    ("0:(not t)", "'not' is not allowed at column 4: use ~"),
    ("0:(1 if t else 2)", "use where(condition"),
    ("0:(2^3)", "use ** for powers"),
    ("0:(where(t>5, 1))", "where() takes 3 argument(s), got 2 at column 4"),
    ("0:(sin(x=t))", "positional arguments only"),
    ("0:(t & 1)", "& | ~ apply to comparisons"),
    ("0:(1, 2)", "a value is a single expression at column 4"),
    ("0:()", "empty value at column 4"),
    ("0:(1e999)", "number too large at column 4"),
    ("0:(True)", "True is not a number at column 4"),
    ("0:(1j)", "1j is not a number"),
    ("0:(1 +* 2)", "invalid expression"),
    ("0:(t.real)", "attribute access is not allowed at column 4"),
    ("0 (1)", "missing ':' after the frame key at column 3"),
    ("0:", "expected '(' after ':' at column 3"),
    ("0:(1) 5:(2)", "unexpected text after ')' at column 7: expected ',' between keyframes"),
    ("0:(1)), 5:(2)", "unbalanced parenthesis at column 6: ')' without a matching '('"),
    ("0:(1),,5:(2)", 'keyframe 2 ("") : empty keyframe'),
    (":(1)", "missing frame key before ':' at column 1"),
    ('"max_f:(1)', "unterminated quote"),
    ('0:(1), "-1":(2)', 'keyframe 2 (""-1":(2)") : the frame key is negative (-1) at column 2'),
    ("0:(1), t:(2)", "'t' changes per frame and cannot be used in a key at column 1"),
    ("0:(é)", "unexpected character 'é' at column 4"),
    ("sin(t)", "missing ':'"),
    ("", "empty schedule"),
    ("   ", "empty schedule"),
])
def test_error_messages(text, message):
    text_error = error(evaluate_schedule, text, 12, setting="zoom")
    assert text_error.startswith("zoom: ") and message in text_error


def test_error_messages_mention_the_known_variables():
    message = error(evaluate_schedule, "0:(x)", 3, variables={"amp": [0, 0, 0]})
    assert "known variables: amp, e, fps, max_f, pi, s, sec, t" in message


def test_long_keyframe_text_is_shortened_in_messages():
    message = error(evaluate_schedule, "0:(" + "t+" * 60 + "x)", 3)
    assert '..." ) :' not in message and '...") : unknown variable' in message


# --- Limits -----------------------------------------------------------------------------------


def test_limits(monkeypatch):
    assert "at most 2000 characters" in error(evaluate_schedule, "0:(" + "1+" * 1000 + "1)", 3)
    assert "nested" in error(evaluate_schedule, "0:(" + "-" * 101 + "1)", 3)
    assert values("0:(" + "+".join(["sin(t)"] * 99) + ")", 2) == pytest.approx([0, 99 * math.sin(1)])
    assert "nested" in error(evaluate_schedule, "0:(" + "(" * 300 + "1" + ")" * 300 + ")", 3)
    monkeypatch.setattr(grammar, "MAX_KEYFRAMES", 5)
    assert "more than 5 keyframes" in error(evaluate_schedule, ",".join(f"{k}:(1)" for k in range(6)), 3)
    assert "more than 5 keyframes" in error(evaluate_schedule, ",".join(f"{k}:((1))" for k in range(6)), 3)
    assert values(",".join(f"{k}:(1)" for k in range(5)), 3) == [1, 1, 1]


# --- Vectorised evaluation ----------------------------------------------------------------------


def test_one_numexpr_call_per_distinct_expression(monkeypatch):
    calls = []
    real = numexpr.evaluate
    monkeypatch.setattr(numexpr, "evaluate", lambda expr, **kw: calls.append(expr) or real(expr, **kw))
    frames = 100_000
    result = evaluate_schedule("0:(1+sin(t/5)), 30000:(0.5), 60000:(where(t>70000, t, 0))", frames)
    assert len(calls) == 2 and result.shape == (frames,)
    calls.clear()
    text = ", ".join(f"{k}:(cos(t))" if k % 2000 else f"{k}:(1)" for k in range(0, frames, 1000))
    evaluate_schedule(text, frames)
    assert len(calls) == 1


# --- Safety -----------------------------------------------------------------------------------

HOSTILE = [
    "__import__('os').system('x')", "().__class__", "t.__class__", "a[0]", "lambda: 1", "sin(t); 1",
    "__import__", "().__class__.__bases__[0].__subclasses__()", "[x for x in ()]", "{}", "open", "exec",
    "eval", "globals()", "t.real", "t if t else t", "(t := 1)", "*t", "sin(*t)", "sin(**t)", "f'x'",
    "b'x'", "\\x41", "#", "\\", "\x00", "import os", "sin.__call__(t)", "getattr(t, 'x')", "__builtins__",
    "__class__", "9**9**9**9", "1e308*1e308", "'", '"', "\"\"\"", ":", "))", "((", ",", "0:(", "`", "@", "$",
]
FRAGMENTS = HOSTILE + ["t", "1", "-", "+", "*", "/", "**", "(", ")", "sin(", "where(", ",", "max_f", " ",
                       ">", "&", "|", "~", "0.5", "1e3", "s", "e", "pi", ":", '"', "'"]


def _finite_or_settings_error(text, frames=5):
    try:
        result = evaluate_schedule(text, frames, setting="zoom")
    except SettingsError as exc:
        assert str(exc).startswith("zoom: ")
        return
    assert result.dtype == np.float64 and result.shape == (frames,) and np.isfinite(result).all()


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_and_keys_are_settings_errors(payload):
    for text in (f"0:({payload})", f'"{payload}":(1)', f"{payload}:(1)", payload, f"0:(1), 3:({payload})"):
        _finite_or_settings_error(text)
        with pytest.raises(SettingsError):
            evaluate_schedule(f"0:({payload})", 3)


@given(st.text(max_size=60))
@FAST
def test_arbitrary_text_is_a_finite_array_or_a_settings_error(text):
    _finite_or_settings_error(text)
    _finite_or_settings_error(f"0:({text})")


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.lists(st.sampled_from(FRAGMENTS), max_size=3))
@FAST
def test_hostile_fragments_are_a_finite_array_or_a_settings_error(value, key):
    _finite_or_settings_error(f"0:(1), {''.join(key) or 0}:({''.join(value)})")
    _finite_or_settings_error("".join(value))


@given(st.text(max_size=40))
@FAST
def test_string_schedules_and_keys_only_raise_settings_errors(text):
    for call in (evaluate_string_schedule, evaluate_frame_key):
        try:
            call(text, 5)
        except SettingsError:
            pass


def test_payloads_never_run(tmp_path):
    marker = tmp_path / "pwned"
    create = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    calls = [
        lambda p: evaluate_schedule(f"0:({p})", 3), lambda p: evaluate_schedule(f'"{p}":(1)', 3),
        lambda p: evaluate_schedule(f"{p}:(1)", 3), lambda p: evaluate_string_schedule(f'"{p}":("a")', 3),
        lambda p: evaluate_frame_key(p, 3), lambda p: evaluate_frame_key(f'"{p}"', 3),
    ]
    for payload in (create, create.replace("'", '"'), f"(lambda: {create})()", f"[{create}][0]"):
        for call in calls:
            with pytest.raises(SettingsError):
                call(payload)
    assert not marker.exists()


def test_numexpr_only_sees_rebuilt_whitelisted_text(monkeypatch):
    seen = []
    real = numexpr.evaluate

    def spy(expr, local_dict=None, global_dict=None, **kwargs):
        seen.append((expr, set(local_dict), global_dict, kwargs.get("sanitize")))
        return real(expr, local_dict=local_dict, global_dict=global_dict, **kwargs)

    monkeypatch.setattr(numexpr, "evaluate", spy)
    for payload in HOSTILE + ["1+sin(t)", "where(t>1, 1e-3, 2)", "-t**2", "~(t>1)", "1<t<3", "abs(-t) // 2"]:
        for text in (f"0:({payload})", f'"{payload}":(1)'):
            try:
                evaluate_schedule(text, 4)
            except SettingsError:
                pass
    assert seen
    allowed_names = set(FUNCTIONS) | {"t", "max_f", "s", "fps", "sec", "pi", "e"}
    for expr, names, global_dict, sanitize in seen:
        assert re.fullmatch(r"[\w .()+\-*/%<>=!&|~,]*", expr) and "__" not in expr
        assert set(re.findall(r"[A-Za-z_]\w*", re.sub(r"\d+\.?\d*e[+-]?\d+", "", expr))) <= allowed_names
        assert names <= allowed_names and global_dict == {} and sanitize is True


# --- The rules, against a plain per-frame reference ----------------------------------------------


def reference(entries, frames):
    """Deforum's rules one frame at a time; an entry is (key, number) or (key, (a, b)) for a*t+b."""
    latest = dict(entries)
    keys = sorted(latest)

    def at(key, frame):
        value = latest[key]
        return value[0] * frame + value[1] if isinstance(value, tuple) else value

    out = []
    for frame in range(frames):
        before = [key for key in keys if key <= frame]
        if not before:
            out.append(at(keys[0], keys[0]))
            continue
        key = before[-1]
        after = [other for other in keys if other > key]
        if isinstance(latest[key], tuple) or not after:
            out.append(at(key, frame))
        else:
            start, stop = latest[key], at(after[0], after[0])
            out.append(start + (stop - start) * (frame - key) / (after[0] - key))
    return out


def as_text(key, value):
    return f"{key}:({value[0]}*t+({value[1]}))" if isinstance(value, tuple) else f"{key}:({value})"


VALUE = st.one_of(st.integers(-50, 50), st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 3)),
                  st.tuples(st.integers(-3, 3), st.integers(-20, 20)))


@given(st.lists(st.tuples(st.integers(0, 60), VALUE), min_size=1, max_size=25), st.integers(1, 50))
@QUICK
def test_matches_the_per_frame_reference(entries, frames):
    text = ", ".join(as_text(key, value) for key, value in entries)
    np.testing.assert_allclose(evaluate_schedule(text, frames), reference(entries, frames), rtol=1e-9, atol=1e-9)


@given(st.lists(st.tuples(st.integers(0, 60), VALUE), min_size=1, max_size=25), st.integers(1, 70),
       st.integers(1, 70))
@QUICK
def test_trimming_never_changes_kept_frames(entries, short, long):
    short, long = sorted((short, long))
    text = ", ".join(as_text(key, value) for key, value in entries)
    np.testing.assert_array_equal(evaluate_schedule(text, short), evaluate_schedule(text, long)[:short])


# --- Deforum's lenient forms: values without parentheses, NaN frames, stray text -------------------

def test_values_without_parentheses_and_leading_newlines_are_read_natively():
    assert values("0: 0.5", 3) == [0.5] * 3
    assert values("0: 0, 4: 2", 5) == [0, 0.5, 1, 1.5, 2]
    assert values("0:(1), 2: 1+t", 4) == [1, 2, 3, 4]  # an expression, live from its key
    assert values("0: where(t<2, 1, 2)", 4) == [1, 1, 2, 2]  # its commas stay inside the call
    assert values("\n    0: (1.5),\n    4: (3)\n", 5) == [1.5, 1.875, 2.25, 2.625, 3]
    assert values("\n\t0: 60,\n\t2: 80", 3) == [60, 70, 80]


@pytest.mark.parametrize("text, message", [
    ("0:0: ((1))", "unexpected character ':' at column 4"),
    ("219: (0).3", "unexpected text after ')' at column 9"),
    ("0: (1) 10: (2)", "unexpected text after ')' at column 8: expected ',' between keyframes"),
    ("0: (1) + t", "unexpected text after ')'"),
])
def test_stray_text_stays_an_error_in_native_files(text, message):
    assert message in error(evaluate_schedule, text, 12, setting="zoom")


def test_nan_frames_are_an_error_naming_the_setting_that_fills_them():
    message = error(evaluate_schedule, "0:((-0.15 * cos(t/5))**0.90 + 0.43)", 48, setting="rotation_3d_y")
    assert message.startswith('rotation_3d_y: keyframe 1 ("0:((-0.15 * cos(t/5))**0.90 + 0.43)") : '
                              "the expression at column 4 gives nan at frame 0")
    assert "set deforum_nan_fill = true" in message
    assert "deforum_nan_fill" not in error(evaluate_schedule, "0:(1/(t-5))", 12)  # inf: nothing to fill


def test_a_complex_constant_is_nan_not_its_real_part():
    # numexpr folds (-1)**0.5 in Python, where it is 1j: it used to come out as 6e-17
    assert "gives nan at frame 0" in error(evaluate_schedule, "0:((-1)**0.5)", 3)


def nan_filled(text, frames, **kwargs):
    with pytest.warns(ScheduleWarning) as caught:
        result = evaluate_schedule(text, frames, nan_fill=True, **kwargs)
    assert len(caught) == 1  # once per schedule
    return result, str(caught[0].message)


def test_nan_fill_is_linear_inside_and_the_nearest_value_at_the_ends():
    # Deforum Studio's presets: a power of a negative base is NaN on frames 0-7 and 24-39 here.
    result, message = nan_filled("0:((-0.15 * cos(t/5))**0.90 + 0.43)", 48, setting="rotation_3d_y")
    np.testing.assert_allclose(result[[0, 7, 8]], 0.43753911390691275)       # before: frame 8's value
    np.testing.assert_allclose(result[[23, 40]], [0.45531105747779727, 0.4619932911282275])  # as computed
    np.testing.assert_allclose(result[31], 0.4584556380191762)               # 8/17 of the way from 23 to 40
    np.testing.assert_allclose(result[47], (-0.15 * math.cos(47 / 5)) ** 0.9 + 0.43)
    assert message == ('rotation_3d_y: keyframe 1 ("0:((-0.15 * cos(t/5))**0.90 + 0.43)") gives NaN from '
                       "frame 0: 24 of 48 frames filled by linear interpolation from the finite frames around "
                       "them, as Deforum does (deforum_nan_fill)")
    assert not [w for w in _warnings_of(lambda: evaluate_schedule("0:(1)", 3, nan_fill=True))]


def _warnings_of(call):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


def test_nan_fill_keeps_constant_keys_and_names_the_expression_key():
    # Deforum: frame 0 is 1, frames 10-19 NaN, frame 20 is 3 -> one straight line from 1 to 3
    result, message = nan_filled("0:(1), 10:(sqrt(t-30)), 20:(3)", 24)
    np.testing.assert_allclose(result, [1 + 0.1 * f for f in range(21)] + [3, 3, 3])
    assert 'keyframe 2 ("10:(sqrt(t-30))") gives NaN from frame 10: 19 of 24 frames' in message


def test_nan_fill_leaves_inf_and_all_nan_schedules_errors():
    with pytest.raises(SettingsError, match="gives inf at frame 5"):
        evaluate_schedule("0:(1/(t-5))", 12, nan_fill=True)
    with pytest.raises(SettingsError, match=r'keyframe 1 \("0:\(sqrt\(t-99\)\)"\) : the schedule gives NaN on every frame'):
        evaluate_schedule("0:(sqrt(t-99))", 12, nan_fill=True)


def deforum_reference(entries, frames):
    """Deforum's get_inbetweens one frame at a time: constants at their frame, expressions live, NaN filled
    linearly between the finite frames around it and with the nearest one at the ends; None if all NaN."""
    latest = {key: value for key, value in entries if key < frames}
    series, current = [math.nan] * frames, None
    for frame in range(frames):
        if frame in latest:
            current = latest[frame]
            if not isinstance(current, tuple):
                series[frame] = float(current)
        if isinstance(current, tuple):
            scale, start = current
            series[frame] = scale * math.sqrt(frame - start) if frame >= start else math.nan
    finite = [frame for frame, value in enumerate(series) if not math.isnan(value)]
    if not finite:
        return None
    out = []
    for frame, value in enumerate(series):
        before = [f for f in finite if f <= frame]
        after = [f for f in finite if f >= frame]
        if not before or not after:
            out.append(series[(after or before)[0 if after else -1]])
        elif before[-1] == after[0]:
            out.append(value)
        else:
            a, b = before[-1], after[0]
            out.append(series[a] + (series[b] - series[a]) * (frame - a) / (b - a))
    return out


NAN_VALUE = st.one_of(st.integers(-50, 50), st.tuples(st.integers(-3, 3).filter(bool), st.integers(0, 60)))


@given(st.lists(st.tuples(st.integers(0, 40), NAN_VALUE), min_size=1, max_size=12), st.integers(1, 45))
@QUICK
def test_nan_fill_matches_deforum_frame_by_frame(entries, frames):
    entries = [(key, value) for key, value in entries if key < frames] or [(0, (1, 3))]
    text = ", ".join(f"{key}:({v[0]}*sqrt(t-{v[1]}))" if isinstance(v, tuple) else f"{key}:({v})"
                     for key, v in entries)
    expected = deforum_reference(entries, frames)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)
        if expected is None:
            with pytest.raises(SettingsError, match="NaN on every frame"):
                evaluate_schedule(text, frames, nan_fill=True)
            return
        result = evaluate_schedule(text, frames, nan_fill=True)
    np.testing.assert_allclose(result, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("text, read, note", [
    ("0:0: ((-0.15 * cos(t/5))**0.90 + 0.43), 10: (1)", "0:(0), 10: (1)",
     'zoom: keyframe 1 ("0:0: ((-0.15 * cos(t/5))**0.90 + 0.43)") read as 0:(0) as Deforum Studio does '
     "(it keeps the text between the first and second ':')"),
    ("0: (0.65), 24: (0.55), 219: (0).3", "0: (0.65), 24: (0.55), 219:(0.3)",
     'zoom: keyframe 3 ("219: (0).3") read as 219:(0.3) as Deforum Studio does '
     "(it drops the parentheses and quotes around a number)"),
    ("0: (0) 24: (0.5)", "0: (0), 24: (0.5)",
     'zoom: keyframe 1 ("0: (0) 24: (0.5)") has no comma between its keyframes: read as 0: (0), 24: (0.5)'),
    ("0: 0.5 10: 0.7, 20: (1)", "0: 0.5, 10: 0.7, 20: (1)", "has no comma between its keyframes"),
    ("0: (1) + t", "0:((1) + t)", 'read as 0:((1) + t) as Deforum Studio does (it reads a value without'),
    ("0:(1)(2)", "0:(12)", "read as 0:(12) as Deforum Studio does"),
    ('"max_f-2":0: (3)', '"max_f-2":(0)', "read as \"max_f-2\":(0)"),
])
def test_stray_text_in_deforum_files_is_read_as_deforum_studio_reads_it(text, read, note):
    reading = read_deforum_schedule(text, "zoom")
    assert reading.text == read
    assert len(reading.notes) == 1 and note in reading.notes[0]


def test_deforum_readings_give_deforum_studios_numbers():
    frames = 240
    strength = evaluate_schedule(read_deforum_schedule("0: (0.65), 24: (0.55), 219: (0).3").text, frames)
    np.testing.assert_allclose(strength[[0, 12, 24, 100, 219, 239]], [0.65, 0.6, 0.55, 0.452564102564, 0.3, 0.3])
    assert values(read_deforum_schedule("0:0: ((-0.15 * cos(t/5))**0.90 + 0.43)").text, 4) == [0] * 4
    assert values(read_deforum_schedule("0: (0) 24: (0.5)").text, 25)[12] == 0.25


@pytest.mark.parametrize("text", [
    "0:(1), 10:(2)", "\n  0: (1),\n  5: (sin(t))\n", "0: 0.5", '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "1.5", "", "   ", "0:(1", "0:(1)), 5:(2)", "0::(1)", "nonsense", "0: (1) 10: (bad(",
])
def test_readable_or_unreadable_text_is_left_as_written(text):
    assert read_deforum_schedule(text, "zoom") == (text, ())


LENIENT_FORMS = ["0:0: ({p})", "0: ({p}) 10: (1)", "0: (1) 10: ({p})", "219: ({p}).3", "0: {p}", "0: (1) + {p}",
                 "0:(1) {p}: (2)", '0:(1) "{p}": (2)', "{p}:0: (1)", "0: ({p})({p})"]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_text_in_the_lenient_forms_is_refused_or_dropped(payload):
    for form in LENIENT_FORMS:
        text = form.replace("{p}", payload)
        reading = read_deforum_schedule(text, "zoom")
        assert isinstance(reading.text, str)
        _finite_or_settings_error(reading.text)
        if reading.text != text:  # a repair only ever writes text the whitelist accepts
            assert re.fullmatch(r"[\w .()+\-*/%<>=!&|~,:\"]*", reading.text) and "__" not in reading.text


@given(st.lists(st.sampled_from(FRAGMENTS + ["0:", " 10:", ": (", ").3", " "]), max_size=14))
@FAST
def test_lenient_reading_of_any_fragments_is_safe(parts):
    reading = read_deforum_schedule("".join(parts), "zoom")
    _finite_or_settings_error(reading.text)


def test_lenient_payloads_never_run(tmp_path):
    marker = tmp_path / "pwned"
    create = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for form in LENIENT_FORMS:
        text = read_deforum_schedule(form.replace("{p}", create), "zoom").text
        try:
            evaluate_schedule(text, 12, nan_fill=True)
        except SettingsError:
            pass
    assert not marker.exists()
