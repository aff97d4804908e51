"""Weighted, long and composable prompts and LoRAs in the diffusers backend, on the tiny SD 1.x and
SDXL models loaded like a user's (32 x 32 frames, 2 steps)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from deforum_engine import render  # noqa: E402
from deforum_engine.backends.base import FrameRequest, RenderContext  # noqa: E402
from deforum_engine.backends.diffusers import DiffusersBackend  # noqa: E402
from deforum_engine.backends.lockstep import batch_key  # noqa: E402
from deforum_engine.backends.prompt_embeddings import split_chunks  # noqa: E402
from deforum_engine.errors import RenderError  # noqa: E402
from deforum_engine.prompts.weights import ActiveLora  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402

SIZE = 32
CHUNK = 77


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see tiny_models.one_torch_thread)."""


def started(model):
    backend = DiffusersBackend(str(model), safety_checker=False)
    backend.begin(RenderContext(width=SIZE, height=SIZE))
    return backend


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return started(tiny_sd_dir)


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir):
    return started(tiny_sdxl_dir)


@pytest.fixture(params=["sd", "sdxl"])
def backend(request):
    return request.getfixturevalue(request.param)


def frame(prompt, negative="blurry", seed=3, loras=(), **extra):
    return FrameRequest(index=0, image=None, prompt=prompt, negative_prompt=negative, seed=seed, steps=2,
                        cfg_scale=7.0, denoise=1.0, sampler="Euler a", loras=loras, **extra)


def encode_prompt(backend, prompt, negative):
    """What diffusers' own encode_prompt gives (the engine's embeddings before weights existed)."""
    pipe = backend.pipelines.txt2img
    with torch.no_grad():
        return pipe.encode_prompt(prompt=prompt, device="cpu", num_images_per_prompt=1,
                                  do_classifier_free_guidance=True, negative_prompt=negative)


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


# ------------------------------------------------------------------------------ plain prompts


def test_plain_prompts_keep_diffusers_embeddings_exactly(backend):
    encoded = backend._encoded("a red fox, 4k", "blurry")
    reference = encode_prompt(backend, "a red fox, 4k", "blurry")
    assert torch.equal(encoded["prompt_embeds"], reference[0])
    assert torch.equal(encoded["negative_prompt_embeds"], reference[1])
    if len(reference) == 4:  # SDXL: pooled too
        assert torch.equal(encoded["pooled_prompt_embeds"], reference[2])
        assert torch.equal(encoded["negative_pooled_prompt_embeds"], reference[3])


def test_the_a1111_path_agrees_with_diffusers_on_unweighted_text(backend):
    """Only weights, chunks and AND change embeddings: the same text through the weighted path is bit-equal."""
    assert same(backend._encode_weighted("a red fox, 4k", "blurry"), backend._encode_plain("a red fox, 4k", "blurry"))


# ------------------------------------------------------------------------------ attention weights


def test_a_weighted_word_is_scaled_and_the_chunk_mean_restored(backend):
    """(fox:1.5): the fox tokens' embeddings times 1.5, then the whole chunk rescaled to its old mean."""
    plain = backend._encoded("a red fox", "")["prompt_embeds"]
    weighted = backend._encoded("a red (fox:1.5)", "")["prompt_embeds"]
    encoder = backend._prompt_encoder
    ids, weights = encoder.chunk_ids(encoder.encoders[0][0], [[("a red ", 1.0), ("fox", 1.5)]])
    # the tiny vocabulary spells words out: <start> a r e d f o x <end> ...
    assert weights[0].tolist() == [1.0] * 5 + [1.5] * 3 + [1.0] * (CHUNK - 8)
    expected = plain * weights[0, :, None]
    expected = expected * (plain.mean() / expected.mean())
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert not torch.allclose(weighted, plain)


def test_weights_reach_the_frames(backend):
    plain = backend.generate(frame("a red fox"))
    assert not np.array_equal(backend.generate(frame("a red (fox:1.6)")), plain)
    assert not np.array_equal(backend.generate(frame("((a red fox))")), plain)
    assert not np.array_equal(backend.generate(frame("a red fox", negative="[blurry]")), plain)
    assert np.array_equal(backend.generate(frame("a red fox")), plain)


# ------------------------------------------------------------------------------ long prompts


def test_words_past_token_77_change_the_embedding(backend):
    """Today's diffusers path would truncate both to the same 77 tokens; chunks keep every word."""
    head = "red " * 26  # 78 tokens: the tiny vocabulary spells words out (r e d</w>)
    cat, dog = backend._encoded(head + "cat", "blurry"), backend._encoded(head + "dog", "blurry")
    assert cat["prompt_embeds"].shape[1] == dog["prompt_embeds"].shape[1] == 2 * CHUNK
    assert torch.equal(cat["prompt_embeds"][:, :CHUNK], dog["prompt_embeds"][:, :CHUNK])
    assert not torch.allclose(cat["prompt_embeds"][:, CHUNK:], dog["prompt_embeds"][:, CHUNK:])
    assert cat["negative_prompt_embeds"].shape == cat["prompt_embeds"].shape  # negative padded to the same length
    assert not np.array_equal(backend.generate(frame(head + "cat")), backend.generate(frame(head + "dog")))


