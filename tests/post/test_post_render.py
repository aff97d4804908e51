"""One render command makes the looped video, the upscaled one and the interpolated one."""
import pytest

from deforum_engine import render
from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.output import probe_video
from deforum_engine.post.frames import open_source
from deforum_engine.post.loop import seam_and_median
from tiny_post import save_tiny_rife, save_tiny_upscaler


def test_a_render_with_loop_upscaling_and_interpolation(tmp_path):
    import torch

    torch.set_num_threads(1)
    rife = save_tiny_rife(tmp_path / "rife", "4.6").parent
    upscaler = save_tiny_upscaler(tmp_path / "up" / "realesr-animevideov3.pth", "srvgg", 4)
    settings = validate_settings({
        "W": 64, "H": 64, "max_frames": 12, "fps": 12, "seed": 3, "zoom": "0:(1.04)", "angle": "0:(1)",
        "video_preset": "ultrafast", "seamless_loop": True, "r_upscale_video": True, "r_upscale_factor": "x2",
        "r_upscale_model": str(upscaler), "frame_interpolation_engine": "RIFE v4.6",
        "frame_interpolation_x_amount": 2, "frame_interpolation_use_upscaled": True, "rife_model": str(rife)})
    result = render(settings, out=tmp_path / "r", preview=True, quiet=True)
    root = result.folder
    assert result.extra_videos == (root / "r_Upscaled_x2.mp4", root / "r_RIFE_x2_upscaled.mp4")
    upscaled, interpolated = (probe_video(v) for v in result.extra_videos)
    assert (upscaled["frames"], upscaled["width"], upscaled["fps"]) == (12, 128, 12)
    assert (interpolated["frames"], interpolated["width"], interpolated["fps"]) == (24, 128, 24)  # N·X: a loop
    assert len(list((root / "frames").glob("*.png"))) == 12  # raw frames kept, so it can all be redone
    main = open_source(root / "r.mp4")
    seam, median = seam_and_median(main.frames())
    assert seam <= median * 1.25  # measured on the H.264 video: a little codec noise on top


def test_missing_weights_are_refused_before_the_render(tmp_path):
    settings = validate_settings({"W": 64, "H": 64, "max_frames": 3, "r_upscale_video": True,
                                  "r_upscale_model": str(tmp_path / "none.pth")})
    with pytest.raises(SettingsError, match="r_upscale_model"):
        render(settings, out=tmp_path / "r", preview=True, quiet=True)
    assert not (tmp_path / "r").exists()


def test_deforum_files_keep_their_interpolation_and_upscaling_settings():
    from deforum_engine.config.importers.deforum import import_deforum

    raw = {"frame_interpolation_engine": "FILM", "frame_interpolation_x_amount": 4,
           "frame_interpolation_slow_mo_enabled": True, "r_upscale_video": True, "r_upscale_factor": "x3",
           "r_upscale_model": "realesrgan-x4plus-anime", "r_upscale_keep_imgs": False}
    result = import_deforum(raw, "deforum.txt")
    settings = validate_settings(result.settings)
    assert settings.frame_interpolation_engine == "RIFE" and settings.frame_interpolation_x_amount == 4
    assert settings.frame_interpolation_slow_mo_enabled and settings.r_upscale_factor == "x3"
    assert settings.r_upscale_model == "realesrgan-x4plus-anime" and not settings.r_upscale_keep_imgs
    assert any("FILM" in note and "RIFE" in note for note in result.notes) and not result.ignored
    imported = import_deforum({"frame_interpolation_engine": "RIFE v4.6"}, "d.txt").settings
    assert imported["frame_interpolation_engine"] == "RIFE"
    with pytest.raises(SettingsError, match="FILM is not available"):
        validate_settings({"frame_interpolation_engine": "FILM"})  # a native file says what to use instead
