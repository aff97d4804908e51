"""The diffusers backend on tiny random-weight models loaded from hub-layout folders.

Frames are 32 x 32 with 1-4 denoising steps: a frame costs a fraction of a second on a CPU.
"""
import socket
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from deforum_engine.models import loading as models  # noqa: E402
from deforum_engine.backends.base import FrameRequest, RenderContext  # noqa: E402
from deforum_engine.backends.diffusers import DiffusersBackend, image_prompt_scales, img2img_strength  # noqa: E402
from deforum_engine.errors import RenderError, SettingsError  # noqa: E402
from deforum_engine.prompts.samplers import SAMPLER_NAMES, SAMPLERS, check_sampler, make_scheduler, step_counts  # noqa: E402

SIZE = 32
pytestmark = [  # numpy 2.x nagging about torch tensors inside diffusers' schedulers, thousands per run
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see tiny_models.one_torch_thread)."""


@pytest.fixture(scope="module")
def backend(tiny_sd_dir, tiny_ip_adapter_dir):
    return DiffusersBackend(str(tiny_sd_dir), ip_adapter=str(tiny_ip_adapter_dir))


@pytest.fixture(scope="module")
def image_prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("image-prompt") / "gold.png"
    y, x = np.mgrid[0:48, 0:48]
    Image.fromarray(np.stack([x * 5, y * 5, 255 - x * 5], -1).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def start_image():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def frame(index=1, image=None, prompt="a red fox", seed=7, steps=4, denoise=0.5, sampler="Euler a", **extra):
    """A FrameRequest with test defaults (img2img when `image` is given)."""
    return FrameRequest(
        index=index, image=image, prompt=prompt, negative_prompt=extra.pop("negative_prompt", "blurry"), seed=seed,
        steps=steps, cfg_scale=extra.pop("cfg_scale", 7.0), denoise=1.0 if image is None else denoise,
        sampler=sampler, **extra,
    )


def begin(backend, image_prompt=None, mode="all"):
    backend.begin(RenderContext(width=SIZE, height=SIZE, image_prompt=image_prompt, image_prompt_mode=mode))
    return backend


# --- frames ---------------------------------------------------------------------------------------

def test_txt2img_then_img2img_frames_are_reproducible(backend):
    begin(backend)
    first = backend.generate(frame(index=0, steps=3))
    assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, backend.generate(frame(index=0, steps=3)))  # same request, same frame
    assert not np.array_equal(first, backend.generate(frame(index=0, steps=3, seed=8)))

    later = backend.generate(frame(image=first, sampler="DPM++ 2M Karras", denoise=0.65))
    assert later.shape == (SIZE, SIZE, 3) and later.dtype == np.uint8
    assert not np.array_equal(later, first)


def test_prompt_embeddings_are_computed_once_per_prompt(backend, start_image, monkeypatch):
    begin(backend)
    encoder = backend.pipelines.txt2img.text_encoder
    calls = []
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    request = frame(image=start_image, prompt="a lighthouse at dusk", steps=2)
    backend.generate(request)
    assert len(calls) == 2  # the prompt and the negative prompt
    backend.generate(request)
    backend.generate(frame(image=start_image, prompt="a lighthouse at dusk", steps=2, seed=99))
    assert len(calls) == 2


def test_prompt_blending_lies_between_the_two_prompts(backend, start_image):
    begin(backend)
    ends = {p: backend.generate(frame(image=start_image, prompt=p, steps=2)) for p in ("a forest", "a desert")}
    blend = dict(blend_prompt="a desert", blend_negative_prompt="blurry")
    halfway = backend.generate(frame(image=start_image, prompt="a forest", steps=2, blend_weight=0.5, **blend))
    assert not np.array_equal(halfway, ends["a forest"]) and not np.array_equal(halfway, ends["a desert"])
    arrived = backend.generate(frame(image=start_image, prompt="a forest", steps=2, blend_weight=1.0, **blend))
    assert np.array_equal(arrived, ends["a desert"])
    start = backend.generate(frame(image=start_image, prompt="a forest", steps=2, blend_weight=0.0, **blend))
    assert np.array_equal(start, ends["a forest"])


def a1111_steps(steps: int, denoise: float) -> int:
    """Sampler steps AUTOMATIC1111 runs for an img2img frame with img2img_fix_steps off (Deforum's path):
    t_enc = int(min(denoise, 0.999) * steps), sampling from sigma index steps - t_enc - 1: t_enc + 1 steps."""
    return int(min(denoise, 0.999) * steps) + 1


def test_step_counts_follow_a1111():
    assert step_counts(25, 0.35) == (25, 9)  # int(8.75) + 1
    assert step_counts(10, 0.5) == (10, 6)  # int(5.0) + 1: one more than 10 x 0.5
    assert step_counts(25, 1.0) == (25, 25)  # min(1, 0.999) * 25 = 24.975
    assert step_counts(1, 0.35) == (1, 1)  # the extension's test settings: steps 1, strength 0.65
    assert step_counts(4, 0.1) == (4, 1) and step_counts(25, 0.0) == (25, 1)  # never zero
    for steps in (1, 2, 4, 7, 25, 49, 50):
        for denoise in np.linspace(0.0, 1.0, 41):
            num, effective = step_counts(steps, denoise)
            assert (num, effective) == (steps, a1111_steps(steps, denoise))
            assert int(num * img2img_strength(num, effective)) == effective  # what diffusers will run


@contextmanager
def unet_timesteps(backend):
    """The timestep of every UNet call made inside the block (a forward pre-hook counts them)."""
    seen = []

    def record(module, args, kwargs):
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        seen.append(float(torch.as_tensor(timestep).flatten()[0]))

    hook = backend.pipelines.img2img.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        hook.remove()


def test_one_step_strength_065_frames_are_redenoised(backend, start_image):
    """steps 1 at strength 0.65 used to run 0 steps (round(0.35)) and pass the frame through unchanged."""
    begin(backend)
    with unet_timesteps(backend) as seen:
        out = backend.generate(frame(image=start_image, steps=1, denoise=0.35))
    assert len(seen) == 1  # one sampler step: one UNet call (both guidance halves in one batch)
    assert np.abs(out.astype(int) - start_image.astype(int)).mean() > 5  # re-denoised, not passed through
    with unet_timesteps(backend) as seen:
        backend.generate(frame(image=start_image, steps=4, denoise=0.0))
    assert len(seen) == 1  # denoise 0 still runs A1111's last step


def test_img2img_runs_a1111s_steps_from_a1111s_place_in_the_schedule(backend, start_image):
    begin(backend)
    with unet_timesteps(backend) as seen:
        backend.generate(frame(image=start_image, steps=25, denoise=0.35))
    assert len(seen) == 9  # int(0.35 * 25) + 1
    # A1111 starts at index 25 - 8 - 1 = 16 of a 25-step schedule: t = 999 * 8 / 24 = 333 on its
    # linspace(999, 0, 25). The same index of diffusers' 25-step schedule with SD 1.5's "leading"
    # spacing (40 apart, offset 1) is 8 * 40 + 1 = 321; the steps then run down to its last, t = 1.
    assert seen[0] == 321 and seen[-1] == 1


@contextmanager
def unet_inputs(backend):
    """The latent of every UNet call made inside the block (guidance halves are equal copies)."""
    seen = []
    hook = backend.pipelines.img2img.unet.register_forward_pre_hook(
        lambda module, args: seen.append(args[0][:1].clone()))
    try:
        yield seen
    finally:
        hook.remove()


def test_noise_multiplier_scales_the_starting_noise(backend, start_image):
    """A1111's initial_noise_multiplier: img2img starts from x0 + m * sigma * noise (Deforum's default m 1.05)."""
    begin(backend)
    starts, frames = {}, {}
    for multiplier in (0.0, 1.0, 1.05):
        with unet_inputs(backend) as seen:
            frames[multiplier] = backend.generate(frame(image=start_image, steps=4, noise_multiplier=multiplier))
        starts[multiplier] = seen[0]
    plain, scaled = starts[1.0] - starts[0.0], starts[1.05] - starts[0.0]  # the noise, as the UNet sees it
    torch.testing.assert_close(scaled, 1.05 * plain, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(frames[1.05], frames[1.0])
    # The multiplier is set on every frame: a plain frame after a scaled one is the plain frame again.
    assert np.array_equal(backend.generate(frame(image=start_image, steps=4)), frames[1.0])


def test_noise_multiplier_one_is_the_plain_img2img_frame(backend, start_image):
    """Frames at multiplier 1.0 are exactly what diffusers' own pipeline and scheduler make (as before)."""
    begin(backend)
    ours = backend.generate(frame(image=start_image, steps=4, denoise=0.5, sampler="DPM++ 2M"))
    pipe = backend.pipelines.img2img
    pipe.scheduler = make_scheduler("DPM++ 2M", backend.pipelines.scheduler_config)
    image = pipe(prompt="a red fox", negative_prompt="blurry", image=start_image[None].astype(np.float32) / 255.0,
                 strength=img2img_strength(4, 3), num_inference_steps=4, guidance_scale=7.0, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(7)).images[0]
    assert np.array_equal(ours, (np.clip(image, 0, 1) * 255).round().astype(np.uint8))


