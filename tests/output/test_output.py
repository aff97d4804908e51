"""Render folder, crash-safe frame writing, resume state and the H.264 video."""
import os
import signal
import subprocess
import sys
import time
import wave

import cv2
import numpy as np
import pytest

from deforum_engine import output
from deforum_engine.output import atomic, resume
from deforum_engine.output import writer as writer_module
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.output import (FrameWriter, RenderFolder, ResumeState, VideoWriter,
                                   check_soundtrack, encode_folder, load_resume_state,
                                   probe_video, save_resume_state)

W, H, FPS = 64, 48, 12


def make_frames(n, seed=0):
    """Smooth-ish noise frames, so PNG and x264 do real work."""
    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)
            for _ in range(n)]


def write_wav(path, seconds, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def new_render(tmp_path, name="clip"):
    folder = RenderFolder(tmp_path / name)
    folder.ensure_writable()
    folder.settings_path.write_text("{}")
    return folder


def write_render(folder, frames, video=None):
    with FrameWriter(folder, video) as writer:
        for i, frame in enumerate(frames):
            writer.put(i, frame, ResumeState(i + 1, {"prev": frame}))


def all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- render folder and resume state --------------------------------------------------------------

def test_folder_layout(tmp_path):
    folder = RenderFolder(tmp_path / "song")
    assert folder.frame_path(7) == tmp_path / "song" / "frames" / "000007.png"
    assert folder.video_path == tmp_path / "song" / "song.mp4"
    assert folder.resume_path.name == "resume.npz"
    assert not folder.is_render() and folder.finished_frames() == 0
    assert load_resume_state(folder) is None


def test_unwritable_folder_is_a_settings_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    folder = RenderFolder(tmp_path / "a_file" / "render")
    with pytest.raises(SettingsError, match="a_file"):
        folder.ensure_writable()


def test_resume_state_round_trips(tmp_path):
    folder = new_render(tmp_path)
    image = make_frames(1)[0]
    values = {"prev": image, "ref": image.astype(np.float32) / 255, "seed": 1234,
              "strength": 0.65, "sampler": "euler_a", "cadence_on": True}
    save_resume_state(folder, ResumeState(5, values))
    state = load_resume_state(folder)
    assert state.next_frame == 5 and folder.finished_frames() == 5
    assert set(state.arrays) == set(values)
    np.testing.assert_array_equal(state.arrays["prev"], image)
    assert state.arrays["ref"].dtype == np.float32
    assert (state.arrays["seed"], state.arrays["strength"]) == (1234, 0.65)
    assert (state.arrays["sampler"], state.arrays["cadence_on"]) == ("euler_a", True)
    assert all_files(folder.root) == ["resume.npz", "settings.json"]


def test_resume_state_refuses_objects(tmp_path):
    folder = new_render(tmp_path)
    with pytest.raises(TypeError, match="rng"):
        save_resume_state(folder, ResumeState(1, {"rng": {"state": 2**130}}))
    assert load_resume_state(folder) is None


# --- frame writer --------------------------------------------------------------------------------

def test_frames_read_back_identical_and_no_temp_files(tmp_path):
    folder = new_render(tmp_path)
    frames = make_frames(5)
    write_render(folder, frames)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(output.read_frame(folder.frame_path(i)), frame)
    expected = [f"frames/{i:06d}.png" for i in range(5)] + ["resume.npz", "settings.json"]
    assert all_files(folder.root) == expected
    assert folder.finished_frames() == 5
    np.testing.assert_array_equal(load_resume_state(folder).arrays["prev"], frames[-1])


def test_state_is_saved_after_its_frame(tmp_path, monkeypatch):
    folder = new_render(tmp_path)
    events = []
    real_replace, real_sync, real_save = atomic._replace_atomic, atomic._sync_filesystem, resume.save_resume_state

    monkeypatch.setattr(writer_module, "_replace_atomic", lambda path, data: (real_replace(path, data),
                                                                       events.append(path.name)))
    monkeypatch.setattr(writer_module, "_sync_filesystem", lambda folder, paths: (real_sync(folder, paths),
                                                                           events.append("sync")))
    monkeypatch.setattr(writer_module, "save_resume_state", lambda f, state: (real_save(f, state),
                                                                       events.append(f"state {state.next_frame}")))
    with FrameWriter(folder, commit_seconds=0) as writer:
        for i, frame in enumerate(make_frames(4)):
            writer.put(i, frame, None if i == 2 else ResumeState(i + 1))  # 2: a cadence frame
    assert events == ["000000.png", "sync", "state 1", "000001.png", "sync", "state 2",
                      "000002.png", "000003.png", "sync", "state 4"]


def test_group_commit_never_points_past_synced_frames(tmp_path, monkeypatch):
    folder = new_render(tmp_path)
    synced, saved = set(), []
    real_sync, real_save = atomic._sync_filesystem, resume.save_resume_state

    def record_sync(where, paths):
        real_sync(where, paths)
        synced.update(int(p.stem) for p in paths)

    def record_save(f, state):
        assert set(range(state.next_frame)) <= synced, "state saved before its frames were synced"
        real_save(f, state)
        saved.append(state.next_frame)

    monkeypatch.setattr(writer_module, "_sync_filesystem", record_sync)
    monkeypatch.setattr(writer_module, "save_resume_state", record_save)
    with FrameWriter(folder, commit_seconds=3600) as writer:  # commits only when caught up, and at the end
        for i, frame in enumerate(make_frames(12)):
            writer.put(i, frame, ResumeState(i + 1))
    assert saved[-1] == 12 and load_resume_state(folder).next_frame == 12


def test_put_copies_the_callers_buffers(tmp_path):
    folder = new_render(tmp_path)
    buffer = make_frames(1)[0]
    original = buffer.copy()
    with FrameWriter(folder) as writer:
        writer.put(0, buffer, ResumeState(1, {"prev": buffer}))
        buffer[:] = 0
    np.testing.assert_array_equal(output.read_frame(folder.frame_path(0)), original)
    np.testing.assert_array_equal(load_resume_state(folder).arrays["prev"], original)


def test_put_checks_order_and_state(tmp_path):
    folder = new_render(tmp_path)
    frame = make_frames(1)[0]
    with FrameWriter(folder) as writer:
        writer.put(3, frame, ResumeState(4))  # a resumed render starts past 0
        with pytest.raises(ValueError, match="expected 4"):
            writer.put(6, frame, ResumeState(7))
        with pytest.raises(ValueError, match="past a frame"):
            writer.put(4, frame, ResumeState(9))
        with pytest.raises(ValueError, match="uint8"):
            writer.put(4, frame.astype(np.float32), ResumeState(5))


def test_writer_error_is_a_render_error_and_earlier_frames_stay(tmp_path):
    folder = new_render(tmp_path)
    # A directory where frame 2's temp file must go makes its write fail.
    (folder.frames_dir / ".000002.png.tmp").mkdir()
    frames = make_frames(4)
    with pytest.raises(RenderError, match="000002.png"):
        write_render(folder, frames)
    for i in (0, 1):
        np.testing.assert_array_equal(output.read_frame(folder.frame_path(i)), frames[i])
    assert folder.frame_indices() == [0, 1]
    assert folder.finished_frames() == 2


def test_abort_keeps_written_frames_and_drops_the_video(tmp_path):
    folder = new_render(tmp_path)
    video = VideoWriter(folder.video_path, W, H, FPS)
    with pytest.raises(KeyboardInterrupt):
        with FrameWriter(folder, video) as writer:
            writer.put(0, make_frames(1)[0], ResumeState(1))
            raise KeyboardInterrupt
    assert folder.frame_indices() in ([], [0])  # the queued frame may or may not be written
    assert not video.partial_path.exists() and not folder.video_path.exists()


# --- video ---------------------------------------------------------------------------------------

def test_streamed_video_has_exact_frames_size_fps(tmp_path):
    folder = new_render(tmp_path)
    write_render(folder, make_frames(10), VideoWriter(folder.video_path, W, H, FPS, crf=20))
    info = probe_video(folder.video_path)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (10, W, H, FPS)
    assert (info["codec"], info["pix_fmt"], info["has_audio"]) == ("h264", "yuv420p", False)
    assert info["duration"] == pytest.approx(10 / FPS, abs=0.02)
    assert "clip.partial.mp4" not in all_files(folder.root)


@pytest.mark.parametrize("audio_seconds", [3.0, 0.3])
def test_soundtrack_is_cut_or_padded_to_the_frames(tmp_path, audio_seconds):
    wav = write_wav(tmp_path / "song.wav", audio_seconds)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, W, H, FPS, preset="veryfast", audio_path=wav, frame_count=9) as video:
        for frame in make_frames(9):
            video.write(frame)
    info = probe_video(path)
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert info["frames"] == 9
    assert info["duration"] == pytest.approx(9 / FPS, abs=0.02)


