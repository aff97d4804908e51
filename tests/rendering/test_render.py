"""The frame loop end to end with the preview backend: frames, video, soundtrack, cadence, resume."""
import json
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from deforum_engine import SettingsError, render, resume
from deforum_engine.output import probe_video
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.config.settings import validate_settings
from deforum_engine.rendering.steps import preparation_steps
from cadence_segments import in_betweens_of_two_textures
from polling import wait_for
from stopping import stopped_render

SMALL = {"W": 64, "H": 64, "seed": 11, "zoom": "0:(1.03)", "angle": "0:(2)", "translation_x": "0:(1)",
         "video_preset": "ultrafast"}


def settings(**values):
    return validate_settings({**SMALL, **values})


def frames_of(folder: Path) -> list[Path]:
    return sorted((folder / "frames").glob("*.png"))


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_steps_are_chosen_once_from_the_plan():
    plain = build_plan(settings(max_frames=3, amount_schedule="0:(0)", noise_schedule="0:(0)"))
    assert [s.__name__ if hasattr(s, "__name__") else s.func.__name__ for s in preparation_steps(plain, None)] == []
    busy = build_plan(settings(max_frames=3, contrast_schedule="0:(1), 2:(1.1)", amount_schedule="0:(0.2)"))
    names = [getattr(s, "func", s).__name__ for s in preparation_steps(busy, object())]
    assert names == ["match_colors", "contrast", "anti_blur", "noise"]
    preview = [getattr(s, "func", s).__name__ for s in preparation_steps(busy, object(), preview=True)]
    assert preview == ["match_colors", "contrast"]  # no model to turn noise and sharpening into detail


@pytest.mark.parametrize("cadence", [1, 2, 3, 4, 5])
def test_cadence_gives_exactly_max_frames(tmp_path, cadence):
    result = render(settings(max_frames=13, diffusion_cadence=cadence), out=tmp_path / "r", preview=True, quiet=True)
    frames = frames_of(result.folder)
    assert [p.stem for p in frames] == [f"{i:06d}" for i in range(13)]
    assert probe_video(result.video)["frames"] == 13


def test_preview_render_with_soundtrack(tmp_path):
    song = write_wav(tmp_path / "song.wav", seconds=3.0)
    seen = []
    result = render(settings(max_frames=21, fps=10, soundtrack_path=str(song)), out=tmp_path / "r", preview=True,
                    quiet=True, on_frame=lambda i, image: seen.append(i))
    assert seen == list(range(21))
    video = probe_video(result.video)
    assert (video["frames"], video["width"], video["height"]) == (21, 64, 64)
    assert video["has_audio"] and abs(video["duration"] - 2.1) < 0.25
    saved = json.loads((result.folder / "settings.json").read_text())
    assert saved["seed"] == 11 and saved["max_frames"] == 21
    assert result.preview


def test_motion_moves_the_picture(tmp_path):
    still = render(settings(max_frames=4, zoom="0:(1)", angle="0:(0)", translation_x="0:(0)",
                            noise_schedule="0:(0)", amount_schedule="0:(0)", color_coherence="None"),
                   out=tmp_path / "a", preview=True,
                   quiet=True)
    moving = render(settings(max_frames=4, noise_schedule="0:(0)"), out=tmp_path / "b", preview=True, quiet=True)
    first, last = (frames_of(still.folder)[i].read_bytes() for i in (0, -1))
    assert first == last  # no motion, noise or colour matching: the preview leaves the frame alone
    assert frames_of(moving.folder)[0].read_bytes() != frames_of(moving.folder)[-1].read_bytes()


def test_same_settings_give_identical_frames(tmp_path):
    a = render(settings(max_frames=6), out=tmp_path / "a", preview=True, quiet=True)
    b = render(settings(max_frames=6), out=tmp_path / "b", preview=True, quiet=True)
    assert [p.read_bytes() for p in frames_of(a.folder)] == [p.read_bytes() for p in frames_of(b.folder)]


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "deforum_engine.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_resume_after_sigkill_gives_identical_frames(tmp_path):
    values = {**SMALL, "W": 256, "H": 256, "max_frames": 240, "diffusion_cadence": 3, "noise_schedule": "0:(0.05)",
              "amount_schedule": "0:(0.3)"}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(values))
    reference = render(validate_settings(values), out=tmp_path / "reference", preview=True, quiet=True)

    folder = tmp_path / "killed"
    process = stopped_render(folder, path, 14, "--preview", "--quiet")  # frame 0 and 13 keys: 40 frames
    wait_for(lambda: len(frames_of(folder)) >= 20)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(frames_of(folder))
    assert 20 <= written <= 40

    done = _cli("resume", str(folder), "--quiet")
    assert done.wait(timeout=120) == 0, done.stderr.read()
    ours, theirs = frames_of(folder), frames_of(reference.folder)
    assert len(ours) == 240
    assert [p.read_bytes() for p in ours] == [p.read_bytes() for p in theirs]
    assert not list((folder / "frames").glob("*.tmp*"))
    assert probe_video(folder / f"{folder.name}.mp4")["frames"] == 240

    again = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "resume", str(folder)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already finished" in again.stderr