def test_lockstep_batches_only_frames_with_the_same_noise_multiplier(start_image):
    from deforum_engine.backends.lockstep import batch_key

    request = frame(image=start_image)
    assert batch_key(request) == batch_key(frame(image=start_image, seed=99))
    assert batch_key(request) != batch_key(frame(image=start_image, noise_multiplier=1.05))


def test_nan_frames_are_retried_with_next_seeds_then_fail(backend, start_image, monkeypatch):
    begin(backend)
    vae = backend.pipelines.img2img.vae
    decode, seeds = vae.decode, []

    def nan_decode(latents, *args, **kwargs):
        seeds.append(backend._generator.initial_seed())
        return (torch.full((latents.shape[0], 3, SIZE, SIZE), float("nan")),)

    monkeypatch.setattr(vae, "decode", nan_decode)
    with pytest.raises(RenderError, match="NaN.*float32"):
        backend.generate(frame(index=5, image=start_image, steps=2, seed=40))
    assert seeds == [40, 41, 42, 43]

    outcomes = iter([nan_decode, decode])
    monkeypatch.setattr(vae, "decode", lambda *a, **k: next(outcomes)(*a, **k))
    recovered = backend.generate(frame(index=5, image=start_image, steps=2, seed=40))
    assert recovered.dtype == np.uint8 and recovered.shape == (SIZE, SIZE, 3)


