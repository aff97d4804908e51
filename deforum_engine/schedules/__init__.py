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

The package, by concern: `grammar` (text -> keyframes), `expressions` (the whitelist compiler),
`scope` (the variables), `timeline` (keyframes -> per-frame arrays) and `deforum_reader` (the
stray text Deforum Studio tolerates in its own presets: `0:0: (...)`, `(0).3`, missing commas);
`mask_expressions` parses the values of the mask schedules (Deforum's composable masks).
"""
from deforum_engine.schedules.deforum_reader import DeforumReading, read_deforum_schedule
from deforum_engine.schedules.expressions import FUNCTIONS, MAX_EXPRESSION_CHARS, MAX_NESTING
from deforum_engine.schedules.grammar import MAX_KEYFRAMES, MAX_SCHEDULE_CHARS, Keyframe, parse_schedule
from deforum_engine.schedules.scope import AUDIO_VARIABLES, BUILTIN_VARIABLES, TEMPO_VARIABLES, schedule_variables
from deforum_engine.schedules.timeline import (
                                               ScheduleWarning,
                                               evaluate_expression,
                                               evaluate_frame_key,
                                               evaluate_schedule,
                                               evaluate_string_schedule,
)

__all__ = ["AUDIO_VARIABLES", "BUILTIN_VARIABLES", "FUNCTIONS", "MAX_EXPRESSION_CHARS", "MAX_KEYFRAMES", "MAX_NESTING",
           "MAX_SCHEDULE_CHARS", "TEMPO_VARIABLES", "DeforumReading", "Keyframe", "ScheduleWarning",
           "evaluate_expression", "evaluate_frame_key", "evaluate_schedule", "evaluate_string_schedule",
           "parse_schedule", "read_deforum_schedule", "schedule_variables"]
