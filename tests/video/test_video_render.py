"""Video in, rendered: Video Input mode, hybrid motion and compositing, optical-flow cadence, the
plan and summary, bad clips before anything is written, and a tiny-model render killed and resumed."""
import json
import os
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from deforum_engine import SettingsError, render
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.config.settings import validate_settings
from polling import wait_for
from stopping import stopped_render
from video_clips import PAN, measured_shift, panned_clip, psnr

STILL = {"seed": 3, "zoom": "0:(1)", "angle": "0:(0)", "translation_x": "0:(0)", "color_coherence": "None",
         "amount_schedule": "0:(0)", "video_preset": "ultrafast", "strength_schedule": "0:(0.65)"}


def pictures(folder: Path) -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((folder / "frames").glob("*.png"))]


@pytest.fixture(scope="module")
def clip64(tmp_path_factory):
    return panned_clip(tmp_path_factory.mktemp("clip64"), count=12)


@pytest.fixture(scope="module")
def clip128(tmp_path_factory):
    return panned_clip(tmp_path_factory.mktemp("clip128"), count=8, width=128, height=128)


def settings(path: Path, size: int = 64, **values):
    return validate_settings({**STILL, "W": size, "H": size, "video_init_path": str(path), **values})


@pytest.mark.parametrize("nth, start, end, sources", [(1, 0, -1, list(range(12))), (3, 2, 10, [3, 6, 9])])
def test_video_input_preview_reproduces_the_clip(clip64, tmp_path, nth, start, end, sources):
    path, frames = clip64
    result = render(settings(path, animation_mode="Video Input", extract_nth_frame=nth, extract_from_frame=start,
                             extract_to_frame=end, max_frames=99, diffusion_cadence=3),
                    out=tmp_path / "r", preview=True, quiet=True)
    out = pictures(result.folder)
    assert len(out) == len(sources) == result.frames
    assert min(psnr(a, frames[s]) for a, s in zip(out, sources)) >= 35


@pytest.mark.parametrize("motion, method, from_picture", [
    ("Affine", "DIS Fine", False), ("Perspective", "DIS Fine", False), ("Optical Flow", "DIS Medium", False),
    ("Optical Flow", "DIS Fine", False), ("Optical Flow", "Farneback", False),
    ("Affine", "DIS Fine", True), ("Optical Flow", "DIS Medium", True)])  # hybrid_motion_use_prev_img
def test_hybrid_motion_moves_the_picture_as_the_clip_moves(clip128, tmp_path, motion, method, from_picture):
    path, _ = clip128
    result = render(settings(path, 128, hybrid_motion=motion, hybrid_flow_method=method,
                             hybrid_motion_use_prev_img=from_picture, hybrid_flow_consistency=from_picture),
                    out=tmp_path / "r", preview=True, quiet=True)
    out = pictures(result.folder)
    assert len(out) == 8
    for a, b in pairwise(out[1:5]):
        dx, dy = measured_shift(a, b)
        assert abs(dx - PAN) <= 0.5 and abs(dy) <= 0.5, (dx, dy)


@pytest.mark.parametrize("extra", [{"hybrid_motion": "Affine"},
                                   {"hybrid_motion": "Optical Flow", "optical_flow_cadence": "DIS Medium"},
                                   {"hybrid_motion": "Optical Flow", "animation_mode": "3D", "translation_z": "0:(0)"}],
                         ids=["affine", "flow-with-flow-cadence", "3d"])
def test_hybrid_motion_with_cadence_moves_the_in_between_frames_too(clip128, tmp_path, extra):
    path, _ = clip128
    result = render(settings(path, 128, diffusion_cadence=3, **extra), out=tmp_path / "r", preview=True, quiet=True)
    out = pictures(result.folder)
    for a, b in pairwise(out[1:7]):
        dx, dy = measured_shift(a, b)
        assert abs(dx - PAN) <= 0.5 and abs(dy) <= 0.5, (dx, dy)


