"""3D renders end to end: motion previews over flat depth, tiny models with a tiny depth model,
depth maps, the summary, resume after a kill, and a Deforum Studio-style file at 1024x576."""
import json
import math
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from deforum_engine import RenderCancelled, render, resume
from deforum_engine.models.depth import DepthEstimator, depth_choice, depth_image, load_depth_estimator
from deforum_engine.errors import RenderError
from deforum_engine.frame.motion3d import Lens
from deforum_engine.output import RenderFolder, probe_video
from deforum_engine.config.settings import validate_settings
from deforum_engine.config.files import load_settings
from cadence_segments import in_betweens_of_two_textures
from polling import wait_for
from stopping import stopped_render

CLEAN = {"color_coherence": "None", "amount_schedule": "0:(0)", "noise_schedule": "0:(0)", "video_preset": "ultrafast"}
PREVIEW = {"animation_mode": "3D", "W": 128, "H": 128, "seed": 7, **CLEAN}
STUDIO = {  # the shape of a Deforum Studio 3D preset: push in, a turn, a slow roll, the lens widening
    "animation_mode": "3D", "W": 1024, "H": 576, "max_frames": 12, "fps": 12, "seed": 3, "diffusion_cadence": 2,
    "translation_z": "0:(3)", "translation_x": "0:(1.5*sin(2*3.14*t/12))", "rotation_3d_x": "0:(0.2)",
    "rotation_3d_y": "0:(0.4)", "rotation_3d_z": "0:(0.3)", "fov_schedule": "0:(60), 11:(80)",
    "video_preset": "ultrafast",
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (see tiny_models.one_torch_thread)."""


def frame_images(folder, sub="frames") -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((folder / sub).glob("*.png"))]


def frame_bytes(folder, sub="frames") -> list[bytes]:
    return [p.read_bytes() for p in sorted((folder / sub).glob("*.png"))]


def measured_zoom(before: np.ndarray, after: np.ndarray) -> float:
    """The scale about the centre that best turns `before` into `after` (inner region, least squares;
    both softened first, so one-pixel lines do not alias the search)."""
    before, after = (cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5) for image in (before, after))
    height, width = before.shape[:2]
    centre = ((width - 1) / 2, (height - 1) / 2)
    inner = (slice(height // 4, -height // 4), slice(width // 4, -width // 4))

    def error(scale: float) -> float:
        zoomed = cv2.warpAffine(before, cv2.getRotationMatrix2D(centre, 0, scale), (width, height),
                                flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        return float(np.mean((zoomed[inner] - after[inner]) ** 2))

    scales = np.arange(0.8, 1.6, 0.002)
    best = scales[np.argmin([error(s) for s in scales])]
    fine = np.arange(best - 0.002, best + 0.002, 0.0001)
    return float(fine[np.argmin([error(s) for s in fine])])


def measured_affine(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The 2x3 affine map that best turns `before` into `after` (OpenCV's ECC on grey at quarter size,
    over the inner region, away from the edges the padding fills)."""
    height, width = before.shape[:2]
    small = [cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (width // 4, height // 4),
                        interpolation=cv2.INTER_AREA).astype(np.float32) for image in (before, after)]
    inner = np.zeros(small[0].shape, np.uint8)
    inner[height // 20:-height // 20, width // 20:-width // 20] = 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 300, 1e-7)
    _, warp = cv2.findTransformECC(small[0], small[1], np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE,
                                   criteria, inner, 5)
    return warp


def measured_shift(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    grey = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64) for image in (before, after)]
    window = cv2.createHanningWindow(grey[0].shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1], window)
    return dx, dy


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deforum_engine.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env or {**os.environ, "OMP_NUM_THREADS": "1"})


def as_overrides(values: dict) -> list[str]:
    """The settings as CLI --set arguments."""
    return [part for key, value in values.items() for part in ("--set", f"{key}={json.dumps(value)}")]


# --- motion previews: the camera over flat depth, no depth model ------------------------------------


def test_preview_push_in_zooms_by_the_camera_maths(tmp_path):
    result = render(validate_settings({**PREVIEW, "max_frames": 6, "translation_z": "0:(6)"}), out=tmp_path / "r",
                    preview=True, quiet=True)
    frames = frame_images(result.folder)
    f, delta, width = Lens(70).focal, 6 / 200, 128
    per_frame = 1 / (1 - width / (width - 1) * f * delta / (1 - delta))  # flat depth: a zoom about the centre
    assert measured_zoom(frames[0], frames[5]) == pytest.approx(per_frame**5, rel=0.01)
    assert per_frame**5 > 1.2