def test_resume_refuses_a_folder_that_is_not_a_render(tmp_path):
    with pytest.raises(SettingsError, match="not a render folder"):
        resume(tmp_path)


def test_missing_init_image_fails_before_rendering(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**SMALL, "max_frames": 3, "init_image": "nope.png"}))
    result = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "render", str(path), "--preview",
                             "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope.png" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "frames").exists() or not frames_of(tmp_path / "r")


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match=str(blocker)):
        render(settings(max_frames=2), out=blocker / "r", preview=True, quiet=True)


def test_init_image_is_frame_zero_in_preview(tmp_path):
    import cv2

    picture = np.zeros((32, 48, 3), np.uint8)
    picture[:, :24] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "init.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    result = render(settings(max_frames=2, init_image=str(tmp_path / "init.png"), init_fit="resize"),
                    out=tmp_path / "r", preview=True, quiet=True)
    first = cv2.cvtColor(cv2.imread(str(frames_of(result.folder)[0])), cv2.COLOR_BGR2RGB)
    assert first.shape == (64, 64, 3)
    assert tuple(first[32, 5]) == (255, 0, 0) and tuple(first[32, 60]) == (0, 0, 0)


def test_encode_rebuilds_the_video(tmp_path):
    from deforum_engine.cli import main

    result = render(settings(max_frames=5), out=tmp_path / "r", preview=True, quiet=True)
    os.remove(result.video)
    assert main(["encode", str(result.folder)]) == 0
    assert probe_video(result.video)["frames"] == 5


def test_ctrl_c_keeps_frames_and_says_how_to_resume(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**SMALL, "W": 256, "H": 256, "max_frames": 2000}))
    folder = tmp_path / "r"
    process = stopped_render(folder, path, 30, "--preview")
    wait_for(lambda: len(frames_of(folder)) >= 20)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"deforum-engine resume {folder}" in err and "Traceback" not in err
    assert len(frames_of(folder)) >= 20 and not list((folder / "frames").glob(".*.tmp"))
    assert json.loads((folder / "render.json").read_text())["status"] == "rendering"


def test_cadence_frames_follow_the_camera(tmp_path):
    """With whole-pixel pans and nothing else, in-between frames must match a frame-by-frame render."""
    import cv2

    still = {"zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(2)", "translation_y": "0:(-1)",
             "noise_schedule": "0:(0)", "amount_schedule": "0:(0)", "color_coherence": "None", "max_frames": 7}
    every = render(settings(**still), out=tmp_path / "c1", preview=True, quiet=True)
    cadence = render(settings(**still, diffusion_cadence=3), out=tmp_path / "c3", preview=True, quiet=True)
    for a, b in zip(frames_of(every.folder), frames_of(cadence.folder)):
        inner = (slice(10, -10), slice(16, -16))  # away from the borders the pan uncovers
        difference = np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)))[inner]
        assert difference.max() <= 1, (a.name, difference.max())


def test_cancel_stops_the_render_and_it_resumes_exactly(tmp_path):
    import threading

    from deforum_engine import RenderCancelled

    values = settings(max_frames=30, diffusion_cadence=2, noise_schedule="0:(0.05)")
    reference = render(values, out=tmp_path / "reference", preview=True, quiet=True)
    cancel = threading.Event()

    def stop_after_ten(index, image):
        if index == 9:
            cancel.set()

    with pytest.raises(RenderCancelled, match="resume"):
        render(values, out=tmp_path / "r", preview=True, quiet=True, on_frame=stop_after_ten, cancel=cancel)
    kept = len(frames_of(tmp_path / "r"))
    assert 10 <= kept < 30  # every frame handed to the writer before the stop is kept
    resume(tmp_path / "r", quiet=True)
    assert [p.read_bytes() for p in frames_of(tmp_path / "r")] == \
        [p.read_bytes() for p in frames_of(reference.folder)]