# --- image prompt ---------------------------------------------------------------------------------

def test_image_prompt_influence(backend, start_image, image_prompt_file, monkeypatch):
    from transformers import CLIPVisionModelWithProjection

    request = dict(image=start_image, prompt="", steps=4, denoise=0.75)
    plain = begin(backend).generate(frame(**request))

    encodes = []
    forward = CLIPVisionModelWithProjection.forward
    monkeypatch.setattr(CLIPVisionModelWithProjection, "forward", lambda *a, **k: encodes.append(1) or forward(*a, **k))
    begin(backend, image_prompt_file)
    off = backend.generate(frame(**request, image_prompt_scale=0.0))
    full = backend.generate(frame(**request, image_prompt_scale=1.0))  # very high influence, empty prompt
    again = backend.generate(frame(**request, image_prompt_scale=1.0, seed=11))
    assert len(encodes) == 1  # embedded once per render, not per frame
    assert np.array_equal(off, plain)  # influence 0 is exactly no adapter
    assert np.abs(full.astype(int) - plain).max() > 10
    assert not np.array_equal(full, again)

    begin(backend)  # a render without an image prompt after one with it
    assert backend.pipelines.ip_adapter is None
    assert np.array_equal(backend.generate(frame(**request)), plain)


def test_image_prompt_on_a_text_to_image_first_frame(backend, image_prompt_file):
    plain = begin(backend).generate(frame(index=0, prompt="", steps=2))
    begin(backend, image_prompt_file)
    guided = backend.generate(frame(index=0, prompt="", steps=2, image_prompt_scale=1.0))
    unguided = backend.generate(frame(index=0, prompt="", steps=2, image_prompt_scale=1.0, cfg_scale=1.0))
    assert guided.shape == unguided.shape == (SIZE, SIZE, 3)
    assert not np.array_equal(guided, plain) and not np.array_equal(guided, unguided)


