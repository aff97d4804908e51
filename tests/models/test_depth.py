"""Depth models for 3D mode: Deforum's names, loading tiny models for real, depth -> z, steady depth."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from deforum_engine.models.depth import (
    ALGORITHMS,
    EQUALISATION_BINS,
    DepthSubstitutionWarning,
    _warn_substitution,
    check_depth_models,
    depth_choice,
    depth_image,
    depth_to_z,
    find_algorithm,
    legacy_z,
    load_depth_estimator,
    load_depth_model,
)
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.config.settings import validate_settings
from deforum_engine.config.files import load_settings


@pytest.fixture(autouse=True)
def few_threads(one_torch_thread):
    yield


def frame(height=72, width=120, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


def settings(**values):
    return validate_settings({"animation_mode": "3D", **values})


def deforum_equalised(raw: np.ndarray) -> np.ndarray:
    """Deforum's prepare_depth_tensor, in plain numpy: min-max to 0..1, then np.histogram / np.interp."""
    d = (raw - raw.min()) / (raw.max() - raw.min())
    counts, edges = np.histogram(d, bins=1024, range=(0, 1))
    cdf = counts.cumsum() / counts.sum()
    return np.interp(d, edges[:-1], cdf)


# --- names -> models --------------------------------------------------------------------------------


def test_every_deforum_algorithm_has_a_model():
    for name in ("Midas-3-Hybrid", "Midas-3.1-BeitLarge", "Zoe", "Depth-Anything-V2-Small", "Leres", "AdaBins",
                 "Midas+AdaBins (old)", "Zoe+AdaBins (old)"):
        assert find_algorithm(name).name == name
    assert find_algorithm("midas-3-HYBRID").model == "Intel/dpt-large"  # what Deforum's "Hybrid" really loads
    assert find_algorithm("depth-anything").name == "Depth-Anything-V2-Small"  # Deforum Studio's spelling
    assert len(ALGORITHMS) == 8


def test_unknown_algorithm_names_the_choices():
    with pytest.raises(SettingsError, match=r"depth_algorithm: 'Marigold' is not one of .*Midas-3-Hybrid.*depth_model"):
        find_algorithm("Marigold")
    with pytest.raises(SettingsError, match=r"depth_algorithm.*must be one of .*'Midas-3-Hybrid'.*got 'Marigold'"):
        settings(depth_algorithm="Marigold")  # checked with the settings, before any model loads


def test_substitutes_warn_once_and_depth_model_overrides(tiny_dpt_dir):
    _warn_substitution.cache_clear()
    with pytest.warns(DepthSubstitutionWarning, match="Leres: LeReS .* Intel/zoedepth-nyu-kitti .* stands in"):
        choice = depth_choice(settings(depth_algorithm="Leres"))
    assert choice.model == "Intel/zoedepth-nyu-kitti"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        depth_choice(settings(depth_algorithm="Leres"))  # once per process
        chosen = depth_choice(settings(depth_algorithm="AdaBins", depth_model=str(tiny_dpt_dir)))
    assert chosen.model == str(tiny_dpt_dir)


def test_old_combos_blend_with_adabins_only_below_weight_one():
    _warn_substitution.cache_clear()
    with pytest.warns(DepthSubstitutionWarning, match="AdaBins"):
        blended = depth_choice(settings(depth_algorithm="Midas+AdaBins (old)", midas_weight=0.2))
    assert (blended.model, blended.adabins_model, blended.legacy) == ("Intel/dpt-large", "Intel/zoedepth-nyu", True)
    alone = depth_choice(settings(depth_algorithm="Zoe+AdaBins (old)", midas_weight=1.0))
    assert alone.adabins_model is None and alone.legacy
    assert "legacy" in alone.describe()


def test_summary_line_says_model_and_normalisation():
    assert depth_choice(settings()).describe() == (
        "depth of Midas-3-Hybrid (Intel/dpt-large), steady normalisation (running histogram)")
    assert "per-frame normalisation (Deforum's)" in depth_choice(settings(depth_normalization="per_frame")).describe()