def test_in_between_frames_never_fade_in_the_newer_frames_filled_border():
    """Zoom 1.02, cadence 4: warped back to the in-between cameras, the newer diffused frame covers
    only about 89 / 93 / 96 % of them; the rest must come from the older frame, not a smeared edge."""
    import cv2

    from deforum_engine.frame.cadence import coverage
    from deforum_engine.rendering.steps import Move

    plan = build_plan(settings(W=128, H=128, max_frames=5, diffusion_cadence=4, zoom="0:(1.02)", angle="0:(0)",
                               translation_x="0:(0)"))
    loop, older, newer, motion, tweens = in_betweens_of_two_textures(plan)
    to_new = np.linalg.inv(motion[-1].flat)
    covered = []
    for offset in (1, 2, 3):
        back = motion[offset - 1].flat @ to_new
        seen = coverage(back, 128, 128)
        covered.append(float(seen.mean()))
        forward = loop.warps.picture(older, None, motion[offset - 1])
        outside = seen < 1e-6  # pixels the newer frame's warp does not reach at all
        assert outside.any()
        np.testing.assert_allclose(tweens[offset][outside], forward[outside], atol=1)
        inside = seen > 0.999
        expected = cv2.addWeighted(forward, 1 - offset / 4, loop.warps.picture(newer, None, Move(back)), offset / 4, 0)
        assert np.abs(tweens[offset][inside].astype(int) - expected[inside]).max() <= 1
    # a zoom-out by 1.02 ** (4 - offset) covers 1.02 ** (-2 * (4 - offset)) of the frame
    assert covered == pytest.approx([1.02 ** -6, 1.02 ** -4, 1.02 ** -2], abs=0.01)


class Tinting:
    """A model stand-in that visibly changes colours: its frames are redder than what it is given."""

    name, is_preview = "tinting", False

    def begin(self, context) -> None:
        self.size = (context.height, context.width)

    def generate(self, request) -> np.ndarray:
        import cv2

        base = request.image if request.image is not None else np.full((*self.size, 3), 128, np.uint8)
        return cv2.add(base, np.full_like(base, (60, 0, 0)))


def test_colour_reference_is_the_init_image_or_as_in_deforum_frame_zero(tmp_path):
    import cv2

    from deforum_engine.frame.color import color_reference
    from deforum_engine.output import RenderFolder, load_resume_state, read_frame

    init = np.zeros((64, 64, 3), np.uint8)
    init[:, :32] = (20, 120, 200)
    cv2.imwrite(str(tmp_path / "init.png"), cv2.cvtColor(init, cv2.COLOR_RGB2BGR))
    common = {"max_frames": 3, "init_image": str(tmp_path / "init.png"), "noise_schedule": "0:(0)"}
    for source in ("init_image", "first_frame"):
        out = tmp_path / source
        render(settings(**common, color_coherence_source=source), out=out, backend=Tinting(), quiet=True)
        saved = load_resume_state(RenderFolder(out)).arrays["color_reference"]
        picture = init if source == "init_image" else read_frame(out / "frames" / "000000.png")
        np.testing.assert_allclose(saved, color_reference(picture, "LAB").to_array())
    # The engine's own files keep the init image's palette; files imported from Deforum follow Deforum.
    assert settings().color_coherence_source == "init_image"


def test_image_coherence_matches_frame_zero_too(tmp_path):
    import cv2

    palette = np.zeros((64, 64, 3), np.uint8)
    palette[:32] = (10, 200, 60)
    palette[32:] = (230, 230, 20)
    cv2.imwrite(str(tmp_path / "palette.png"), cv2.cvtColor(palette, cv2.COLOR_RGB2BGR))
    result = render(settings(max_frames=2, color_coherence="Image", color_coherence_image=str(tmp_path / "palette.png"),
                             noise_schedule="0:(0)"), out=tmp_path / "r", backend=Tinting(), quiet=True)
    from deforum_engine.output import read_frame

    first = read_frame(result.folder / "frames" / "000000.png").astype(int)
    # Unmatched, frame 0 would be the tinted grey (188, 128, 128); matched, a flat frame takes a colour
    # of the palette (the matching is per channel in LAB, so within a few levels).
    assert np.abs(first - (188, 128, 128)).max() > 50
    assert min(np.abs(first - colour).max() for colour in ((10, 200, 60), (230, 230, 20))) < 8


def test_frame_requests_carry_the_planned_noise_multiplier(tmp_path):
    from deforum_engine.backends.preview import PreviewBackend

    class Recording(PreviewBackend):
        def __init__(self):
            super().__init__()
            self.requests = []

        def generate(self, request):
            self.requests.append(request)
            return super().generate(request)

    backend = Recording()
    render(settings(max_frames=5, enable_noise_multiplier_scheduling=True, noise_multiplier_schedule="0:(1), 4:(1.2)"),
           out=tmp_path / "r", backend=backend, quiet=True)
    got = {r.index: r.noise_multiplier for r in backend.requests}
    assert got == pytest.approx({0: 1.0, 1: 1.05, 2: 1.1, 3: 1.15, 4: 1.2})
