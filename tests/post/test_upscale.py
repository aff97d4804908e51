"""Real-ESRGAN upscaling: both families load from files in the published layout; tiles join without seams."""
import numpy as np
import pytest

from deforum_engine.models.cache import forget_models

from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.output import VideoWriter, probe_video
from deforum_engine.post.frames import open_source
from deforum_engine.post.upscale import Upscaling, parse_factor, upscale_image, upscale_source
from deforum_engine.post.upscalers import load_upscaler
from tiny_post import save_tiny_upscaler


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)
    forget_models("upscaler")


def texture(height=72, width=88, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("family, scale, name, key", [
    ("srvgg", 4, "realesr-animevideov3.pth", "params"),
    ("rrdb", 4, "RealESRGAN_x4plus.pth", "params_ema"),
    ("rrdb", 2, "RealESRGAN_x2plus.pth", "params_ema"),
    ("srvgg", 2, "compact_x2.safetensors", None),
])
def test_published_layouts_load_and_tiles_join_without_seams(tmp_path, family, scale, name, key):
    path = save_tiny_upscaler(tmp_path / name, family, scale, key=key)
    model = load_upscaler(str(path))
    assert (model.spec.family, model.spec.scale) == (family, scale)
    image = texture()
    whole = upscale_image(model, image, scale, tile=1024, overlap=0)
    tiled = upscale_image(model, image, scale, tile=24, overlap=24)  # 12 tiles, each with 24 px of context
    assert whole.shape == (72 * scale, 88 * scale, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1
    no_context = upscale_image(model, image, scale, tile=24, overlap=0)
    assert np.abs(whole.astype(int) - no_context).max() > 1  # the overlap is what removes the seams


def test_a_x4_model_is_brought_to_the_asked_factor(tmp_path):
    model = load_upscaler(str(save_tiny_upscaler(tmp_path / "m.pth", "srvgg", 4)))
    assert upscale_image(model, texture(20, 30), 2).shape == (40, 60, 3)
    assert upscale_image(model, texture(20, 30), 3).shape == (60, 90, 3)
    assert [parse_factor(v) for v in ("x2", "x3", "4")] == [2, 3, 4]
    with pytest.raises(SettingsError, match="r_upscale_factor"):
        parse_factor("x8")


def test_upscaled_video_keeps_fps_count_and_soundtrack(tmp_path):
    model = load_upscaler(str(save_tiny_upscaler(tmp_path / "m.pth", "srvgg", 4)))
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 32, 24, 8, preset="ultrafast") as video:
        for i in range(5):
            video.write(texture(24, 32, i))
    out = upscale_source(open_source(clip), Upscaling(factor=2, keep_frames=True), model)
    assert out == tmp_path / "clip_Upscaled_x2.mp4"
    info = probe_video(out)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (5, 64, 48, 8)
    assert len(list((tmp_path / "upscaled_frames_x2").glob("*.png"))) == 5


def test_model_names_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SettingsError, match="realesr-animevideov3.pth"):
        load_upscaler("realesr-animevideov3")
    with pytest.raises(RenderError, match="HF_HUB_OFFLINE"):
        load_upscaler("realesrgan-x4plus")
    import torch

    torch.save({"params": {"weight": torch.zeros(2)}}, tmp_path / "odd.pth")
    with pytest.raises(SettingsError, match="not a Real-ESRGAN"):
        load_upscaler(str(tmp_path / "odd.pth"))
    with pytest.raises(SettingsError, match="does not exist"):
        load_upscaler(str(tmp_path / "missing.pth"))
