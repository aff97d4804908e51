"""`deforum-engine interpolate` and `upscale` on a video and a render folder."""
import numpy as np

from deforum_engine import render
from deforum_engine.cli import main
from deforum_engine.config.settings import validate_settings
from deforum_engine.output import VideoWriter, probe_video
from tiny_post import save_tiny_rife, save_tiny_upscaler


def test_interpolate_and_upscale_commands(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    rife = save_tiny_rife(tmp_path / "rife", "4.22").parent
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 32, 32, 6, preset="ultrafast") as video:
        for i in range(4):
            video.write(np.full((32, 32, 3), 60 * i, np.uint8))
    assert main(["interpolate", str(clip), "--x", "3", "--model", str(rife)]) == 0
    out = tmp_path / "clip_RIFE_x3.mp4"
    assert capsys.readouterr().out.strip() == str(out)
    assert (probe_video(out)["frames"], probe_video(out)["fps"]) == (10, 18)

    settings = validate_settings({"W": 64, "H": 64, "max_frames": 3, "video_preset": "ultrafast"})
    folder = render(settings, out=tmp_path / "r", preview=True, quiet=True).folder
    model = save_tiny_upscaler(tmp_path / "m" / "x4.pth", "rrdb", 4)
    assert main(["upscale", str(folder), "--factor", "x4", "--model", str(model), "--keep-frames"]) == 0
    info = probe_video(folder / "r_Upscaled_x4.mp4")
    assert (info["frames"], info["width"], info["height"]) == (3, 256, 256)
    assert len(list((folder / "upscaled_frames_x4").glob("*.png"))) == 3


def test_commands_say_what_is_wrong(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["interpolate", str(tmp_path / "nothing.mp4")]) == 2
    assert "neither a render folder" in capsys.readouterr().err
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 32, 32, 6, preset="ultrafast") as video:
        for i in range(3):
            video.write(np.zeros((32, 32, 3), np.uint8))
    assert main(["interpolate", str(clip)]) == 1
    error = capsys.readouterr().err
    assert "AlexWortega/RIFE/flownet.pkl" in error and "HF_HUB_OFFLINE" in error
