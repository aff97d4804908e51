"""Issue 21's rough edges, each as a user meets it: the command, the message it prints."""
import subprocess
import sys

import pytest

from deforum_engine.backends.preview import PreviewBackend
from deforum_engine.config.settings import validate_settings
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.rendering.summary import describe_plan

SMALL = {"W": 64, "H": 64, "max_frames": 6}


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "deforum_engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, check=False)


def test_a_preview_summary_does_not_talk_about_diffusion():
    summary = describe_plan(build_plan(validate_settings({**SMALL, "diffusion_cadence": 2})), PreviewBackend())
    assert "MOTION PREVIEW" in summary and "4 key frames (cadence 2)" in summary
    for word in ("steps", "denoise", "diffused", "img2img"):
        assert word not in summary, summary


def test_a_model_render_prints_no_torchvision_notes(tiny_sd_dir, tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"W": 64, "H": 64, "max_frames": 2, "steps": 2, "prompts": {"0": "a fox"}}')
    result = cli("render", str(path), "--model", str(tiny_sd_dir), "--out", str(tmp_path / "r"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "torchvision" not in result.stderr, result.stderr


def write(tmp_path, text, name="s.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_misspelt_set_key_is_named_as_the_set_it_is(tmp_path):
    path = write(tmp_path, '{"W": 64, "H": 64, "max_frames": 2}')
    result = cli("plan", path, "--set", "translaton_x=0:(2)")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --set translaton_x: unknown setting; did you mean `translation_x`?")


def test_a_schedule_error_names_the_file(tmp_path):
    path = write(tmp_path, '{"W": 64, "H": 64, "max_frames": 4, "zoom": "0:(1.0 +* 2)"}')
    result = cli("plan", path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: zoom: keyframe 1"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mode_names_in_any_case_and_a_suggestion_for_a_near_miss():
    assert validate_settings({"animation_mode": "3d"}).animation_mode == "3D"
    assert validate_settings({"color_coherence": "lab", "border": "Wrap"}).border == "wrap"
    with pytest.raises(Exception, match=r"animation_mode.*did you mean '3D'"):
        validate_settings({"animation_mode": "3-D"})


BLOCK = ("import sys, importlib.abc\n"
         "class Block(importlib.abc.MetaPathFinder):\n"
         "    def find_spec(self, name, path=None, target=None):\n"
         "        if name.split('.')[0] == {0!r}:\n"
         "            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)\n"
         "sys.meta_path.insert(0, Block())\n"
         "from deforum_engine.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def test_a_missing_optional_package_is_one_line(tmp_path):
    song = "examples/beat.wav"
    result = subprocess.run([sys.executable, "-c", BLOCK.format("matplotlib"), "audio", song, "--fps", "10",
                             "--plot", str(tmp_path / "a.png")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("analysing")]
    assert lines[-1] == ("error: audio needs matplotlib, an optional package: "
                         "pip install -c constraints.txt 'deforum-engine[plot]'"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("serve", "--preview", "--port", str(port), "--data", str(tmp_path / "data"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (f"error: serve: 127.0.0.1:{port} is in use or not available (Address already in use); "
         "stop what holds it or choose another with --port")]


def test_ignored_deforum_keys_are_one_short_warning_grouped_by_feature():
    result = cli("plan", "tests/data/importers/a1111_2d_full_settings.txt", "--set", "max_frames=2")
    warning = [line for line in result.stderr.splitlines() if "were ignored" in line]
    assert len(warning) == 1 and len(warning[0]) < 500, warning
    assert "ignored: other 20 (seed_resize_from_w, seed_resize_from_h, ...); " in warning[0]
    assert "guided images (looper) 6 (use_looper, init_images, ...)" in warning[0]


def test_a_long_audio_analysis_shows_progress(tmp_path):
    env_cache = {"DEFORUM_ENGINE_CACHE": str(tmp_path / "cache")}
    import os
    result = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "audio", "examples/beat.wav", "--fps", "10"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **env_cache}, check=False)
    assert result.returncode == 0, result.stderr
    assert "analysing beat.wav" in result.stderr and "onsets and beats" in result.stderr


def test_the_readme_install_lines_go_through_the_constraints_file():
    from pathlib import Path

    lines = Path("README.md").read_text().splitlines()
    installs = [(n, line) for n, line in enumerate(lines) if "pip install" in line and "-e " in line + " "]
    # the one exception: refreshing constraints.txt itself, in a fresh venv at /tmp/lock
    installs = [line for n, line in installs if "/tmp/lock" not in lines[n - 1]]
    assert len(installs) >= 4 and all("-c constraints.txt" in line for line in installs), installs
