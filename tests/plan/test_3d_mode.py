"""3D mode as users see it: the plan's per-frame camera values, plot and plan table, presets."""
import json

import numpy as np
import pytest

from deforum_engine.cli import main
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.plan.plot import panels
from deforum_engine.config.presets import list_presets
from deforum_engine.config.settings import validate_settings

# Given to the CLI as --set overrides.
STUDIO_STYLE = {  # the shape of a Deforum Studio 3D preset: a push in with a turn and a roll
    "animation_mode": "3D", "W": 1024, "H": 576, "max_frames": 24, "fps": 12,
    "translation_z": "0:(4)", "translation_x": "0:(1.5*sin(2*3.14*t/24))",
    "rotation_3d_y": "0:(0.4)", "rotation_3d_z": "0:(0.3*t/24)", "fov_schedule": "0:(60), 23:(80)",
}


def overrides(values: dict) -> list[str]:
    return [part for key, value in values.items() for part in ("--set", f"{key}={value}")]


def settings_file(tmp_path):
    path = tmp_path / "studio.json"
    path.write_text(json.dumps({"name": "studio"}))
    return str(path)


def test_plan_json_has_the_3d_values_per_frame_and_the_mode(tmp_path, capsys):
    assert main(["plan", settings_file(tmp_path), "--json", *overrides(STUDIO_STYLE)]) == 0
    data = json.loads(capsys.readouterr().out)
    frames = data["frames"]
    assert data["settings"]["animation_mode"] == "3D"
    assert frames["translation_z"] == [4.0] * 24
    assert frames["rotation_3d_z"][12] == pytest.approx(0.15)
    assert frames["fov"][0] == 60 and frames["fov"][23] == 80 and frames["fov"][11] == pytest.approx(60 + 20 * 11 / 23)
    assert {"rotation_3d_x", "rotation_3d_y", "near", "far", "aspect_ratio"} <= set(frames)


def test_plan_table_shows_the_3d_camera(tmp_path, capsys):
    assert main(["plan", settings_file(tmp_path), *overrides(STUDIO_STYLE)]) == 0
    header = capsys.readouterr().out.splitlines()[1].split()
    assert header[:8] == ["frame", "tx", "ty", "tz", "rx", "ry", "rz", "fov"] and "zoom" not in header


def test_plot_draws_the_3d_schedules(tmp_path):
    pytest.importorskip("matplotlib")
    plan = build_plan(validate_settings(STUDIO_STYLE))
    drawn = [name for _, names in panels(plan) for name in names]
    assert {"translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov"} <= set(drawn)
    assert "zoom" not in drawn and "angle" not in drawn
    assert "zoom" in [n for _, names in panels(build_plan(validate_settings({"max_frames": 5}))) for n in names]
    out = tmp_path / "curves.png"
    assert main(["plot", settings_file(tmp_path), "-o", str(out), *overrides(STUDIO_STYLE)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_at_least_eight_3d_presets_that_move_the_camera():
    presets = [p for p in list_presets().values() if p.settings.get("animation_mode") == "3D"]
    assert len(presets) >= 8
    for preset in presets:
        if preset.name.startswith("audio_"):
            continue  # needs a soundtrack: checked in test_music_video
        plan = build_plan(validate_settings({**preset.settings, "max_frames": 60}, preset.name))
        camera = [plan.values[name] for name in ("translation_x", "translation_y", "translation_z",
                                                 "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")]
        assert max(float(np.abs(values).max()) for values in camera) > 0.1, preset.name
