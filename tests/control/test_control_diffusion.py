"""Whole renders with ControlNet units and masks on the tiny diffusers models, loaded like a user's."""
import io
import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from deforum_engine import render  # noqa: E402
from deforum_engine.output import probe_video  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from deforum_engine.config.files import load_settings  # noqa: E402

SIZE = 64
BASE = {"W": SIZE, "H": SIZE, "seed": 5, "steps": 4, "strength_schedule": "0:(0.5)", "video_preset": "ultrafast",
        "zoom": "0:(1.02)", "safety_checker": False}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (see tiny_models.one_torch_thread)."""


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    path = tmp_path_factory.mktemp("control") / "square.png"
    picture = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    picture[16:48, 16:48] = 255
    Image.fromarray(picture).save(path)
    return path


def frames(folder):
    return [p.read_bytes() for p in sorted((folder / "frames").glob("*.png"))]


def pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)), dtype=float)


def canny_unit(controlnet, square, number=1, **values):
    unit = {"enabled": True, "model": str(controlnet), "module": "canny", "vid_path": str(square),
            "threshold_a": 100, "threshold_b": 200, "processor_res": 64, **values}
    return {f"cn_{number}_{key}": value for key, value in unit.items()}


def test_an_idle_unit_renders_bit_identically_and_a_canny_unit_changes_frames(tiny_sd_dir, tiny_controlnet_dir,
                                                                               square, tmp_path):
    net = tiny_controlnet_dir / "folder"
    base = {**BASE, "model": str(tiny_sd_dir), "max_frames": 3}
    plain = frames(render(validate_settings(base), out=tmp_path / "plain", quiet=True).folder)
    weight_0 = render(validate_settings({**base, **canny_unit(net, square, weight=0)}), out=tmp_path / "w0", quiet=True)
    no_window = render(validate_settings({**base, **canny_unit(net, square, guidance_start=0.5, guidance_end=0.5)}),
                       out=tmp_path / "nw", quiet=True)
    assert frames(weight_0.folder) == plain and frames(no_window.folder) == plain
    controlled = frames(render(validate_settings({**base, **canny_unit(net, square)}), out=tmp_path / "cn",
                               quiet=True).folder)
    assert all(np.abs(pixels(a) - pixels(b)).mean() > 1.0 for a, b in zip(controlled, plain))


def test_a_unit_with_an_image_prompt_and_a_lora(tiny_sd_dir, tiny_controlnet_dir, tiny_ip_adapter_dir, tiny_lora_dir,
                                                square, tmp_path):
    values = {**BASE, "model": str(tiny_sd_dir), "max_frames": 2, "image_prompt": str(square),
              "ip_adapter": str(tiny_ip_adapter_dir), "image_prompt_influence": "high",
              "lora_dirs": [str(tiny_lora_dir)], "prompts": {"0": "a red fox <lora:style:0.8>"}}
    without = frames(render(validate_settings(values), out=tmp_path / "a", quiet=True).folder)
    with_unit = frames(render(validate_settings({**values, **canny_unit(tiny_controlnet_dir / "controlnet.safetensors",
                                                                        square)}), out=tmp_path / "b", quiet=True).folder)
    assert len(with_unit) == 2 and all(a != b for a, b in zip(with_unit, without))


def test_lockstep_batches_renders_with_and_without_units(tiny_sd_dir, tiny_controlnet_dir, square, tmp_path,
                                                         monkeypatch):
    from deforum_engine.backends.diffusers import DiffusersBackend
    from deforum_engine.batch.jobs import render_in_lockstep

    base = {**BASE, "model": str(tiny_sd_dir), "max_frames": 3}
    unit = canny_unit(tiny_controlnet_dir / "folder", square)
    jobs = [(validate_settings({**base, "seed": 1, **unit}), tmp_path / "a"),
            (validate_settings({**base, "seed": 2, **unit}), tmp_path / "b"),
            (validate_settings({**base, "seed": 3}), tmp_path / "c")]
    batches = []
    real = DiffusersBackend.generate_many
    monkeypatch.setattr(DiffusersBackend, "generate_many",
                        lambda self, requests: batches.append(len(requests)) or real(self, requests))
    outcomes = render_in_lockstep(jobs, DiffusersBackend(str(tiny_sd_dir), safety_checker=False))
    assert all(not isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert sorted(batches) == [1, 1, 1, 2, 2, 2]  # the two renders with the same unit batch together
    for (settings, folder), outcome in zip(jobs, outcomes):
        solo = frames(render(settings, out=tmp_path / f"solo-{folder.name}", quiet=True).folder)
        for ours, theirs in zip(frames(outcome.folder), solo):
            assert np.abs(pixels(ours) - pixels(theirs)).mean() < 1.0


def test_a_deforum_file_with_two_units_and_a_mask_renders(tiny_sd_dir, tiny_controlnet_dir, square, tmp_path):
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[:, SIZE // 2:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    deforum = {
        "W": SIZE, "H": SIZE, "seed": 5, "steps": 4, "max_frames": 3, "animation_mode": "2D", "use_init": False,
        "animation_prompts": json.dumps({"0": "a red fox"}), "strength_schedule": "0: (0.5)",
        "sampler": "euler_ancestral", "diffusion_cadence": "1", "model": str(tiny_sd_dir), "safety_checker": False,
        "use_mask": True, "mask_file": "mask.png", "mask_schedule": '0: ("{video_mask}")', "invert_mask": False,
        "mask_overlay_blur": 2, "overlay_mask": True, "use_noise_mask": False, "fill": 1, "full_res_mask": True,
        **canny_unit(tiny_controlnet_dir / "folder", "square.png", 1, weight="0: (1)", guidance_end="0: (0.5)",
                     control_mode="My prompt is more important", resize_mode="Inner Fit (Scale to Fit)"),
        "cn_2_enabled": True, "cn_2_model": str(tiny_controlnet_dir / "controlnet.safetensors"), "cn_2_module": "none",
        "cn_2_loopback_mode": True, "cn_2_vid_path": "", "cn_2_weight": "0: (0.6)",
        "cn_3_enabled": False, "cn_3_model": "None", "cn_3_weight": "0:(1)",
    }
    Image.open(square).save(tmp_path / "square.png")
    path = tmp_path / "deforum_settings.txt"
    path.write_text(json.dumps(deforum))
    with pytest.warns(UserWarning) as caught:
        settings = load_settings(path)
    ignored = " ".join(str(w.message) for w in caught)
    assert "cn_1" not in ignored and "use_mask" not in ignored and "fill" in ignored
    assert settings.cn_1_enabled and settings.cn_2_loopback_mode and settings.use_mask
    result = render(settings, out=tmp_path / "r", quiet=True)
    assert probe_video(result.video)["frames"] == 3