def test_preview_pan_moves_the_picture_against_the_camera(tmp_path):
    pan = {**PREVIEW, "max_frames": 5, "translation_x": "0:(10)", "translation_z": "0:(0)"}
    result = render(validate_settings(pan), out=tmp_path / "r", preview=True, quiet=True)
    frames = frame_images(result.folder)
    dx, dy = measured_shift(frames[0], frames[4])
    assert dx == pytest.approx(-4 * Lens(70).focal * 10 / 200 * 64, abs=0.5) and abs(dy) < 0.5


def test_preview_cadence_frames_follow_the_3d_camera(tmp_path):
    values = {**PREVIEW, "max_frames": 9, "translation_z": "0:(5)"}
    every = frame_images(render(validate_settings(values), out=tmp_path / "a", preview=True, quiet=True).folder)
    cadenced = frame_images(render(validate_settings({**values, "diffusion_cadence": 4}), out=tmp_path / "b",
                                   preview=True, quiet=True).folder)
    zooms = [measured_zoom(cadenced[0], frame) for frame in cadenced[1:]]
    assert all(later > earlier for earlier, later in zip(zooms, zooms[1:]))  # a steady push, in-betweens too
    assert zooms[-1] == pytest.approx(measured_zoom(every[0], every[-1]), rel=0.01)


def test_preview_needs_no_depth_model_and_ignores_depth_warping(tmp_path):
    values = {**PREVIEW, "max_frames": 4, "translation_z": "0:(4)", "rotation_3d_y": "0:(1)"}  # default Midas
    on = render(validate_settings(values), out=tmp_path / "on", preview=True, quiet=True)
    off = render(validate_settings({**values, "use_depth_warping": False}), out=tmp_path / "off", preview=True,
                 quiet=True)
    assert frame_bytes(on.folder) == frame_bytes(off.folder)  # both flat depth
    assert not (on.folder / "depth").exists()


def test_studio_style_file_renders_as_a_preview_at_1024x576(tmp_path):
    result = render(validate_settings(STUDIO), out=tmp_path / "studio", preview=True, quiet=True)
    video = probe_video(result.video)
    assert (video["frames"], video["width"], video["height"]) == (12, 1024, 576)
    frames = frame_images(result.folder)
    assert all(frame.shape == (576, 1024, 3) for frame in frames)
    moved = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(11)]
    assert min(moved) > 1.0  # every frame moves, in-betweens included
    # The push in shows under the turn and roll: a zoom of 1 + f * d / (1 - d) * W / (W - 1) a frame, with
    # d = 3 / 200 and f from each frame's field of view (60 degrees widening to 80).
    d = 3 / 200
    expected = math.prod(1 + Lens(60 + 20 * k / 11).focal * d / (1 - d) * 1024 / 1023 for k in range(1, 5))
    scale = math.sqrt(abs(np.linalg.det(measured_affine(frames[0], frames[4])[:, :2])))
    assert scale == pytest.approx(expected, rel=0.015) and expected > 1.09


