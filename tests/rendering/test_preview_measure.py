"""Issue 21: a motion preview stays a picture for as long as the render lasts.

Every shipped preset, 240 frames with default settings, from the preview's default picture and from
a user's init image: frame 239 keeps at least 0.3 of frame 0's luminance spread, at most 2x its
gradient energy (sharpening does not pile up), and its mean colour within 15 LAB units (nothing
collapses to one colour); so does the quickstart at 600 frames. Small frames: it is the pile-up
over many frames that must not happen, and it shows at any size.
"""
import cv2
import numpy as np
import pytest
import torch

from deforum_engine.backends.preview import default_picture
from deforum_engine.frame.detail import restore_detail
from deforum_engine.config.files import load_settings
from deforum_engine.config.presets import list_presets
from preview_measure import gradient_energy, holds, landscape, picture_drift, preview_frames

torch.set_num_threads(1)
SIZE = 64
PRESETS = sorted(list_presets())
SOUNDTRACK = "examples/beat.wav"


def preset_settings(name, **values):
    base = {"W": SIZE, "H": SIZE, "max_frames": 240, "seed": 5, "motion_preset": name}
    if "soundtrack" in list_presets()[name].description:
        base["soundtrack_path"] = SOUNDTRACK
    return load_settings(None, {**base, **values})


@pytest.fixture(scope="module")
def init_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "landscape.png"
    cv2.imwrite(str(path), cv2.cvtColor(landscape(96, 80), cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_stays_a_picture_from_the_default_picture(name):
    frames = preview_frames(preset_settings(name), (0, 239))
    drift = picture_drift(frames[0], frames[239])
    assert holds(drift), f"{name}: {drift}"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_stays_a_picture_from_an_init_image(name, init_image):
    frames = preview_frames(preset_settings(name, init_image=init_image), (0, 239))
    drift = picture_drift(frames[0], frames[239])
    assert holds(drift), f"{name}: {drift}"


def test_the_quickstart_stays_a_picture_for_600_frames():
    settings = load_settings("examples/quickstart.json", {"W": SIZE, "H": SIZE, "max_frames": 600})
    frames = preview_frames(settings, (0, 599))
    drift = picture_drift(frames[0], frames[599])
    assert holds(drift), drift


def test_the_default_picture_has_detail_at_every_scale_and_tiles():
    picture = default_picture(128, 128, seed=3)
    for scale in (1, 2, 4, 8):  # zoomed in 1x .. 8x, a crop still has contrast and edges
        crop = picture[64 - 64 // scale:64 + 64 // scale, 64 - 64 // scale:64 + 64 // scale]
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        assert grey.std() > 8, scale
    seam = np.abs(picture[:, -1].astype(int) - picture[:, 0]).mean()
    inside = np.abs(picture[:, 64].astype(int) - picture[:, 63]).mean()
    assert seam < 3 * inside + 4  # its right edge runs on into its left: a wrapped pan shows no seam
    assert not np.array_equal(picture, default_picture(128, 128, seed=4))


def test_restore_detail_leaves_a_sharp_frame_alone_and_sharpens_a_blurred_one():
    picture = default_picture(96, 96, seed=1)
    assert np.array_equal(restore_detail(picture, seed=1), picture)
    blurred = cv2.GaussianBlur(picture, (0, 0), 2.5)
    restored = restore_detail(blurred, seed=1)
    assert gradient_energy(restored) > 1.5 * gradient_energy(blurred)
    assert np.abs(restored.astype(float).mean((0, 1)) - blurred.mean((0, 1))).max() < 2  # colour kept


def test_a_preview_starts_from_the_image_prompt_when_there_is_no_init_image(tmp_path):
    path = tmp_path / "prompt.png"
    picture = landscape(64, 64)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    frames = preview_frames(load_settings(None, {"W": 64, "H": 64, "max_frames": 2, "image_prompt": str(path)}), (0,))
    assert np.abs(frames[0].astype(int) - picture).mean() < 2
