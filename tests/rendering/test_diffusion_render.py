"""Whole renders through the diffusers backend, on tiny random-weight models loaded like a user's.

Everything runs through `render()` or the `deforum-engine` command with `--model FOLDER`.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from deforum_engine import SettingsError, render  # noqa: E402
from deforum_engine.output import probe_video  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from polling import wait_for  # noqa: E402
from stopping import stopped_render  # noqa: E402

BASE = {"W": 64, "H": 64, "seed": 5, "steps": 4, "strength_schedule": "0:(0.5)", "video_preset": "ultrafast",
        "zoom": "0:(1.02)", "angle": "0:(1)", "safety_checker": False}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see tiny_models.one_torch_thread)."""


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt") / "gold.png"
    y, x = np.mgrid[0:96, 0:96]
    Image.fromarray(np.stack([200 + x // 2, 150 + y // 3, 20 + 0 * x], -1).astype(np.uint8)).save(path)
    return path


def frames(folder):
    return [p.read_bytes() for p in sorted((folder / "frames").glob("*.png"))]


def settings(model, **values):
    return validate_settings({**BASE, "model": str(model), **values})


def test_cli_render_with_text_keyframes(tiny_sd_dir, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**BASE, "max_frames": 6, "diffusion_cadence": 2,
                                "prompts": {"0": "a red fox --neg blurry", "3": "a blue whale"}}))
    result = subprocess.run(
        [sys.executable, "-m", "deforum_engine.cli", "render", str(path), "--model", str(tiny_sd_dir),
         "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    # A1111's count: int(0.5 * 4) + 1 = 3 (the engine used to say and run round(0.5 * 4) = 2)
    assert "keeps 50% of the previous one" in result.stderr and "3 of 4 steps" in result.stderr
    assert "MOTION PREVIEW" not in result.stderr
    video = probe_video(tmp_path / "r" / "r.mp4")
    assert (video["frames"], video["width"], video["height"]) == (6, 64, 64)
    info = json.loads((tmp_path / "r" / "render.json").read_text())
    assert info["backend"] == "diffusers" and not info["preview"]


def test_same_settings_give_identical_frames_and_seeds_matter(tiny_sd_dir, tmp_path):
    a = render(settings(tiny_sd_dir, max_frames=3), out=tmp_path / "a", quiet=True)
    b = render(settings(tiny_sd_dir, max_frames=3), out=tmp_path / "b", quiet=True)
    c = render(settings(tiny_sd_dir, max_frames=3, seed=6), out=tmp_path / "c", quiet=True)
    assert frames(a.folder) == frames(b.folder)
    assert frames(a.folder)[0] != frames(c.folder)[0]


def test_image_prompt_changes_frames_and_zero_influence_matches_none(tiny_sd_dir, tiny_ip_adapter_dir, gold,
                                                                    tmp_path):
    no_image = settings(tiny_sd_dir, max_frames=2, prompts={"0": ""})
    plain = render(no_image, out=tmp_path / "plain", quiet=True)
    # Very high influence with an empty prompt: the picture comes from the image alone.
    with_image = no_image.model_copy(update={"image_prompt": gold, "ip_adapter": str(tiny_ip_adapter_dir),
                                             "image_prompt_influence": "very_high"})
    guided = render(with_image, out=tmp_path / "guided", quiet=True)
    zero = render(with_image.model_copy(update={"image_prompt_influence": 0.0}), out=tmp_path / "zero", quiet=True)
    after = render(no_image, out=tmp_path / "after", quiet=True)
    assert frames(guided.folder) != frames(plain.folder)
    assert frames(zero.folder) == frames(plain.folder)
    assert frames(after.folder) == frames(plain.folder)  # the adapter does not leak into later renders


def test_bad_image_prompt_fails_before_any_model_loads(tmp_path):
    broken = tmp_path / "photo.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(SettingsError, match="photo.png"):
        render(validate_settings({**BASE, "max_frames": 2, "image_prompt": str(broken),
                                  "model": str(tmp_path / "no-such-model")}), out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_diffusion_render_resumes_after_sigkill_with_identical_frames(tiny_sd_dir, tmp_path):
    values = {**BASE, "max_frames": 16, "diffusion_cadence": 2, "model": str(tiny_sd_dir)}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = render(validate_settings(values), out=tmp_path / "reference", quiet=True)

    folder = tmp_path / "killed"
    process = stopped_render(folder, path, 4, "--quiet", env=env)  # frame 0 and 3 keys: frames 0-6
    wait_for(lambda: len(list((folder / "frames").glob("*.png"))) >= 5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 5 <= len(list((folder / "frames").glob("*.png"))) <= 7

    resumed = subprocess.run([sys.executable, "-m", "deforum_engine.cli", "resume", str(folder), "--quiet"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert frames(folder) == frames(reference.folder)
    assert probe_video(folder / "killed.mp4")["frames"] == 16


def test_batch_loads_the_model_once_per_worker(tiny_sd_dir, tmp_path, monkeypatch):
    from deforum_engine.batch.local import run_batch
    from deforum_engine.models import loading as models
    from deforum_engine.models.cache import forget_models

    loads = []
    real_load = models._load
    forget_models("pipeline")
    monkeypatch.setattr(models, "_load", lambda *args, **kwargs: loads.append(args) or real_load(*args, **kwargs))
    paths = []
    for name, seed in (("one", 1), ("two", 2), ("three", 3)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**BASE, "max_frames": 2, "seed": seed}))
        paths.append(path)
    report = run_batch(paths, tmp_path / "out", model=str(tiny_sd_dir))
    assert report.ok, report.summary()
    assert [r.status for r in report.results] == ["done"] * 3
    assert len(loads) == 1


@pytest.fixture(scope="module")
def tiny_taesd_dir(tmp_path_factory):
    """A tiny random AutoencoderTiny (TAESD) with the tiny SD model's latent grid (factor 2)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    vae = AutoencoderTiny(in_channels=3, out_channels=3, encoder_block_out_channels=(16, 16),
                          decoder_block_out_channels=(16, 16), num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1),
                          latent_channels=4)
    folder = tmp_path_factory.mktemp("taesd")
    vae.save_pretrained(folder)
    return folder


def test_tiny_vae_setting_swaps_in_taesd(tiny_sd_dir, tiny_taesd_dir, tmp_path):
    from diffusers import AutoencoderTiny

    from deforum_engine.models import loading as models

    full = render(settings(tiny_sd_dir, max_frames=3), out=tmp_path / "full", quiet=True)
    fast = render(settings(tiny_sd_dir, max_frames=3, vae="tiny", tiny_vae_model=str(tiny_taesd_dir)),
                  out=tmp_path / "tiny", quiet=True)
    assert probe_video(fast.video)["frames"] == 3
    assert frames(fast.folder) != frames(full.folder)  # TAESD is lossy: different pixels, same render
    pipes = models.load_pipeline(str(tiny_sd_dir), safety_checker=False, tiny_vae=str(tiny_taesd_dir))
    assert isinstance(pipes.img2img.vae, AutoencoderTiny) and pipes.txt2img.vae is pipes.img2img.vae
    plain = models.load_pipeline(str(tiny_sd_dir), safety_checker=False)
    assert not isinstance(plain.img2img.vae, AutoencoderTiny)  # the full-VAE pipelines are untouched


def test_lockstep_renders_batch_their_frames_and_match_solo_renders(tiny_sd_dir, tmp_path, monkeypatch):
    from deforum_engine.backends.diffusers import DiffusersBackend
    from deforum_engine.batch.jobs import render_in_lockstep

    jobs = [
        (settings(tiny_sd_dir, max_frames=4, seed=1, prompts={"0": "a red fox"}), tmp_path / "a"),
        (settings(tiny_sd_dir, max_frames=6, seed=2, prompts={"0": "a blue whale"}), tmp_path / "b"),
        (settings(tiny_sd_dir, max_frames=5, seed=3, diffusion_cadence=2), tmp_path / "c"),
    ]
    batches = []
    real = DiffusersBackend.generate_many
    monkeypatch.setattr(DiffusersBackend, "generate_many",
                        lambda self, requests: batches.append(len(requests)) or real(self, requests))
    inner = DiffusersBackend(str(tiny_sd_dir), safety_checker=False)
    outcomes = render_in_lockstep(jobs, inner)
    assert all(not isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert max(batches) == 3 and sum(batches) == 4 + 6 + 3  # every diffused frame, mostly three at a time
    for (job_settings, folder), outcome in zip(jobs, outcomes):
        solo = render(job_settings, out=tmp_path / f"solo-{folder.name}", quiet=True)
        assert probe_video(outcome.video)["frames"] == job_settings.max_frames
        for ours, theirs in zip(frames(folder), frames(solo.folder)):
            a = np.asarray(Image.open(__import__("io").BytesIO(ours)), dtype=float)
            b = np.asarray(Image.open(__import__("io").BytesIO(theirs)), dtype=float)
            assert np.abs(a - b).mean() < 1.0  # batched arithmetic: equal up to the last bits


def test_batch_cli_lockstep(tiny_sd_dir, tmp_path):
    from deforum_engine.batch.local import run_batch

    paths = []
    for seed in (1, 2):
        path = tmp_path / f"job{seed}.json"
        path.write_text(json.dumps({**BASE, "max_frames": 3, "seed": seed}))
        paths.append(path)
    report = run_batch(paths, tmp_path / "out", model=str(tiny_sd_dir), lockstep=2)
    assert report.ok, report.summary()
    assert all(probe_video(tmp_path / "out" / p.stem / f"{p.stem}.mp4")["frames"] == 3 for p in paths)


def test_compile_unet_setting_compiles_the_shared_unet_and_reports_the_time(tiny_sd_dir, tmp_path, monkeypatch,
                                                                           capfd):
    """Real compilation takes ~90 s on this CPU (and pays only on GPUs), so torch.compile is stood in for here."""
    compiled = []

    def fake_compile(module, **kwargs):
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = render(settings(tiny_sd_dir, max_frames=2, compile_unet=True), out=tmp_path / "c")
    assert len(compiled) == 1 and probe_video(result.video)["frames"] == 2
    assert "compile_unet: the first frame, which compiled the UNet, took" in capfd.readouterr().err
