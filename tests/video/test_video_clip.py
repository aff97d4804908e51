"""Clips as inputs: probing, Deforum's frame mapping, streamed decoding, fitting, and every bad clip's message."""
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from deforum_engine.errors import SettingsError
from deforum_engine.video.clip import fit_frame, fit_note, frame_map, probe_clip, read_frames
from video_clips import panned_clip, psnr


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    return panned_clip(tmp_path_factory.mktemp("clip"), count=12)


def test_probe_reads_size_rate_and_frame_count(pan):
    clip = probe_clip(pan[0], "video_init_path")
    assert (clip.width, clip.height, clip.fps, clip.frame_count, clip.has_audio) == (64, 64, 15.0, 12, False)


def test_decoded_frames_match_the_source(pan):
    path, frames = pan
    clip = probe_clip(path, "video_init_path")
    decoded = list(read_frames(clip, frame_map(clip, 1, 0, -1)))
    assert len(decoded) == 12
    assert min(psnr(a, b) for a, b in zip(decoded, frames)) >= 35


@pytest.mark.parametrize("nth, start, end, sources", [
    (1, 0, -1, list(range(12))),
    (3, 0, -1, [0, 3, 6, 9]),
    (3, 2, 10, [3, 6, 9]),  # Deforum keeps k % nth == 0 counted from the clip's start
    (2, 5, -1, [6, 8, 10]),
    (1, 4, 6, [4, 5, 6]),  # extract_to_frame is inclusive
    (5, 0, 99, [0, 5, 10]),  # past the end: up to the last frame
    (0, 0, 2, [0, 1, 2]),  # nth below 1 counts as 1
])
def test_frame_mapping_follows_extract_settings(pan, nth, start, end, sources):
    path, frames = pan
    clip = probe_clip(path, "video_init_path")
    mapping = frame_map(clip, nth, start, end)
    assert mapping.sources().tolist() == sources
    assert [mapping.source(t) for t in range(mapping.count)] == sources
    decoded = list(read_frames(clip, mapping))
    assert len(decoded) == len(sources)
    assert all(psnr(image, frames[s]) >= 35 for image, s in zip(decoded, sources))


def test_reading_can_start_at_any_output_frame(pan):
    path, _ = pan
    clip = probe_clip(path, "video_init_path")
    mapping = frame_map(clip, 2, 0, -1)
    whole = list(read_frames(clip, mapping))
    tail = list(read_frames(clip, mapping, start=3))
    assert len(tail) == mapping.count - 3
    assert all(np.array_equal(a, b) for a, b in zip(whole[3:], tail))  # a resumed render decodes the same bytes


@pytest.mark.parametrize("nth, start, end, message", [
    (12, 0, -1, "extract_nth_frame (12) is not smaller than the 12 frames"),
    (1, 5, 5, "extract_to_frame (5) must be after extract_from_frame (5)"),
    (1, 20, -1, "extract_from_frame (20) is past the last frame (11)"),
])
def test_impossible_extraction_is_an_error(pan, nth, start, end, message):
    clip = probe_clip(pan[0], "video_init_path")
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        frame_map(clip, nth, start, end)
    assert "extract_" in str(error.value)


def test_a_clip_shorter_than_probed_stops_with_its_name(pan):
    path, _ = pan
    clip = probe_clip(path, "video_init_path")
    too_long = type(frame_map(clip, 1, 0, -1))(0, 1, 20)
    with pytest.raises(SettingsError, match=r"pan.mp4 ended early: it has no frame 12 for output frame 12"):
        list(read_frames(clip, too_long))


def _bad(tmp_path, pan, kind):
    path = tmp_path / f"{kind}.mp4"
    data = pan[0].read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a video")
    elif kind == "picture":
        path = tmp_path / "picture.png"
        cv2.imwrite(str(path), pan[1][0])
    elif kind == "audio":
        path = tmp_path / "audio.m4a"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=1", str(path)], check=True)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", r"video_init_path: .*missing.mp4 does not exist; give the path of a video file"),
    ("truncated", r"video_init_path: .*truncated.mp4 is truncated, damaged or not a video \(moov atom not found\)"),
    ("text", r"video_init_path: .*text.mp4 is truncated, damaged or not a video"),
    ("picture", r"video_init_path: .*picture.png is a picture, not a video"),
    ("audio", r"video_init_path: .*audio.m4a cannot be read as a video \(it has no video stream\)"),
])
def test_bad_clips_are_named_with_their_setting(tmp_path, pan, kind, message):
    path = tmp_path / "missing.mp4" if kind == "missing" else _bad(tmp_path, pan, kind)
    with pytest.raises(SettingsError, match=message):
        probe_clip(path, "video_init_path")


def test_a_truncated_clip_with_its_index_up_front_is_caught(tmp_path, pan):
    whole = tmp_path / "faststart.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(pan[0]), "-c", "copy",
                    "-movflags", "+faststart", str(whole)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(SettingsError, match=r"hybrid: .*cut.mp4 is truncated, damaged or not a video"):
        probe_clip(cut, "hybrid")


@pytest.mark.parametrize("mode", ["resize", "crop", "pad"])
def test_frames_of_another_size_are_fitted_with_a_note(tmp_path, mode):
    path, frames = panned_clip(tmp_path, count=3, width=96, height=64)
    clip = probe_clip(path, "video_init_path")
    frame = next(read_frames(clip, frame_map(clip, 1, 0, -1)))
    fitted = fit_frame(frame, 64, 64, mode)
    assert fitted.shape == (64, 64, 3)
    if mode == "crop":  # the centre, unscaled
        assert psnr(fitted, frames[0][:, 16:80]) >= 33
    note = fit_note(clip, 64, 64, mode, "video_init_path")
    assert note == f"video_init_path: wide.mp4 is 96x64, the render 64x64: its frames are fitted by init_fit ({mode})" \
        .replace("wide.mp4", path.name)
    assert fit_note(clip, 96, 64, mode, "video_init_path") is None
    with pytest.raises(SettingsError, match="init_fit: 'stretch' is not a fit mode"):
        fit_frame(frame, 64, 64, "stretch")


def test_video_frames_stream_forward_and_restart_for_earlier_frames(pan):
    from deforum_engine.video.clip import VideoFrames
    path, frames = pan
    clip = probe_clip(path, "video_init_path")
    video = VideoFrames(clip, frame_map(clip, 2, 0, -1), 32, 32, "resize", keep=2)
    later = video[4].copy()
    assert later.shape == (32, 32, 3) and psnr(later, fit_frame(frames[8], 32, 32, "resize")) >= 33
    assert np.array_equal(video[3], video[3]) and np.array_equal(video[0], fit_frame(next(read_frames(
        clip, frame_map(clip, 2, 0, -1))), 32, 32, "resize"))  # restarted for an earlier frame
    assert np.array_equal(video[4], later) and np.array_equal(video[99], video[5])  # past the end: the last
    video.close()
