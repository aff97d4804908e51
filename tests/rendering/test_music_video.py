"""Audio-reactive schedules end to end: a soundtrack drives the plan, the presets and the CLI."""
import json

import numpy as np
import pytest

from deforum_engine import SettingsError, build_plan, load_settings, render
from deforum_engine.cli import main
from deforum_engine.output import probe_video
from deforum_engine.config.presets import list_presets
from deforum_engine.config.settings import validate_settings
from audio_clips import click_frames, click_track, write_wav

FPS = 24


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORUM_ENGINE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    y, times = click_track(duration=4.01)
    return write_wav(tmp_path_factory.mktemp("song") / "clicks.wav", y), times


@pytest.mark.slow
def test_pulse_schedule_peaks_on_the_clicks_and_auto_covers_the_song(song):
    path, times = song
    plan = build_plan(validate_settings({"soundtrack_path": str(path), "fps": FPS, "max_frames": "auto",
                                         "zoom": "0:(1.0 + 0.04*pulse)", "angle": "0:(3*bass)"}))
    assert plan.frame_count == int(np.ceil(4.01 * FPS))
    zoom = plan.values["zoom"]
    peaks = np.flatnonzero(np.isclose(zoom, 1.04))
    expected = click_frames(times, FPS)
    # librosa may skip the very first click as a beat; every detected beat is within a frame of a click
    assert len(peaks) >= len(expected) - 1
    assert all(np.min(np.abs(expected - p)) <= 1 for p in peaks)
    assert np.all(zoom >= 1.0) and zoom.min() < 1.01  # decays between beats
    assert plan.audio.bpm == pytest.approx(120, rel=0.03)


@pytest.mark.slow
def test_audio_presets_render_with_a_soundtrack(song, tmp_path):
    path, _ = song
    for preset in (p for p in list_presets().values() if p.name.startswith("audio_")):
        plan = build_plan(validate_settings({**preset.settings, "soundtrack_path": str(path), "fps": FPS,
                                             "max_frames": 30}, preset.name))
        assert plan.frame_count == 30
    settings = load_settings(None, {"motion_preset": "audio_pulse_zoom", "W": 64, "H": 64,
                                    "soundtrack_path": str(path), "fps": 12, "max_frames": "auto",
                                    "video_preset": "ultrafast"})
    result = render(settings, out=tmp_path / "mv", preview=True, quiet=True)
    video = probe_video(result.video)
    assert video["has_audio"] and video["frames"] == int(np.ceil(4.01 * 12))


def test_audio_variable_without_soundtrack_says_so():
    with pytest.raises(SettingsError, match=r"pulse.*soundtrack|soundtrack.*pulse"):
        build_plan(validate_settings({"max_frames": 5, "zoom": "0:(1+pulse)"}))


@pytest.mark.slow
def test_audio_command_json_and_plot(song, tmp_path, capsys):
    path, times = song
    plot = tmp_path / "features.png"
    assert main(["audio", str(path), "--fps", str(FPS), "--json", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"] == int(np.ceil(4.01 * FPS)) and data["bpm"] == pytest.approx(120, rel=0.03)
    assert set(data["features"]) >= {"amp", "onset", "pulse", "bass", "mid", "treble"}
    assert all(len(v) == data["frames"] for v in data["features"].values())
    assert plot.read_bytes()[:4] == b"\x89PNG"