def test_depth_settings_are_checked_and_paths_resolved(tmp_path):
    assert settings().depth_normalization == "steady"
    with pytest.raises(SettingsError, match="depth_normalization"):
        settings(depth_normalization="global")
    (tmp_path / "depth").mkdir()
    (tmp_path / "job.toml").write_text('depth_model = "./depth"\n')
    assert load_settings(tmp_path / "job.toml").depth_model == str((tmp_path / "depth").resolve())
    with pytest.raises(SettingsError, match="depth_model: .*missing does not exist"):
        depth_choice(settings(depth_model=str(tmp_path / "missing")))


# --- offline checks --------------------------------------------------------------------------------------


def test_a_model_missing_offline_is_an_error_naming_it_and_the_folder_way():
    with pytest.raises(RenderError, match=r"'Intel/dpt-large' is not in the local Hugging Face cache .*offline"
                                          r".*set depth_model .* local folder"):
        check_depth_models(depth_choice(settings()))


def test_a_folder_without_its_processor_config_is_refused(tiny_dpt_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dpt_dir, broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(SettingsError, match="lacks preprocessor_config.json"):
        check_depth_models(depth_choice(settings(depth_model=str(broken))))


# --- loading and estimating with tiny models ------------------------------------------------------------


@pytest.mark.parametrize("fixture, metric", [("tiny_dpt_dir", False), ("tiny_depth_anything_dir", False),
                                             ("tiny_metric_depth_anything_dir", True), ("tiny_zoe_dir", True)])
def test_tiny_models_load_and_give_z_at_frame_size(fixture, metric, request):
    folder = request.getfixturevalue(fixture)
    estimator = load_depth_estimator(depth_choice(settings(depth_model=str(folder))), device="cpu")
    assert estimator.model.metric is metric
    assert load_depth_model(str(folder), device="cpu") is estimator.model  # loaded once per process
    z, state = estimator.estimate(frame(72, 120))
    assert z.shape == (72, 120) and z.dtype == np.float32
    assert z.min() == pytest.approx(1.0, abs=1e-3) and z.max() == pytest.approx(2.0, abs=1e-3)
    assert state is not None and state.histogram.shape == (EQUALISATION_BINS,)


def test_inverse_depth_puts_the_models_largest_values_nearest(tiny_dpt_dir):
    estimator = load_depth_estimator(depth_choice(settings(depth_model=str(tiny_dpt_dir))), device="cpu")
    image = frame(64, 64, seed=3)
    raw = estimator.model.predict(image).numpy()
    z, _ = estimator.estimate(image)
    nearest = np.unravel_index(np.argmax(raw), raw.shape)
    farthest = np.unravel_index(np.argmin(raw), raw.shape)
    assert z[nearest] == pytest.approx(1.0, abs=1e-3) and z[farthest] == pytest.approx(2.0, abs=1e-2)


def test_zoe_output_is_cut_from_its_padding_to_the_frame(tiny_zoe_dir):
    model = load_depth_model(str(tiny_zoe_dir), device="cpu")
    assert model.padded
    assert tuple(model.predict(frame(50, 90)).shape) == (50, 90)


# --- depth -> z -------------------------------------------------------------------------------------------


def random_depth(seed=0, shape=(48, 64)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.gamma(2.0, 3.0, shape).astype(np.float32))


def test_per_frame_normalisation_is_deforums():
    raw = random_depth()
    z, state = depth_to_z(raw, metric=False, normalization="per_frame")
    np.testing.assert_allclose(z.numpy(), 2.0 - deforum_equalised(raw.numpy().astype(np.float64)), atol=2e-4)
    assert state is None
    z_metric, _ = depth_to_z(raw, metric=True, normalization="per_frame")
    np.testing.assert_allclose(z_metric.numpy() + z.numpy(), 3.0, atol=1e-5)  # 1 + d versus 2 - d


def test_steady_starts_as_deforum_and_ignores_the_models_scale():
    raw = random_depth()
    first, state = depth_to_z(raw, metric=False, normalization="steady")
    per_frame, _ = depth_to_z(raw, metric=False, normalization="per_frame")
    torch.testing.assert_close(first, per_frame)
    rescaled, _ = depth_to_z(raw * 3.0 + 5.0, metric=False, normalization="steady", steady=state)
    torch.testing.assert_close(rescaled, first, atol=1e-5, rtol=0)  # a relative model's gain and shift change nothing


def flickering_scene(frames: int) -> list[torch.Tensor]:
    """A near disc over a far background whose model output flickers: the disc grows and shrinks."""
    rows, cols = np.mgrid[0:64, 0:64]
    maps = []
    for index in range(frames):
        radius = 14 if index % 2 else 22
        background = 1.0 + 0.02 * cols  # inverse depth: a gentle slope, far
        disc = np.where((rows - 32) ** 2 + (cols - 32) ** 2 < radius**2, 10.0, 0.0)
        maps.append(torch.from_numpy((background + disc).astype(np.float32)))
    return maps


def test_steady_depth_flickers_far_less_than_per_frame():
    corner = (slice(0, 4), slice(56, 64))  # far background, never covered by the disc
    swings = {}
    for mode in ("per_frame", "steady"):
        state, corners = None, []
        for raw in flickering_scene(12):
            z, state = depth_to_z(raw, metric=False, normalization=mode, steady=state)
            corners.append(float(z[corner].mean()))
        swings[mode] = np.abs(np.diff(corners[6:])).mean()  # once the running histogram has settled
    assert swings["per_frame"] > 0.05
    assert swings["steady"] < 0.3 * swings["per_frame"]


def test_a_still_scene_gives_the_same_z_in_both_modes():
    state, raw = None, random_depth(seed=4)
    for _ in range(3):
        steady, state = depth_to_z(raw, metric=False, normalization="steady", steady=state)
    per_frame, _ = depth_to_z(raw, metric=False, normalization="per_frame")
    torch.testing.assert_close(steady, per_frame, atol=1e-5, rtol=0)


def test_flat_or_broken_maps_give_flat_depth_and_keep_the_state():
    _, state = depth_to_z(random_depth(), metric=False, normalization="steady")
    for broken in (torch.full((8, 8), 3.0), torch.tensor([[1.0, float("nan")], [2.0, 3.0]])):
        z, kept = depth_to_z(broken, metric=False, normalization="steady", steady=state)
        assert z is None and kept is state


def test_legacy_blend_is_deforums_formula():
    midas = torch.tensor([[12.0, 31.0], [50.0, 2.0]])
    adabins = torch.tensor([[1.5, 2.5], [4.0, 9.0]])
    z = legacy_z(midas, adabins, midas_weight=0.2)
    torch.testing.assert_close(z, 0.2 * (50 - midas) / 19 + 0.8 * adabins)
    torch.testing.assert_close(legacy_z(midas), midas)


def test_depth_images_are_near_white():
    z = np.array([[1.0, 1.5], [2.0, 1.25]], dtype=np.float32)
    np.testing.assert_array_equal(depth_image(z, 2, 2), [[255, 128], [0, 191]])
    assert depth_image(None, 2, 3).tolist() == [[255] * 3] * 2
    legacy = depth_image(np.array([[3.0, 7.0]], dtype=np.float32), 1, 2)
    assert legacy.tolist() == [[255, 0]]


def test_tiny_processor_configs_look_like_the_hubs(tiny_dpt_dir, tiny_depth_anything_dir):
    dpt = json.loads((tiny_dpt_dir / "preprocessor_config.json").read_text())
    assert dpt["image_processor_type"] == "DPTImageProcessor" and dpt["keep_aspect_ratio"] is False
    anything = json.loads((tiny_depth_anything_dir / "preprocessor_config.json").read_text())
    assert anything["ensure_multiple_of"] == 14 and anything["keep_aspect_ratio"] is True