@pytest.mark.parametrize("alpha", [0, 1])
def test_hybrid_composite_alpha_gives_the_frame_or_the_clip(clip64, tmp_path, alpha):
    path, frames = clip64
    result = render(settings(path, hybrid_composite="Normal", hybrid_comp_alpha_schedule=f"0:({alpha})",
                             hybrid_use_first_frame_as_init_image=False),
                    out=tmp_path / "r", preview=True, quiet=True)
    out = pictures(result.folder)
    if alpha == 1:
        assert min(psnr(a, b) for a, b in zip(out[1:], frames[1:])) >= 35
    else:
        assert all(np.array_equal(a, out[0]) for a in out[1:])  # nothing moves, nothing is composited


def test_flow_cadence_puts_in_betweens_where_the_flow_does(clip64, tmp_path):
    path, frames = clip64
    values = {"hybrid_composite": "Normal", "hybrid_comp_alpha_schedule": "0:(1)", "diffusion_cadence": 3}
    plain = pictures(render(settings(path, **values), out=tmp_path / "plain", preview=True, quiet=True).folder)
    flowed = pictures(render(settings(path, optical_flow_cadence="DIS Medium", **values),
                             out=tmp_path / "flow", preview=True, quiet=True).folder)
    for index in (4, 5, 7, 8):  # in-betweens: 3 px along from the frame before
        dx, dy = measured_shift(flowed[index - 1], flowed[index])
        assert abs(dx - PAN) <= 0.5 and abs(dy) <= 0.5, (index, dx, dy)
        assert psnr(flowed[index][8:-8, 8:-8], frames[index][8:-8, 8:-8]) > psnr(plain[index][8:-8, 8:-8],
                                                                                   frames[index][8:-8, 8:-8])


def test_plan_json_and_summary_name_the_clip(clip64, capsys):
    path, _ = clip64
    from deforum_engine.backends.preview import PreviewBackend
    from deforum_engine.rendering.summary import describe_plan
    plan = build_plan(settings(path, hybrid_motion="Optical Flow", hybrid_flow_method="Farneback",
                               extract_nth_frame=2, optical_flow_cadence="DIS Fine", diffusion_cadence=2))
    assert plan.frame_count == 6
    frames = plan.to_json()["frames"]
    assert frames["video_frame"] == [0, 2, 4, 6, 8, 10]
    assert frames["hybrid_flow_factor"] == [1.0] * 6 and frames["hybrid_comp_alpha"] == [0.5] * 6
    summary = describe_plan(plan, PreviewBackend())
    assert "Video in: pan.mp4 (64x64, 12 frames, 15 fps): frames 0-10 every 2 -> 6 output frames" in summary
    assert "motion Optical Flow (Farneback)" in summary and "optical-flow cadence DIS Fine" in summary


def test_bad_clips_fail_before_anything_is_written(clip64, tmp_path):
    path, _ = clip64
    with pytest.raises(SettingsError, match=r"video_init_path: .*nothing.mp4 does not exist"):
        render(settings(tmp_path / "nothing.mp4", animation_mode="Video Input"), out=tmp_path / "a", quiet=True)
    with pytest.raises(SettingsError, match=r"extract_from_frame \(40\) is past the last frame \(11\)"):
        render(settings(path, hybrid_motion="Affine", extract_from_frame=40), out=tmp_path / "b", quiet=True)
    with pytest.raises(SettingsError, match="RAFT needs torchvision.*'DIS Fine'"):
        render(settings(path, hybrid_motion="Optical Flow", hybrid_flow_method="RAFT"), out=tmp_path / "c",
               preview=True, quiet=True)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_clip_of_another_size_is_fitted_with_a_note(tmp_path, capsys):
    path, frames = panned_clip(tmp_path, count=4, width=96, height=64, name="wide.mp4")
    result = render(settings(path, animation_mode="Video Input", init_fit="crop"), out=tmp_path / "r",
                    preview=True, quiet=True)
    assert "video_init_path: wide.mp4 is 96x64, the render 64x64: its frames are fitted by init_fit (crop)" \
        in capsys.readouterr().err
    assert psnr(pictures(result.folder)[0], frames[0][:, 16:80]) >= 33


