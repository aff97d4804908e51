"""The `deforum-engine` command as a user runs it: real processes for what users type, main() for the rest."""
import json
import subprocess
import sys

import pytest

from deforum_engine.cli import main


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "deforum_engine.cli", *args], capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_schedule_command_prints_values_and_does_not_import_torch():
    result = run("schedule", "0:(0), 4:(8)", "--frames", "6", "--json")
    assert json.loads(result.stdout) == [0, 2, 4, 6, 8, 8]
    probe = ("import sys; from deforum_engine.cli import main; main(['schedule', '0:(1)', '--frames', '3']);"
             "print('torch' in sys.modules, 'cv2' in sys.modules, 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False False"


def test_schedule_error_is_one_clear_line_without_traceback():
    result = run("schedule", "0:(1.5+", "--frames", "3", check=False)
    assert result.returncode == 2
    assert "error: schedule: keyframe 1" in result.stderr and "Traceback" not in result.stderr


def test_plan_json_has_settings_and_frames(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"max_frames": 5, "seed": 3, "motion_preset": "zoom_in",
                                "prompts": {"0": "sky --neg fog"}}))
    assert main(["plan", str(path), "--json", "--set", "angle=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["seed"] == 3 and data["settings"]["max_frames"] == 5
    assert data["frames"]["zoom"] == [1.02] * 5 and data["frames"]["angle"] == [2.0] * 5
    assert data["frames"]["prompt"][0] == "sky" and data["frames"]["negative_prompt"][0] == "fog"
    assert main(["plan", str(path)]) == 0
    table = capsys.readouterr().out
    assert "zoom" in table and len(table.splitlines()) == 2 + 5


def test_settings_error_exit_status_and_message(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"zoom_schedule": "0:(1)"}))
    assert main(["plan", str(path)]) == 2
    assert "did you mean `zoom`" in capsys.readouterr().err


def closed_set_settings():
    """Every setting with a closed set of allowed values, found on the settings model (so a new one is tested too)."""
    from typing import Literal, get_args, get_origin

    from deforum_engine.config import choices
    from deforum_engine.config.settings import Settings

    found = {"depth_algorithm": choices.DEPTH_ALGORITHMS}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        options = [annotation] if get_origin(annotation) is Literal else \
            [option for option in get_args(annotation) if option is not type(None)]
        literals = [option for option in options if get_origin(option) is Literal]
        if literals and all(isinstance(value, str) for value in get_args(literals[0])) and len(options) == 1:
            # the Literal alone, or the Literal or None
            found[name] = get_args(literals[0])
    return sorted(found.items())


@pytest.mark.parametrize("setting, allowed", closed_set_settings(), ids=[name for name, _ in closed_set_settings()])
def test_a_wrong_choice_fails_plan_naming_the_setting_and_its_values(setting, allowed, tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"max_frames": 3, "animation_mode": "3D", setting: "Marigold"} if setting !=
                               "animation_mode" else {"max_frames": 3, setting: "Marigold"}))
    assert main(["plan", str(path)]) == 2
    message = capsys.readouterr().err
    assert f"`{setting}`" in message and "Marigold" in message
    assert all(repr(value) in message for value in allowed), message


def test_presets_list_and_show(capsys):
    assert main(["presets", "--json"]) == 0
    presets = json.loads(capsys.readouterr().out)
    assert len(presets) >= 12 and all(p["description"] for p in presets)
    assert main(["presets", "show", "zoom_in"]) == 0
    assert "zoom" in capsys.readouterr().out


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"max_frames": 30, "motion_preset": "sway"}))
    out = tmp_path / "curves.png"
    assert main(["plot", str(path), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