def test_soundtrack_without_frame_count_keeps_every_frame(tmp_path):
    wav = write_wav(tmp_path / "song.wav", 0.3)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, W, H, FPS, preset="veryfast", audio_path=wav) as video:
        for frame in make_frames(9):
            video.write(frame)
    info = probe_video(path)
    assert info["has_audio"] and info["frames"] == 9
    assert 9 / FPS - 0.02 <= info["duration"] <= 9 / FPS + 0.5


def test_missing_or_bad_soundtrack_is_a_settings_error_before_encoding(tmp_path):
    with pytest.raises(SettingsError, match="nope.wav not found"):
        VideoWriter(tmp_path / "a.mp4", W, H, FPS, audio_path=tmp_path / "nope.wav", frame_count=3)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    with pytest.raises(SettingsError, match="(?s)bad.wav.*Invalid data"):
        check_soundtrack(bad)
    assert not list(tmp_path.glob("*.mp4"))


def test_ffmpeg_failure_is_a_render_error_with_its_message(tmp_path):
    (tmp_path / "a_file").write_text("x")
    video = VideoWriter(tmp_path / "a_file" / "out.mp4", W, H, FPS)
    with pytest.raises(RenderError, match="(?s)out.mp4.*ffmpeg says:.*Not a directory"):
        for frame in make_frames(3):
            video.write(frame)
        video.close()