HYBRID = {"diffusion_cadence": 2, "hybrid_composite": "Normal", "hybrid_comp_mask_type": "Difference",
          "hybrid_motion": "Optical Flow", "hybrid_flow_method": "DIS Medium", "optical_flow_cadence": "DIS Medium",
          "optical_flow_redo_generation": "Farneback", "diffusion_redo": 1, "color_coherence": "Video Input"}
VIDEO_INPUT = {"animation_mode": "Video Input", "extract_from_frame": 2, "extract_to_frame": 10,
               "strength_schedule": "0:(0.5), 8:(0.8)", "color_coherence": "Video Input"}


@pytest.mark.parametrize("mode", [HYBRID, VIDEO_INPUT], ids=["hybrid", "video-input"])
def test_tiny_model_render_resumes_after_sigkill_with_identical_frames(tiny_sd_dir, clip64, tmp_path,
                                                                      one_torch_thread, mode):
    path, _ = clip64
    values = {**STILL, "W": 64, "H": 64, "video_init_path": str(path), "model": str(tiny_sd_dir), "steps": 4,
              "safety_checker": False, "extract_to_frame": 8, **mode}
    settings_path = tmp_path / "s.json"
    settings_path.write_text(json.dumps(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = render(validate_settings(values), out=tmp_path / "reference", quiet=True)
    assert reference.frames == 9
    folder = tmp_path / "killed"
    process = stopped_render(folder, settings_path, 6, "--quiet", env=env)  # frame 0, then redo + key passes
    wait_for(lambda: len(list((folder / "frames").glob("*.png"))) >= 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list((folder / "frames").glob("*.png"))) < 9
    resumed = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "resume", str(folder), "--quiet"],
                             capture_output=True, text=True, check=False, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    ours = [p.read_bytes() for p in sorted((folder / "frames").glob("*.png"))]
    theirs = [p.read_bytes() for p in sorted((reference.folder / "frames").glob("*.png"))]
    assert ours == theirs


@pytest.mark.parametrize("mask", ["Depth", "Video Depth"])
def test_depth_masks_load_the_depth_model_and_change_the_composite(tiny_sd_dir, tiny_dpt_dir, clip64, tmp_path,
                                                                   one_torch_thread, mask):
    path, _ = clip64
    values = {**STILL, "W": 64, "H": 64, "video_init_path": str(path), "model": str(tiny_sd_dir), "steps": 2,
              "safety_checker": False, "depth_model": str(tiny_dpt_dir), "hybrid_composite": "Normal",
              "hybrid_comp_alpha_schedule": "0:(1)", "extract_to_frame": 2}
    plain = render(validate_settings(values), out=tmp_path / "plain", quiet=True)
    masked = render(validate_settings({**values, "hybrid_comp_mask_type": mask}), out=tmp_path / "masked", quiet=True)
    ours, theirs = pictures(masked.folder), pictures(plain.folder)
    assert len(ours) == 3 and np.array_equal(ours[0], theirs[0])
    assert not np.array_equal(ours[2], theirs[2])  # the depth mask keeps part of the frame


def test_a_depth_mask_in_a_preview_warns_and_composites_without_it(clip64, tmp_path, capsys):
    path, _ = clip64
    render(settings(path, hybrid_composite="Normal", hybrid_comp_mask_type="Depth", extract_to_frame=2),
           out=tmp_path / "r", preview=True, quiet=True)
    assert "hybrid_comp_mask_type 'Depth' needs a depth model, which motion previews do not load" \
        in capsys.readouterr().err


def test_plan_command_shows_each_frames_clip_frame(clip64, tmp_path):
    path, _ = clip64
    settings_path = tmp_path / "s.json"
    settings_path.write_text(json.dumps({"W": 64, "H": 64, "video_init_path": str(path), "extract_nth_frame": 3,
                                         "hybrid_motion": "Optical Flow", "hybrid_composite": "Normal"}))
    table = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "plan", str(settings_path)],
                           capture_output=True, text=True, check=False, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "video comp_alpha flow_factor" in lines[1] and lines[1 + 4].split()[:1] == ["3"]
    assert [line.split()[lines[1].split().index("video")] for line in lines[2:]] == ["0", "3", "6", "9"]
    as_json = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "plan", str(settings_path), "--json"],
                             capture_output=True, text=True, check=False, timeout=120)
    frames = json.loads(as_json.stdout)["frames"]
    assert frames["video_frame"] == [0, 3, 6, 9]
    # the hybrid schedules are rows of the per-frame table: in the plan like every schedule
    assert frames["hybrid_comp_alpha"] == [0.5] * 4 and frames["hybrid_comp_mask_auto_contrast_cutoff_high"] == [100] * 4


