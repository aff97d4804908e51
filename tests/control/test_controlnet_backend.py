"""ControlNet units in the diffusers backend, with a tiny random ControlNet loaded through the real code."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from deforum_engine.models import controlnet as controlnets  # noqa: E402
from deforum_engine.backends.base import ControlInput, FrameRequest, RenderContext  # noqa: E402
from deforum_engine.backends.controlnet import residual_scales  # noqa: E402
from deforum_engine.backends.diffusers import DiffusersBackend  # noqa: E402
from deforum_engine.control.preprocess import canny  # noqa: E402
from deforum_engine.errors import SettingsError  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (see tiny_models.one_torch_thread)."""


@pytest.fixture(scope="module")
def sources(tiny_controlnet_dir):
    return {"folder": str(tiny_controlnet_dir / "folder"), "file": str(tiny_controlnet_dir / "controlnet.safetensors")}


@pytest.fixture(scope="module")
def backend(tiny_sd_dir, sources):
    backend = DiffusersBackend(str(tiny_sd_dir))
    backend.begin(RenderContext(width=SIZE, height=SIZE,
                                controlnets=(("cn_1_model", sources["folder"]), ("cn_2_model", sources["file"]))))
    return backend


@pytest.fixture(scope="module")
def start_image():
    return np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def edges():
    picture = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    picture[8:24, 8:24] = 255
    return canny(picture, 100, 200)


def unit(model, weight=1.0, start=0.0, end=1.0, mode="Balanced", image=None, name="cn_1"):
    return ControlInput(unit=name, model=model, image=edges() if image is None else image, weight=weight,
                        guidance_start=start, guidance_end=end, control_mode=mode)


def frame(image=None, control=(), seed=7, steps=4, denoise=0.5, **extra):
    return FrameRequest(index=1, image=image, prompt="a red fox", negative_prompt="blurry", seed=seed, steps=steps,
                        cfg_scale=extra.pop("cfg_scale", 7.0), denoise=1.0 if image is None else denoise,
                        sampler=extra.pop("sampler", "Euler a"), control=tuple(control), **extra)


class CallCounter:
    """Counts forward calls of a ControlNet (a forward hook)."""

    def __init__(self, net):
        self.calls = 0
        self.handle = net.register_forward_hook(lambda *args: self._count())

    def _count(self):
        self.calls += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_the_folder_and_the_single_files_load_the_same_weights(backend, sources, tiny_controlnet_dir):
    folder, single = backend._control.nets[sources["folder"]], backend._control.nets[sources["file"]]
    original = controlnets.load_controlnet(str(tiny_controlnet_dir / "control_original.safetensors"),
                                           backend.pipelines, "cn_3_model")  # the A1111 extension's key names
    assert folder is not single
    for other in (single, original):
        assert folder.state_dict().keys() == other.state_dict().keys()
        assert all(torch.equal(a, other.state_dict()[k]) for k, a in folder.state_dict().items())
    assert controlnets.load_controlnet(sources["folder"], backend.pipelines, "cn_1_model") is folder  # cached


def test_a_canny_unit_changes_img2img_and_text_to_image_frames(backend, sources, start_image):
    for image in (start_image, None):
        plain = backend.generate(frame(image))
        controlled = backend.generate(frame(image, [unit(sources["folder"])]))
        assert np.array_equal(plain, backend.generate(frame(image)))  # the plain pipeline is untouched
        assert np.abs(controlled.astype(int) - plain).mean() > 1.0
        assert np.array_equal(controlled, backend.generate(frame(image, [unit(sources["folder"])])))


def test_the_guidance_window_sets_the_number_of_controlnet_calls(backend, sources, start_image):
    net = backend._control.nets[sources["folder"]]
    counts = {}
    for window in ((0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.25, 0.5)):
        with CallCounter(net) as counter:
            backend.generate(frame(start_image, [unit(sources["folder"], start=window[0], end=window[1])], steps=8,
                                   denoise=1.0))
        counts[window] = counter.calls
    assert counts == {(0.0, 1.0): 8, (0.0, 0.5): 4, (0.5, 1.0): 4, (0.25, 0.5): 2}


def test_two_units_both_act(backend, sources, start_image):
    blank = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    first = unit(sources["folder"])
    second = unit(sources["file"], image=blank, name="cn_2")
    nets = backend._control.nets
    with CallCounter(nets[sources["folder"]]) as a, CallCounter(nets[sources["file"]]) as b:
        both = backend.generate(frame(start_image, [first, second]))
    assert a.calls == b.calls == 3  # int(0.5 * 4) + 1 steps each
    one = backend.generate(frame(start_image, [first]))
    assert not np.array_equal(both, one)


def test_control_modes(backend, sources, start_image):
    frames = {mode: backend.generate(frame(start_image, [unit(sources["folder"], mode=mode)]))
              for mode in ("Balanced", "My prompt is more important", "ControlNet is more important")}
    assert len({image.tobytes() for image in frames.values()}) == 3
    scales = residual_scales(13)
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.825 ** 12)