def test_style_and_layout_modes_scale_only_their_blocks(backend, start_image, image_prompt_file):
    request = frame(image=start_image, prompt="", steps=4, denoise=0.75, image_prompt_scale=1.0)
    frames, scales = {}, {}
    for mode in ("all", "style", "layout"):
        begin(backend, image_prompt_file, mode)
        frames[mode] = backend.generate(request)
        processors = backend.pipelines.img2img.unet.attn_processors
        scales[mode] = {name: proc.scale[0] for name, proc in processors.items() if hasattr(proc, "scale")}
    assert set(scales["all"].values()) == {1.0}
    assert [name for name, s in scales["style"].items() if s] == [
        "up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"]
    assert [name for name, s in scales["layout"].items() if s] == [
        "down_blocks.1.attentions.1.transformer_blocks.0.attn2.processor"]
    assert not np.array_equal(frames["style"], frames["all"])
    assert not np.array_equal(frames["layout"], frames["all"])
    assert not np.array_equal(frames["style"], frames["layout"])


def _fake_unet(down, up):
    def blocks(counts):
        return [SimpleNamespace(attentions=[0] * n) if n else SimpleNamespace() for n in counts]

    return SimpleNamespace(down_blocks=blocks(down), up_blocks=blocks(up))


def test_style_and_layout_blocks_for_sd15_and_sdxl():
    sd15 = _fake_unet(down=[2, 2, 2, 0], up=[0, 3, 3, 3])
    assert image_prompt_scales(sd15, "style", 0.8) == {"up": {"block_1": [0.0, 0.8, 0.0]}}
    assert image_prompt_scales(sd15, "layout", 0.8) == {"down": {"block_2": [0.0, 0.8]}}
    sdxl = _fake_unet(down=[0, 2, 2], up=[3, 3, 0])
    assert image_prompt_scales(sdxl, "style", 1.0) == {"up": {"block_0": [0.0, 1.0, 0.0]}}
    assert image_prompt_scales(sdxl, "layout", 1.0) == {"down": {"block_2": [0.0, 1.0]}}
    assert image_prompt_scales(sdxl, "all", 0.5) == 0.5


def test_unknown_image_prompt_mode(backend, image_prompt_file):
    with pytest.raises(SettingsError, match="image_prompt_mode.*all, style, layout"):
        begin(backend, image_prompt_file, "palette")


# --- samplers -------------------------------------------------------------------------------------

def test_every_sampler_builds_a_scheduler(backend):
    base = backend.pipelines.scheduler_config
    for name in SAMPLER_NAMES:
        if SAMPLERS[name].needs and SAMPLERS[name].needs not in _installed():
            with pytest.raises(SettingsError, match=f"pip install {SAMPLERS[name].needs}"):
                make_scheduler(name, base)
            continue
        scheduler = make_scheduler(name, base)
        assert type(scheduler).__name__ == SAMPLERS[name].scheduler
        scheduler.set_timesteps(4)
    assert make_scheduler("DPM++ 2M Karras", base).config.use_karras_sigmas is True
    assert make_scheduler("DPM++ 2M", base).config.use_karras_sigmas is False


def _installed():
    import importlib.util

    return {name for name in ("torchsde",) if importlib.util.find_spec(name)}


