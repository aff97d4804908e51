"""Values Deforum reads where the engine's own rules would refuse or differ (Deforum Studio's presets):
an unused perspective_flip_fv, a field of view outside (0, 180], a strength outside [0, 1], and keyframes
without a comma that would go back to a frame keyed elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from deforum_engine.config.importers.deforum import import_deforum
from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.plan.frame_plan import DeforumReadingWarning, build_plan
from deforum_engine.schedules import read_deforum_schedule

BASE = {"W": 64, "H": 64, "max_frames": 30, "seed": 1, "use_init": False, "animation_mode": "3D",
        "prompts": {"0": "a tunnel"}}


def plan_of(document: dict):
    imported = import_deforum({**BASE, **document}, "preset.txt")
    return build_plan(validate_settings(imported.settings, "preset.txt")), imported.notes


def deforum_keys(text: str) -> dict[int, str]:
    """Deforum's keyframe parser, as its code reads: entries split at ',', key and value at ':', later wins."""
    frames = {}
    for entry in text.split(","):
        parts = entry.split(":")
        frames[int(parts[0].strip())] = parts[1].strip()
    return frames


def test_perspective_flip_fv_is_not_checked_while_the_flip_is_off(recwarn):
    fv = "0: ((106 * cos((120 / 480 * 3.141 * (t + 0) / 12))**1 + 0))"  # negative from frame 25
    plan, _ = plan_of({"enable_perspective_flip": False, "perspective_flip_fv": fv})
    assert plan.values["perspective_flip_fv"][26] < 0
    assert not [w for w in recwarn if issubclass(w.category, DeforumReadingWarning)]
    assert np.allclose(plan.motion, np.eye(3))  # 3D without the flip: no 2D motion at all


def test_a_field_of_view_outside_0_180_goes_through_deforums_formula_with_a_warning():
    fv = "0: ((106 * cos((120 / 480 * 3.141 * (t + 0) / 12))**1 + 0))"
    with pytest.warns(DeforumReadingWarning, match=r"perspective_flip_fv: 5 frame\(s\) from frame 25 .*-6.9"):
        plan, _ = plan_of({"enable_perspective_flip": True, "perspective_flip_fv": fv,
                           "perspective_flip_phi": "0:(10)"})
    assert np.isfinite(plan.motion).all()
    # a negative field of view tilts the other way: the perspective term changes sign
    assert plan.motion[10][2, 1] * plan.motion[28][2, 1] < 0
    with pytest.raises(SettingsError, match="perspective_flip_fv: frame 0 has value 0"):
        plan_of({"enable_perspective_flip": True, "perspective_flip_fv": "0:(0)"})


def test_a_strength_outside_0_1_is_clamped_as_deforum_clamps_it():
    strength = "0: ((-0.47 * cos((90 / 60 * 3.141 * (t + 3) / 12))**410 + 0.42))"
    with pytest.warns(DeforumReadingWarning, match=r"strength_schedule: \d+ frame\(s\) from frame 5 .*clamped"):
        plan, _ = plan_of({"strength_schedule": strength, "animation_mode": "2D"})
    values = plan.values["strength"]
    assert values.min() == 0.0 and values.max() <= 1.0 and values[5] == 0.0 and values[0] == pytest.approx(0.42)


def test_a_keyframe_without_a_comma_that_goes_back_is_read_as_deforums_parser_reads_it():
    text = "0:(0.38), 1:(0.38), 2:(0.38), 3:(0.38)\n  1:(0.00), 2:(0.10), 4:(0.38)"
    reading = read_deforum_schedule(text, "strength_schedule")
    assert reading.text == "0:(0.38), 1:(0.38), 2:(0.38), 3:(0.38), 2:(0.10), 4:(0.38)"
    assert "1:(0.00) is never a keyframe there" in reading.notes[0]
    deforum = deforum_keys(text)
    assert deforum[1] == "(0.38)" and deforum[2] == "(0.10)" and deforum[3].startswith("(0.38)")
    plan, notes = plan_of({"strength_schedule": text, "max_frames": 5, "animation_mode": "2D"})
    assert list(plan.values["strength"]) == pytest.approx([0.38, 0.38, 0.10, 0.38, 0.38])
    assert any("never a keyframe" in note for note in notes)
    # keyframes that go forward are still split, as before
    forward = read_deforum_schedule("0: (0) 24: (0.5)", "rotation_3d_z")
    assert forward.text == "0: (0), 24: (0.5)"


def test_the_engines_own_files_keep_their_range_errors_but_an_unused_fv_is_never_checked():
    engine = {"W": 64, "H": 64, "max_frames": 4, "prompts": {"0": "a tunnel"}}
    build_plan(validate_settings({**engine, "perspective_flip_fv": "0:(-10)"}))  # flip off: never read
    with pytest.raises(SettingsError, match="perspective_flip_fv: frame 0 has value -10"):
        build_plan(validate_settings({**engine, "perspective_flip_fv": "0:(-10)", "enable_perspective_flip": True}))
    with pytest.raises(SettingsError, match="strength_schedule: frame 0 has value -0.1"):
        build_plan(validate_settings({**engine, "strength_schedule": "0:(-0.1)"}))