def test_a_long_negative_pads_the_prompt(sd):
    encoded = sd._encoded("a fox", "ugly " * 30)
    assert encoded["prompt_embeds"].shape[1] == encoded["negative_prompt_embeds"].shape[1] == 2 * CHUNK
    empty = sd._prompt_encoder.empty
    assert torch.equal(encoded["prompt_embeds"][:, CHUNK:], empty)  # padded with the empty prompt


def test_chunks_break_after_a_close_comma_and_at_break():
    stream = [(1, 1.0)] * 60 + [(0, 1.0)] + [(1, 1.0)] * 20  # comma (id 0) at position 60
    assert [len(chunk) for chunk in split_chunks(stream, 75, comma=0)] == [61, 20]  # 75 - 60 <= 20: break after it
    far = [(1, 1.0)] * 50 + [(0, 1.0)] + [(1, 1.0)] * 30
    assert [len(chunk) for chunk in split_chunks(far, 75, comma=0)] == [75, 6]  # too far back: a plain cut
    assert [len(chunk) for chunk in split_chunks([(1, 1.0), (None, 1.0), (1, 1.0)], 75, comma=0)] == [1, 1]
    assert [len(chunk) for chunk in split_chunks([], 75, comma=0)] == [0]


def test_break_starts_a_new_chunk(sd):
    encoded = sd._encoded("a red fox BREAK a blue whale", "")
    assert encoded["prompt_embeds"].shape[1] == 2 * CHUNK
    alone = sd._encoded("a blue whale", "")["prompt_embeds"]
    assert torch.equal(encoded["prompt_embeds"][:, CHUNK:], alone)  # the second chunk is encoded on its own


# ------------------------------------------------------------------------------ AND


def test_and_weights_blend_sub_prompt_embeddings(backend):
    cat, dog = backend._encoded("a cat", "blurry"), backend._encoded("a dog", "blurry")
    assert same(backend._encoded("a cat:1 AND a dog:0", "blurry"), cat)  # one-hot weights: exactly that prompt
    assert same(backend._encoded("a cat:0 AND a dog:1", "blurry"), dog)
    half = backend._encoded("a cat:0.5 AND a dog:0.5", "blurry")
    for name in cat:
        if name.startswith("negative"):
            assert torch.equal(half[name], cat[name])
        else:
            assert torch.allclose(half[name], 0.5 * cat[name] + 0.5 * dog[name], atol=1e-6)
    # Weights not summing to 1 act relative to the negative prompt, as A1111's noise maths does
    double = backend._encoded("a cat:1.5", "blurry")
    assert torch.allclose(double["prompt_embeds"],
                          cat["negative_prompt_embeds"] + 1.5 * (cat["prompt_embeds"] - cat["negative_prompt_embeds"]),
                          atol=1e-5)