def test_sampler_names_and_aliases():
    assert check_sampler("euler A") == "Euler a"
    assert check_sampler("dpmpp_2m") == "DPM++ 2M"
    assert check_sampler("k_euler_ancestral") == "Euler a"
    expected = "sampler_schedule: unknown sampler 'Eular a' \\(did you mean 'Euler a'\\?\\).*DDIM"
    with pytest.raises(SettingsError, match=expected):
        check_sampler("Eular a", setting="sampler_schedule")
    with pytest.raises(SettingsError, match="no diffusers equivalent"):
        check_sampler("DPM fast")


# --- loading --------------------------------------------------------------------------------------

def test_model_loads_once_per_process(backend, tiny_sd_dir):
    assert models.load_pipeline(str(tiny_sd_dir)) is backend.pipelines
    assert models.load_pipeline(tiny_sd_dir, device="cpu", dtype="float32") is backend.pipelines


def test_missing_model_folder(tmp_path):
    with pytest.raises(SettingsError, match="nowhere.*does not exist"):
        models.load_pipeline(str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="no model_index.json"):
        models.load_pipeline(str(tmp_path))


def test_other_model_families_are_refused_before_loading(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    with pytest.raises(SettingsError, match="FluxPipeline.*Stable Diffusion 1.x / 2.x and SDXL"):
        models.load_pipeline(str(tmp_path))


@pytest.fixture
def connections(monkeypatch):
    """Every network connection attempted (each refused, as on a machine without network)."""
    attempts = []

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror("no network (test)")

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network unreachable (test)")
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_hub_id_offline_fails_at_once_naming_the_model(connections):
    with pytest.raises(RenderError) as caught:
        models.load_pipeline("deforum-tests/no-such-model")
    message = str(caught.value)
    assert "deforum-tests/no-such-model" in message and "offline" in message and "--model" in message
    assert connections == []  # no hub request, so no retries to wait for


def test_single_file_offline_needs_a_config(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"\0" * 16)
    with pytest.raises(SettingsError, match="model_config_dir"):
        models.load_pipeline(str(checkpoint))
    with pytest.raises(SettingsError, match="no model_index.json"):
        models.load_pipeline(str(checkpoint), config=str(tmp_path))


def test_empty_tokenizer_is_refused():
    """transformers can load an empty tokenizer offline instead of raising: the loader refuses it."""
    tokenizer = type("EmptyTokenizer", (), {"__len__": lambda self: 2, "model_max_length": int(1e30)})()
    with pytest.raises(RenderError, match="tokenizer loaded empty"):
        models._check_tokenizers("some/model", SimpleNamespace(tokenizer=tokenizer))


def test_missing_ip_adapter_files(backend, tmp_path, image_prompt_file):
    (tmp_path / "models").mkdir()
    lonely = DiffusersBackend(backend.model, ip_adapter=str(tmp_path))
    with pytest.raises(SettingsError, match="ip-adapter_sd15.safetensors"):
        begin(lonely, image_prompt_file)


def test_device_and_dtype_resolution():
    assert models.resolve_device("cpu") == "cpu"
    assert models.resolve_dtype("cpu") == torch.float32
    assert models.resolve_dtype("cuda") == torch.float16
    assert models.resolve_dtype("mps") == torch.float16
    assert models.resolve_dtype("cuda", "bf16") == torch.bfloat16
    with pytest.raises(SettingsError, match="dtype"):
        models.resolve_dtype("cpu", "float8")
    if not torch.cuda.is_available():
        assert models.resolve_device() == "cpu" or torch.backends.mps.is_available()
        with pytest.raises(SettingsError, match="CUDA"):
            models.resolve_device("cuda")


def test_unreachable_hub_fails_at_once_saying_so(monkeypatch, connections):
    """Without HF_HUB_OFFLINE and without a network, a hub id must not wait on a minute of retries:
    one reachability check, then the cache only."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    models._hub_reachable.cache_clear()
    try:
        with pytest.raises(RenderError, match="cannot be reached from this machine"):
            models.load_pipeline("someone/not-cached-model")
    finally:
        models._hub_reachable.cache_clear()
    assert len(connections) == 1  # the 3-second reachability probe, and no request after it