def test_lockstep_batches_frames_with_the_same_units(backend, sources, start_image):
    other = np.roll(start_image, 5, axis=1)
    requests = [frame(start_image, [unit(sources["folder"])]), frame(other, [unit(sources["folder"])], seed=9),
                frame(start_image, [unit(sources["folder"], weight=0.5)]), frame(other)]
    batched = backend.generate_many(requests)
    solo = [backend.generate(request) for request in requests]
    for together, alone in zip(batched, solo):
        assert np.abs(together.astype(int) - alone).max() <= 2


def test_a_controlnet_of_another_family_is_refused_before_loading(tmp_path, backend):
    folder = tmp_path / "sdxl-controlnet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 2048}))
    with pytest.raises(SettingsError, match=r"cn_3_model: the ControlNet .*sdxl-controlnet is for SDXL .*2048"
                                            r".* but the model .* is a 32-wide model"):
        controlnets.check_family(controlnets.controlnet_width(str(folder), "cn_3_model"), 32, "cn_3_model",
                                 str(folder), "tiny")
    with pytest.raises(SettingsError, match="cn_3_model: .*is for SDXL"):
        controlnets.load_controlnet(str(folder), backend.pipelines, "cn_3_model")


def test_a_missing_controlnet_is_named(tmp_path):
    with pytest.raises(SettingsError, match="cn_2_model: the ControlNet 'nobody/no-such-controlnet' is not in the "
                                            "local Hugging Face cache and the hub is offline"):
        controlnets.controlnet_width(controlnets.resolve_controlnet("nobody/no-such-controlnet", "cn_2_model"),
                                     "cn_2_model")
    with pytest.raises(SettingsError, match="cn_1_model: .*missing.safetensors does not exist"):
        controlnets.resolve_controlnet(str(tmp_path / "missing.safetensors"), "cn_1_model")


def test_sdxl_units_text_to_image_and_img2img(tiny_sdxl_dir, tmp_path, start_image):
    from diffusers import ControlNetModel

    sdxl = DiffusersBackend(str(tiny_sdxl_dir))
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(sdxl.pipelines.txt2img.unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            module.weight.normal_(0, 0.3)
    net.save_pretrained(str(tmp_path / "sdxl-controlnet"))
    source = str(tmp_path / "sdxl-controlnet")
    assert controlnets.controlnet_width(source, "cn_1_model") == 64 == controlnets.unet_width(sdxl.pipelines)
    sdxl.begin(RenderContext(width=SIZE, height=SIZE, controlnets=(("cn_1_model", source),)))
    for image in (None, start_image):
        plain = sdxl.generate(frame(image))
        controlled = sdxl.generate(frame(image, [unit(source, mode="ControlNet is more important")]))
        assert controlled.shape == (SIZE, SIZE, 3) and np.abs(controlled.astype(int) - plain).mean() > 0.5


def test_a_mask_holds_the_masked_out_latents_on_the_prepared_frame(backend, start_image, sources):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[:, SIZE // 2:] = True

    def spread(control=(), **values):
        a, b = (backend.generate(frame(start_image, control, seed=seed, denoise=0.9, **values)).astype(int)
                for seed in (1, 2))
        return np.abs(a - b)[:, :8].mean(), np.abs(a - b)[:, -8:].mean()

    held_left, held_right = spread(mask=mask)
    free_left, free_right = spread()
    assert held_left < free_left / 4 and held_right > free_left / 4  # the kept half no longer depends on the seed
    unit_left, _ = spread([unit(sources["folder"])], mask=mask)
    assert unit_left < free_left / 4  # with a ControlNet unit too


def test_control_modes_scale_and_place_the_residuals_as_the_extension_does(backend, sources):
    from deforum_engine.backends.controlnet import UnitControlNets

    net = backend._control.nets[sources["folder"]]
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
    control = [torch.rand(2, 3, SIZE, SIZE)]
    residuals = {}
    for mode in ("Balanced", "My prompt is more important", "ControlNet is more important"):
        down, mid = UnitControlNets([net], [mode])(sample, 10, text, control, [0.8])
        residuals[mode] = [*down, mid]
    balanced, soft, control_first = residuals.values()
    scales = residual_scales(len(balanced))
    assert len(balanced) == 7 and balanced[-1].abs().sum() > 0  # the tiny net: 6 down residuals and the middle
    for plain, faded, prompt_only, scale in zip(balanced, soft, control_first, scales):
        assert torch.allclose(faded, plain * scale)
        assert torch.equal(prompt_only[:1], torch.zeros_like(plain[:1])) and torch.allclose(prompt_only[1:], plain[1:] * scale)
    assert UnitControlNets([net], ["Balanced"])(sample, 10, text, control, [0.0]) == (None, None)  # outside its window