@pytest.mark.parametrize("size, setting", [((63, 48), "even"), ((64, 0), "even")])
def test_bad_video_size_is_a_settings_error(tmp_path, size, setting):
    with pytest.raises(SettingsError, match=setting):
        VideoWriter(tmp_path / "a.mp4", *size, FPS)


def test_bad_preset_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="veryfast"):
        VideoWriter(tmp_path / "a.mp4", W, H, FPS, preset="quick")


# --- rebuilding the video ------------------------------------------------------------------------

def test_encode_folder_rebuilds_the_video(tmp_path):
    folder = new_render(tmp_path)
    write_render(folder, make_frames(8))
    wav = write_wav(tmp_path / "song.wav", 2.0)
    path = encode_folder(folder, fps=8, crf=18, preset="veryfast", audio_path=wav)
    assert path == folder.video_path
    info = probe_video(path)
    assert (info["frames"], info["width"], info["height"], info["has_audio"]) == (8, W, H, True)
    assert info["duration"] == pytest.approx(1.0, abs=0.02)
    assert encode_folder(folder, fps=8, frame_count=5) == path  # fewer frames on request
    assert probe_video(path)["frames"] == 5


def test_encode_folder_names_the_first_missing_frame(tmp_path):
    folder = new_render(tmp_path)
    write_render(folder, make_frames(5))
    with pytest.raises(SettingsError, match="000005.png is missing"):
        encode_folder(folder, fps=FPS, frame_count=6)
    folder.frame_path(2).unlink()
    folder.frame_path(3).unlink()
    with pytest.raises(SettingsError, match="000002.png is missing"):
        encode_folder(folder, fps=FPS)
    assert not folder.video_path.exists()


def test_encode_folder_refuses_a_folder_that_is_not_a_render(tmp_path):
    with pytest.raises(SettingsError, match="not a render folder"):
        encode_folder(RenderFolder(tmp_path), fps=FPS)


def test_video_failure_is_a_render_error_and_frames_stay(tmp_path):
    folder = new_render(tmp_path)
    (tmp_path / "a_file").write_text("x")
    video = VideoWriter(tmp_path / "a_file" / "out.mp4", W, H, FPS)
    with pytest.raises(RenderError, match="(?s)out.mp4.*Not a directory.*deforum-engine encode"):
        write_render(folder, make_frames(3), video)
    # ffmpeg dies at once, so the failure shows at a write or at close: frames stay either way.
    assert folder.frame_indices()[0] == 0
    assert set(range(folder.finished_frames())) <= set(folder.frame_indices())


KILLED_RENDER = """
import sys, time
import numpy as np
from deforum_engine.output import FrameWriter, RenderFolder, ResumeState
folder = RenderFolder(sys.argv[1])
with FrameWriter(folder) as writer:
    for i in range(10_000):
        frame = np.full((48, 64, 3), i % 256, np.uint8)
        writer.put(i, frame, ResumeState(i + 1, {"prev": frame}))
"""


def test_render_killed_mid_write_resumes_from_whole_frames(tmp_path):
    folder = new_render(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RENDER, str(folder.root)], env=env)
    deadline = time.monotonic() + 20
    while folder.finished_frames() < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = load_resume_state(folder)
    assert state.next_frame >= 20
    assert set(range(state.next_frame)) <= set(folder.frame_indices())
    for i in range(state.next_frame):
        assert (output.read_frame(folder.frame_path(i)) == i % 256).all()
    assert (state.arrays["prev"] == (state.next_frame - 1) % 256).all()
