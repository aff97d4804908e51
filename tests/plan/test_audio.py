"""Audio features from synthetic soundtracks: click tracks at a known tempo, pure sines."""
import json
import math
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest

from deforum_engine.plan import audio
from deforum_engine.plan.audio import AudioFeatures, analyse_audio, beat_pulse, decode_audio
from deforum_engine.errors import SettingsError
from audio_clips import BPM, DURATION, FPS, SR, click_frames, click_track, write_wav

def convert(src, dst):
    """Re-encode with the ffmpeg binary imageio-ffmpeg ships (format from the extension)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), str(dst)]
    subprocess.run(cmd, check=True)
    return dst


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORUM_ENGINE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    y, times = click_track()
    return write_wav(tmp_path_factory.mktemp("audio") / "clicks.wav", y), times


@pytest.fixture(scope="module")
def click_features(clicks):
    return analyse_audio(clicks[0], FPS, cache=False)


# --- decoding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["flac", "mp3", "m4a"])
def test_other_formats_decode_like_the_wav(clicks, tmp_path, ext):
    wav = decode_audio(clicks[0])
    other = decode_audio(convert(clicks[0], tmp_path / f"clicks.{ext}"))
    assert other.dtype == np.float32 and other.ndim == 1
    assert abs(other.size - wav.size) < 22050 / FPS  # same length within a frame
    if ext == "flac":
        np.testing.assert_allclose(other, wav, atol=1e-3)


def test_decode_resamples_to_the_requested_rate(clicks):
    assert abs(decode_audio(clicks[0], 22050).size - DURATION * 22050) <= 1
    assert abs(decode_audio(clicks[0], 8000).size - DURATION * 8000) <= 1


def test_missing_file_is_a_settings_error_naming_it(tmp_path):
    with pytest.raises(SettingsError, match=r"nope\.mp3.*not found.*WAV, MP3"):
        analyse_audio(tmp_path / "nope.mp3", FPS)


def test_non_audio_file_is_a_settings_error_naming_it(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("these are not the sounds you are looking for\n")
    with pytest.raises(SettingsError, match=r"notes\.mp3.*cannot decode.*WAV, MP3, FLAC"):
        decode_audio(text)


def test_bad_parameters_are_settings_errors(clicks):
    with pytest.raises(SettingsError, match="fps"):
        analyse_audio(clicks[0], 0)
    with pytest.raises(SettingsError, match="max_frames"):
        analyse_audio(clicks[0], FPS, max_frames=-3)
    with pytest.raises(SettingsError, match="bpm"):
        analyse_audio(clicks[0], FPS, bpm="fast")


def test_missing_librosa_says_how_to_install_it(clicks, monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)
    with pytest.raises(SettingsError, match=r"clicks\.wav.*pip install -c constraints\.txt 'deforum-engine\[audio\]'"):
        analyse_audio(clicks[0], FPS, cache=False)


# --- features of a click track ------------------------------------------------------------------

@pytest.mark.slow
def test_tempo_of_a_click_track(click_features):
    assert click_features.bpm == pytest.approx(BPM, rel=0.02)


@pytest.mark.slow
def test_beats_fall_on_the_click_frames(clicks, click_features):
    truth = click_frames(clicks[1])
    beats = click_features.beat_frames
    assert len(beats) >= 0.8 * len(truth)
    assert max(np.abs(truth - b).min() for b in beats) <= 1


@pytest.mark.slow
def test_pulse_is_one_on_beats_and_decays_in_between(click_features):
    pulse, beats = click_features.features["pulse"], click_features.beat_frames
    np.testing.assert_array_equal(pulse[beats], 1.0)
    assert np.all(pulse[: beats[0]] == 0)
    for b, nxt in zip(beats[:-1], beats[1:]):
        assert np.all(np.diff(pulse[b:nxt]) < 0)
        assert pulse[nxt - 1] < 0.15


@pytest.mark.slow
def test_onset_and_amp_peak_on_clicks(clicks, click_features):
    truth = click_frames(clicks[1])
    onset, amp = click_features.features["onset"], click_features.features["amp"]
    far = np.ones(click_features.frames, bool)
    for c in truth:
        far[max(c - 2, 0): c + 3] = False
        assert onset[max(c - 1, 0): c + 2].max() > 0.4
        assert amp[c] > 0.5  # amp is exact: the click's own frame
    assert onset[far].max() < 0.1 and amp[far].max() < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("fps", [12, 30, 60])
def test_clicks_land_within_a_frame_at_other_frame_rates(clicks, fps):
    features = analyse_audio(clicks[0], fps, cache=False)
    truth = click_frames(clicks[1], fps)
    assert max(np.abs(truth - b).min() for b in features.beat_frames) <= 1
    onset, amp = features.features["onset"], features.features["amp"]
    for c in truth:
        assert abs(int(np.argmax(onset[c - 2: c + 3])) - 2) <= 1
        assert abs(int(np.argmax(amp[c - 2: c + 3])) - 2) <= 1


@pytest.mark.slow
def test_features_are_in_range_with_one_value_per_frame(click_features):
    assert click_features.frames == math.ceil(DURATION * FPS) == 193
    assert set(click_features.features) == set(audio.FEATURE_NAMES)
    for name, values in click_features.features.items():
        assert values.shape == (193,), name
        assert values.min() >= 0 and values.max() == pytest.approx(1.0), name


@pytest.mark.slow
def test_schedule_variables(click_features):
    variables = click_features.variables()
    assert set(variables) == {*audio.FEATURE_NAMES, "bpm"}
    assert variables["bpm"] == click_features.bpm
    assert click_features.variables(bpm_override=128)["bpm"] == 128.0


@pytest.mark.slow
def test_mp3_gives_the_same_beats(clicks, click_features, tmp_path):
    mp3 = analyse_audio(convert(clicks[0], tmp_path / "clicks.mp3"), FPS)
    assert mp3.frames == click_features.frames
    assert mp3.bpm == pytest.approx(BPM, rel=0.02)
    assert max(np.abs(click_frames(clicks[1]) - b).min() for b in mp3.beat_frames) <= 1


@pytest.mark.slow
def test_given_bpm_is_the_tempo(clicks, click_features):
    given = analyse_audio(clicks[0], FPS, bpm=BPM)
    assert given.bpm == BPM
    assert max(np.abs(click_frames(clicks[1]) - b).min() for b in given.beat_frames) <= 1


@pytest.mark.slow
def test_max_frames_trims_or_pads_without_changing_kept_frames(clicks, click_features):
    short = analyse_audio(clicks[0], FPS, max_frames=50)
    long = analyse_audio(clicks[0], FPS, max_frames=250)
    auto = analyse_audio(clicks[0], FPS, max_frames="auto")
    assert (short.frames, long.frames, auto.frames) == (50, 250, 193)
    for name in ("amp", "onset", "pulse", "bass"):
        np.testing.assert_array_equal(short.features[name], click_features.features[name][:50])
        np.testing.assert_array_equal(long.features[name][:193], click_features.features[name])
    assert np.all(long.features["amp"][193:] == 0)
    assert all(b < 50 for b in short.beat_frames)


# --- band energies ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("hz, high, low", [(60, "bass", "treble"), (8000, "treble", "bass")])
def test_band_energies_of_sines(tmp_path, hz, high, low):
    t = np.arange(int(2.0 * SR)) / SR
    path = write_wav(tmp_path / f"sine{hz}.wav", 0.5 * np.sin(2 * np.pi * hz * t))
    bands = analyse_audio(path, FPS, cache=False).features
    inner = slice(2, -2)  # the STFT window straddles the edges of the file
    assert bands[high][inner].min() > 0.9
    assert bands[low][inner].max() < 0.05
    assert bands["mid"][inner].max() < 0.05


@pytest.mark.slow
def test_silence_gives_zeros_and_no_tempo(tmp_path):
    silent = analyse_audio(write_wav(tmp_path / "silence.wav", np.zeros(2 * SR)), FPS, cache=False)
    assert silent.frames == 2 * FPS and silent.bpm == 0.0 and silent.beat_frames.size == 0
    assert all(not values.any() for values in silent.features.values())


# --- cache --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cache_returns_the_same_result_without_analysing(clicks, tmp_path, monkeypatch):
    first = analyse_audio(clicks[0], FPS)
    entries = list((tmp_path / "cache" / "audio").glob("*.npz"))
    assert len(entries) == 1

    def no_analysis(*args):
        raise AssertionError("cache miss")
    monkeypatch.setattr(audio, "_analyse_song", no_analysis)
    second = analyse_audio(clicks[0], FPS)  # no analysis ran (its speed: benchmarks/bench_audio.py)
    assert second.bpm == first.bpm
    np.testing.assert_array_equal(second.beat_frames, first.beat_frames)
    for name in audio.FEATURE_NAMES:
        np.testing.assert_array_equal(second.features[name], first.features[name])
    with pytest.raises(AssertionError, match="cache miss"):  # another fps is another entry
        analyse_audio(clicks[0], 12)


@pytest.mark.slow
def test_unreadable_cache_entry_is_analysed_again(clicks, tmp_path):
    first = analyse_audio(clicks[0], FPS)
    (entry,) = (tmp_path / "cache" / "audio").glob("*.npz")
    entry.write_bytes(b"garbage")
    again = analyse_audio(clicks[0], FPS)
    np.testing.assert_array_equal(again.features["pulse"], first.features["pulse"])


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert audio.cache_dir() == tmp_path / "cache" / "audio"
    monkeypatch.delenv("DEFORUM_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert audio.cache_dir() == tmp_path / "xdg" / "deforum-engine" / "audio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert audio.cache_dir() == tmp_path / "home" / ".cache" / "deforum-engine" / "audio"


# --- pulse, JSON, plot --------------------------------------------------------------------------

def test_beat_pulse_is_a_sawtooth():
    pulse = beat_pulse(np.array([2, 6]), 12, fps=10, bpm=150)
    np.testing.assert_allclose(pulse, [0, 0, 1, .75, .5, .25, 1, .75, .5, .25, 0, 0])
    assert not beat_pulse(np.array([], int), 5, fps=10, bpm=0).any()


def _tiny_features():
    ramp = np.linspace(0, 1, 6, dtype=np.float32)
    return AudioFeatures(fps=2.0, frames=6, duration=3.0, bpm=60.0, beat_frames=np.array([0, 2, 4]),
                         features={name: ramp for name in audio.FEATURE_NAMES})


def test_features_to_json_matches_the_cli_format():
    doc = json.loads(json.dumps(audio.features_to_json(_tiny_features())))
    assert doc["bpm"] == 60.0 and doc["frames"] == 6 and doc["beat_frames"] == [0, 2, 4]
    assert set(doc["features"]) == set(audio.FEATURE_NAMES)
    assert doc["features"]["pulse"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_plot_features_writes_a_png(tmp_path):
    out = audio.plot_features(_tiny_features(), tmp_path / "features.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