def test_sub_prompts_are_encoded_once_across_changing_weights(sd, monkeypatch):
    calls = []
    original = sd.pipelines.txt2img.text_encoder.forward
    monkeypatch.setattr(sd.pipelines.txt2img.text_encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    for weight in np.linspace(0, 1, 11):
        sd._encoded(f"a lighthouse:{weight:g} AND a storm at sea:{1 - weight:g}", "grey")
    assert len(calls) == 3  # the two sub-prompts and the negative, once each


def test_prompt_blending_across_lengths(sd):
    start = sd.generate(frame("a forest"))
    long = "tall pine trees " * 6  # two chunks
    halfway = sd.generate(frame("a forest", blend_prompt=long, blend_negative_prompt="blurry", blend_weight=0.5))
    assert halfway.shape == start.shape and not np.array_equal(halfway, start)


# ------------------------------------------------------------------------------ lockstep batches


def test_lockstep_batches_weighted_prompts_and_splits_lengths(backend, monkeypatch):
    requests = [frame("a red fox", seed=1), frame("(a red fox:1.3) " + "tall " * 20, seed=2),
                frame("a cat:0.3 AND a dog:0.7", seed=3), frame("[a blue whale]", seed=4)]
    assert len({batch_key(request) for request in requests}) == 1  # the lockstep scheduler groups them together
    pipe = type(backend.pipelines.txt2img)
    calls, real = [], pipe.__call__
    monkeypatch.setattr(pipe, "__call__", lambda self, **kw: calls.append(kw["prompt_embeds"].shape) or real(self, **kw))
    batched = backend.generate_many(requests)
    # One call for the three one-chunk prompts, one for the two-chunk prompt: padding would change its partners
    assert sorted((shape[0], shape[1]) for shape in calls) == [(1, 2 * CHUNK), (3, CHUNK)]
    for request, image in zip(requests, batched):
        solo = backend.generate(request)
        assert np.abs(solo.astype(float) - image).mean() < 1.0  # batched arithmetic: equal up to the last bits


# ------------------------------------------------------------------------------ LoRAs


@pytest.fixture(scope="module")
def lora_model_dir(tiny_sd_dir, tmp_path_factory):
    """A copy of the tiny SD folder: its own cached pipelines, so LoRAs never reach other tests' model."""
    return Path(shutil.copytree(tiny_sd_dir, tmp_path_factory.mktemp("lora-model") / "tiny-sd"))


@pytest.fixture(scope="module")
def lora_backend(lora_model_dir):
    return started(lora_model_dir)


def lora(folder, name, text_encoder=1.0, unet=None):
    return ActiveLora(str(folder / f"{name}.safetensors"), text_encoder, text_encoder if unet is None else unet)


def test_a_lora_changes_frames_and_switches_off_exactly(lora_backend, tiny_lora_dir):
    base = lora_backend.generate(frame("a red fox"))
    styled = lora_backend.generate(frame("a red fox", loras=(lora(tiny_lora_dir, "style", 0.8),)))
    stronger = lora_backend.generate(frame("a red fox", loras=(lora(tiny_lora_dir, "style", 1.6),)))
    assert np.abs(styled.astype(float) - base).mean() > 1.0
    assert not np.array_equal(styled, stronger)
    assert np.array_equal(lora_backend.generate(frame("a red fox")), base)  # off again: the plain model
    pipes = lora_backend.pipelines
    assert list(pipes.loras) == [str(tiny_lora_dir / "style.safetensors")]  # loaded once


def test_lora_text_encoder_weight_changes_the_embeddings(lora_backend, tiny_lora_dir):
    lora_backend.generate(frame("a red fox"))
    plain = lora_backend._encoded("a red fox", "blurry")
    lora_backend._use_loras((lora(tiny_lora_dir, "style", 0.0, 1.0),))  # UNet only: same text embeddings
    assert same(lora_backend._encoded("a red fox", "blurry"), plain)
    lora_backend._use_loras((lora(tiny_lora_dir, "style", 1.0, 0.0),))  # text encoder only
    assert not torch.allclose(lora_backend._encoded("a red fox", "blurry")["prompt_embeds"], plain["prompt_embeds"])
    lora_backend._use_loras(())
    assert same(lora_backend._encoded("a red fox", "blurry"), plain)


def test_two_loras_and_batches_with_different_loras(lora_backend, tiny_lora_dir):
    both = (lora(tiny_lora_dir, "style", 0.5), lora(tiny_lora_dir, "unet_only", 1.0))
    requests = [frame("a red fox", seed=1), frame("a red fox", seed=1, loras=both),
                frame("a red fox", seed=1, loras=both[1:])]
    images = lora_backend.generate_many(requests)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    for request, image in zip(requests, images):
        assert np.abs(lora_backend.generate(request).astype(float) - image).mean() < 1.0


def test_a_lora_for_another_model_fails_naming_the_file(lora_backend, tmp_path):
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 999),
               "lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight": torch.zeros(64, 4)},
              str(tmp_path / "wrong.safetensors"))
    with pytest.raises(RenderError, match=r"LoRA .*wrong.safetensors could not be loaded into this sd model"):
        lora_backend.generate(frame("a red fox", loras=(lora(tmp_path, "wrong"),)))
    lora_backend._use_loras(())


def test_render_with_backtick_and_prompts_matches_keyed_prompts(tiny_sd_dir, tmp_path):
    """`a cat:1 AND a dog:0` is exactly "a cat": switching by backtick maths renders like switching by keys."""
    base = {"W": 64, "H": 64, "seed": 5, "steps": 2, "max_frames": 4, "strength_schedule": "0:(0.5)",
            "video_preset": "ultrafast", "safety_checker": False, "model": str(tiny_sd_dir)}
    maths = render(validate_settings({**base, "prompts": {
        "0": "a cat:`where(t<2, 1, 0)` AND a dog:`where(t>=2, 1, 0)`"}}), out=tmp_path / "maths", quiet=True)
    keyed = render(validate_settings({**base, "prompts": {"0": "a cat", "2": "a dog"}}), out=tmp_path / "keyed",
                   quiet=True)
    pictures = [sorted((result.folder / "frames").glob("*.png")) for result in (maths, keyed)]
    assert [p.read_bytes() for p in pictures[0]] == [p.read_bytes() for p in pictures[1]]
    assert len(pictures[0]) == 4


def test_render_with_a_lora_tag_changes_the_frames(lora_model_dir, tiny_lora_dir, tmp_path):
    base = {"W": 64, "H": 64, "seed": 5, "steps": 2, "max_frames": 2, "video_preset": "ultrafast",
            "safety_checker": False, "model": str(lora_model_dir), "lora_dirs": [str(tiny_lora_dir)]}
    plain = render(validate_settings({**base, "prompts": {"0": "a red fox"}}), out=tmp_path / "plain", quiet=True)
    styled = render(validate_settings({**base, "prompts": {"0": "a red fox <lora:style:0.8>"}}),
                    out=tmp_path / "styled", quiet=True)
    first = [sorted((r.folder / "frames").glob("*.png"))[0].read_bytes() for r in (plain, styled)]
    assert first[0] != first[1]
