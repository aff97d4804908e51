"""Interpolated videos: Deforum's frame counts and fps, the soundtrack in sync, on a video or a render folder."""
import subprocess
import wave

import imageio_ffmpeg
import numpy as np
import pytest

from deforum_engine import render
from deforum_engine.config.settings import validate_settings
from deforum_engine.output import VideoWriter, probe_video
from deforum_engine.post.frames import open_source
from deforum_engine.post.interpolate import Interpolation, interpolate_source
from deforum_engine.post.rife import load_rife
from tiny_post import save_tiny_rife


@pytest.fixture(scope="module")
def rife(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    folder = save_tiny_rife(tmp_path_factory.mktemp("rife"), "4.6").parent
    return load_rife(str(folder))


def write_wav(path, seconds, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).tobytes())
    return path


def audio_seconds(video) -> float:
    """The length of the video's audio stream, from its decoded samples."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1",
           "-ar", "8000", "-f", "s16le", "-"]
    return len(subprocess.run(cmd, capture_output=True, check=True).stdout) / 2 / 8000


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """10 frames at 10 fps, 64x48, with a soundtrack longer than the frames (cut to them)."""
    folder = tmp_path_factory.mktemp("clip")
    song = write_wav(folder / "song.wav", 3.0)
    path = folder / "clip.mp4"
    with VideoWriter(path, 64, 48, 10, preset="ultrafast", audio_path=song, frame_count=10) as video:
        for i in range(10):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, i * 4:i * 4 + 16] = 255
            video.write(frame)
    return path


@pytest.mark.parametrize("x, slow_mo, frames, fps", [(2, None, 19, 20), (4, None, 37, 40), (3, None, 28, 30),
                                                     (2, 2, 19, 10)])
def test_frame_count_fps_and_soundtrack_as_deforum_times_them(clip, rife, x, slow_mo, frames, fps):
    job = Interpolation(x=x, slow_mo=slow_mo)
    video = interpolate_source(open_source(clip), job, rife)
    name = f"clip_RIFE_x{x}" + (f"_slomo_x{slow_mo}" if slow_mo else "") + ".mp4"
    assert video == clip.parent / name
    info = probe_video(video)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (frames, 64, 48, fps)
    if slow_mo:
        assert not info["has_audio"]  # Deforum leaves the soundtrack out of slow-mo videos
    else:
        assert abs(audio_seconds(video) - frames / fps) < 1 / fps  # ends with the last frame


def test_a_render_folder_keeps_its_raw_frames_and_the_interpolated_ones_on_request(tmp_path, rife):
    song = write_wav(tmp_path / "song.wav", 2.0)
    settings = validate_settings({"W": 64, "H": 64, "max_frames": 6, "fps": 12, "zoom": "0:(1.05)",
                                  "soundtrack_path": str(song), "video_preset": "ultrafast"})
    result = render(settings, out=tmp_path / "r", preview=True, quiet=True)
    raw = sorted((result.folder / "frames").glob("*.png"))
    video = interpolate_source(open_source(result.folder), Interpolation(x=2, keep_frames=True), rife)
    assert video == result.folder / "r_RIFE_x2.mp4"
    assert (probe_video(video)["frames"], probe_video(video)["fps"]) == (11, 24)
    assert abs(audio_seconds(video) - 11 / 24) < 1 / 24
    kept = sorted((result.folder / "interpolated_frames_rife_RIFE_x2").glob("*.png"))
    assert len(kept) == 11 and kept[0].name == "000000000.png"
    assert sorted((result.folder / "frames").glob("*.png")) == raw  # the raw frames stay, to redo it


def test_bad_amounts_are_refused_with_the_setting_named():
    from deforum_engine.errors import SettingsError

    with pytest.raises(SettingsError, match="frame_interpolation_x_amount"):
        Interpolation(x=1)
    with pytest.raises(SettingsError, match="frame_interpolation_slow_mo_amount"):
        Interpolation(x=2, slow_mo=1)