def test_preview_resumes_after_sigkill_with_identical_frames(tmp_path):
    values = {**PREVIEW, "max_frames": 30, "diffusion_cadence": 2, "translation_z": "0:(3)",
              "rotation_3d_z": "0:(0.5)", "translation_x": "0:(2*sin(t/5))"}
    reference = render(validate_settings(values), out=tmp_path / "reference", preview=True, quiet=True)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "killed"}))
    folder = tmp_path / "killed"
    process = stopped_render(folder, path, 8, "--preview", "--quiet", *as_overrides(values))  # frames 0-14
    wait_for(lambda: len(list((folder / "frames").glob("*.png"))) >= 10)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 10 <= len(list((folder / "frames").glob("*.png"))) <= 15
    done = cli("resume", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr
    assert frame_bytes(folder) == frame_bytes(reference.folder)


# --- with a model: tiny Stable Diffusion and a tiny depth model ---------------------------------------


def tiny_3d(tiny_sd_dir, depth_dir, **values):
    base = {**STUDIO, "W": 128, "H": 72, "max_frames": 8, "steps": 4, "strength_schedule": "0:(0.5)",
            "model": str(tiny_sd_dir), "depth_model": str(depth_dir), "safety_checker": False,
            "translation_z": "0:(8)", "rotation_3d_y": "0:(1)"}
    return validate_settings({**base, **values})


def test_tiny_models_render_3d_with_depth_maps(tiny_sd_dir, tiny_dpt_dir, tmp_path, capsys):
    result = render(tiny_3d(tiny_sd_dir, tiny_dpt_dir, save_depth_maps=True), out=tmp_path / "r")
    summary = capsys.readouterr().err
    assert "MOTION PREVIEW" not in summary
    assert f"3D camera (Deforum's): each frame re-projected through the depth of Midas-3-Hybrid ({tiny_dpt_dir})" \
           f", steady normalisation" in summary
    assert "Depth maps of every frame go to depth/" in summary
    video = probe_video(result.video)
    assert (video["frames"], video["width"], video["height"]) == (8, 128, 72)
    depth_maps = frame_images(result.folder, "depth")
    assert len(depth_maps) == 8 and all(m.shape == (72, 128) for m in depth_maps)
    # Frame 0's map is its depth as the model sees it (the first map of a steady render is Deforum's own).
    frame0 = cv2.cvtColor(frame_images(result.folder)[0], cv2.COLOR_BGR2RGB)
    estimator = load_depth_estimator(depth_choice(result_settings(result)), device="cpu")
    z, _ = estimator.estimate(frame0)
    np.testing.assert_array_equal(depth_maps[0], depth_image(z, 72, 128))
    assert depth_maps[0].min() == 0 and depth_maps[0].max() == 255  # near white .. far black


def result_settings(result):
    return validate_settings(json.loads((result.folder / "settings.json").read_text()))


def test_studio_style_file_renders_with_the_tiny_models_depth_warping_on_and_off(tiny_sd_dir,
                                                                                 tiny_depth_anything_dir, tmp_path):
    rendered = {}
    for warping in (True, False):
        settings = tiny_3d(tiny_sd_dir, tiny_depth_anything_dir, max_frames=6, use_depth_warping=warping,
                           depth_normalization="per_frame")
        result = render(settings, out=tmp_path / f"warping-{warping}", quiet=True)
        video = probe_video(result.video)
        assert (video["frames"], video["width"], video["height"]) == (6, 128, 72)
        frames = frame_images(result.folder)
        assert min(np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(5)) > 0.5  # it moves
        rendered[warping] = frame_bytes(result.folder)
    assert rendered[True][0] == rendered[False][0]  # the same first picture,
    assert rendered[True][1] != rendered[False][1] and rendered[True][5] != rendered[False][5]  # then moved apart


def test_a_depth_model_missing_offline_stops_the_render_before_any_frame(tiny_sd_dir, tmp_path):
    settings = tiny_3d(tiny_sd_dir, tmp_path, depth_model=None)  # Midas-3-Hybrid: Intel/dpt-large, not cached
    with pytest.raises(RenderError, match=r"'Intel/dpt-large' is not in the local Hugging Face cache.*depth_model"):
        render(settings, out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_a_resumed_render_never_estimates_a_saved_depth_again(tiny_sd_dir, tiny_dpt_dir, tmp_path, monkeypatch):
    settings = tiny_3d(tiny_sd_dir, tiny_dpt_dir, max_frames=10, save_depth_maps=True)
    reference = render(settings, out=tmp_path / "reference", quiet=True)
    cancel = threading.Event()
    with pytest.raises(RenderCancelled):
        render(settings, out=tmp_path / "r", quiet=True, cancel=cancel,
               on_frame=lambda index, image: cancel.set() if index == 3 else None)
    saved_key = RenderFolder(tmp_path / "r").finished_frames() - 1  # the key the state was saved with
    estimated = []
    real = DepthEstimator.estimate
    monkeypatch.setattr(DepthEstimator, "estimate", lambda self, image, steady=None:
                        estimated.append(1) or real(self, image, steady))
    resume(tmp_path / "r", quiet=True)
    keys_left = [key for key in (0, 2, 4, 6, 8, 9) if key > saved_key]
    assert saved_key in (2, 4, 6) and len(estimated) == len(keys_left)
    assert frame_bytes(tmp_path / "r") == frame_bytes(reference.folder)
    assert frame_bytes(tmp_path / "r", "depth") == frame_bytes(reference.folder, "depth")


@pytest.mark.slow
def test_tiny_model_3d_render_resumes_after_sigkill_with_identical_frames(tiny_sd_dir, tiny_dpt_dir, tmp_path):
    settings = tiny_3d(tiny_sd_dir, tiny_dpt_dir, max_frames=9, save_depth_maps=True)
    reference = render(settings, out=tmp_path / "reference", quiet=True)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "killed"}))
    values = {key: value for key, value in json.loads((reference.folder / "settings.json").read_text()).items()
              if key != "name"}
    folder = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = stopped_render(folder, path, 4, "--quiet", *as_overrides(values), env=env)  # frame 0, 3 keys: 0-6
    wait_for(lambda: len(list((folder / "frames").glob("*.png"))) >= 5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 5 <= len(list((folder / "frames").glob("*.png"))) <= 7
    done = cli("resume", str(folder), "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    assert frame_bytes(folder) == frame_bytes(reference.folder)
    assert frame_bytes(folder, "depth") == frame_bytes(reference.folder, "depth")
    assert probe_video(folder / "killed.mp4")["frames"] == 9


def test_depth_maps_in_2d_mode_as_deforum_saves_them(tiny_sd_dir, tiny_dpt_dir, tmp_path):
    settings = tiny_3d(tiny_sd_dir, tiny_dpt_dir, animation_mode="2D", max_frames=3, save_depth_maps=True,
                       zoom="0:(1.05)")
    result = render(settings, out=tmp_path / "r", quiet=True)
    assert len(frame_images(result.folder, "depth")) == 3
    assert math.isclose(probe_video(result.video)["frames"], 3)


# --- a real Deforum Studio 3D preset file ----------------------------------------------------------------

STUDIO_FILE = Path(__file__).parents[1] / "data" / "importers" / "studio_3d_fly_through_1024x576.txt"


def studio_file(**overrides):
    with warnings.catch_warnings():  # the file's stray schedule text, read as Deforum Studio reads it
        warnings.simplefilter("ignore")
        return load_settings(STUDIO_FILE, {"video_preset": "ultrafast", **overrides})


@pytest.mark.slow
def test_the_studio_preset_file_renders_as_a_preview_at_its_size_and_length(tmp_path):
    settings = studio_file()
    assert (settings.animation_mode, settings.W, settings.H, settings.max_frames) == ("3D", 1024, 576, 240)
    result = render(settings, out=tmp_path / "studio", preview=True, quiet=True)
    video = probe_video(result.video)
    assert (video["frames"], video["width"], video["height"]) == (240, 1024, 576)
    frames = frame_images(result.folder)
    # translation_z 1.5 a frame (fov 70), under the file's turns: the picture zooms in frame after frame.
    d = 1.5 / 200
    expected = (1 + Lens(70).focal * d / (1 - d) * 1024 / 1023) ** 8
    scale = math.sqrt(abs(np.linalg.det(measured_affine(frames[0], frames[8])[:, :2])))
    assert scale == pytest.approx(expected, rel=0.02)


def test_the_studio_preset_file_renders_with_the_tiny_models_depth_warping_on_and_off(tiny_sd_dir, tiny_dpt_dir,
                                                                                     tmp_path):
    rendered = {}  # 12 frames: the file's rotation_3d_y is NaN on frames 0-7, filled from those after
    for warping in (True, False):
        settings = studio_file(W=128, H=72, max_frames=12, steps=4, model=str(tiny_sd_dir),
                               depth_model=str(tiny_dpt_dir), safety_checker=False, use_depth_warping=warping)
        result = render(settings, out=tmp_path / f"warping-{warping}", quiet=True)
        assert probe_video(result.video)["frames"] == 12
        rendered[warping] = frame_bytes(result.folder)
    assert rendered[True][0] == rendered[False][0] and rendered[True][11] != rendered[False][11]


def test_3d_in_between_frames_never_fade_in_the_newer_frames_filled_border():
    """A push in with cadence 4: the newer key, moved back to the in-between cameras (a pull back),
    leaves an edge band its padding fills; those pixels come from the older key alone."""
    from deforum_engine.frame.warp3d import warp_3d_path_covered
    from deforum_engine.plan.frame_plan import build_plan

    plan = build_plan(validate_settings({**PREVIEW, "max_frames": 5, "diffusion_cadence": 4, "translation_z": "0:(6)"}))
    loop, older, newer, motion, tweens = in_betweens_of_two_textures(plan)
    for offset in (1, 2, 3):
        back = motion[offset - 1].back_from(motion[-1])
        _, seen = warp_3d_path_covered(newer, None, back.camera)
        forward = loop.warps.picture(older, None, motion[offset - 1])
        outside = seen < 1e-6
        assert outside.mean() > 0.01 * (4 - offset)  # the band narrows as the frame nears the newer key
        np.testing.assert_allclose(tweens[offset][outside], forward[outside], atol=1)