def test_extra_frames_are_saved_beside_the_frames(clip64, tmp_path):
    path, _ = clip64
    result = render(settings(path, hybrid_composite="Normal", hybrid_comp_mask_type="Blend", extract_to_frame=3,
                             hybrid_comp_save_extra_frames=True), out=tmp_path / "r", preview=True, quiet=True)
    saved = sorted(p.name for p in (result.folder / "hybridframes").glob("*.png"))
    assert saved == [f"{kind}_{i:09}.png" for kind in ("comp", "mask") for i in (1, 2, 3)]
    mask = cv2.imread(str(result.folder / "hybridframes" / "mask_000000001.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 64)


def test_init_video_soundtrack_is_the_clips_audio(tmp_path, clip64):
    from deforum_engine.output import probe_video
    sound = tmp_path / "tone.wav"
    subprocess.run([__import__("imageio_ffmpeg").get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", str(sound)], check=True)
    from video_clips import panned_frames, write_clip
    path = write_clip(tmp_path / "sound.mp4", panned_frames(6), audio=sound)
    result = render(settings(path, animation_mode="Video Input", add_soundtrack="Init Video"), out=tmp_path / "r",
                    preview=True, quiet=True)
    assert probe_video(result.video)["has_audio"]
    with pytest.raises(SettingsError, match=r"add_soundtrack 'Init Video': .*pan.mp4 has no audio track"):
        render(settings(clip64[0], animation_mode="Video Input", add_soundtrack="Init Video"), out=tmp_path / "q",
               preview=True, quiet=True)


def test_compositing_the_init_image_needs_no_clip(tmp_path):
    picture = tmp_path / "init.png"
    cv2.imwrite(str(picture), np.full((64, 64, 3), 200, np.uint8))
    result = render(validate_settings({**STILL, "W": 64, "H": 64, "max_frames": 3, "hybrid_composite": "Normal",
                                       "hybrid_use_init_image": True, "init_image": str(picture),
                                       "hybrid_comp_alpha_schedule": "0:(1)"}),
                    out=tmp_path / "r", preview=True, quiet=True)
    assert all(np.abs(frame.astype(int) - 200).max() <= 1 for frame in pictures(result.folder))
    with pytest.raises(SettingsError, match="hybrid_use_init_image composites the init image into every frame"):
        validate_settings({"hybrid_composite": "Normal", "hybrid_use_init_image": True})


class CountingBackend:
    """A model-free backend that is not a preview: it hands the picture back and counts the passes."""

    name, is_preview = "counting", False

    def __init__(self):
        self.requests = []

    def begin(self, context):
        self.size = (context.width, context.height)

    def generate(self, request):
        self.requests.append((request.index, request.seed))
        return request.image if request.image is not None else np.full((*self.size[::-1], 3), 128, np.uint8)


@pytest.mark.parametrize("flow_redo, passes_per_key", [("None", 3), ("DIS Medium", 4)])
def test_redo_passes_run_before_each_diffused_frame(tmp_path, flow_redo, passes_per_key):
    backend = CountingBackend()
    render(validate_settings({**STILL, "W": 64, "H": 64, "max_frames": 3, "diffusion_redo": 2,
                              "optical_flow_redo_generation": flow_redo}),
           out=tmp_path / "r", backend=backend, quiet=True)
    indexes = [index for index, _ in backend.requests]
    assert indexes == [0] + [1] * passes_per_key + [2] * passes_per_key
    seeds = [seed for index, seed in backend.requests if index == 1]
    assert len(set(seeds)) == passes_per_key  # throw-away passes get their own seeds, the last is the frame's
