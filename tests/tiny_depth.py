"""Tiny random-weight depth models for tests, saved as transformers writes hub repos.

A pytest plugin (registered in conftest.py). Each builder saves a model (config.json, weights)
and its image processor (preprocessor_config.json) with save_pretrained, in the shapes of the real
ones at a fraction of the size (about 130-150k parameters), so tests load them through
`deforum_engine.depth.load_depth_model(folder)`, the path users take:
- DPT (Intel/dpt-large's layout: square 64 x 64 input, mean/std 0.5, inverse depth);
- Depth Anything (DINOv2 backbone, aspect kept, sides a multiple of 14, ImageNet mean/std;
  relative (inverse) depth, or its metric head);
- ZoeDepth (BEiT backbone, metric bins, the processor's reflection padding).

Default initialisation makes these models print almost the same depth everywhere, which depth
normalisation would call flat; the builders add seeded noise to the weights so the random maps
vary over the image. The weights are the same in every session.
"""
from __future__ import annotations

from pathlib import Path

import pytest

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _seeded_noisy(build, scale: float = 0.05):
    """Build a model after torch.manual_seed(0) and add seeded noise to every weight."""
    import torch

    torch.manual_seed(0)
    model = build()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)
    return model.eval()


def build_tiny_dpt(folder: Path) -> Path:
    """A DPT (ViT) depth model, Intel/dpt-large's processor settings at 64 x 64."""
    from transformers import DPTConfig, DPTForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    config = DPTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                       intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16)
    _seeded_noisy(lambda: DPTForDepthEstimation(config)).save_pretrained(str(folder))
    DPTImageProcessorPil(size={"height": 64, "width": 64}, keep_aspect_ratio=False, image_mean=[0.5] * 3,
                         image_std=[0.5] * 3).save_pretrained(str(folder))
    return folder


def build_tiny_depth_anything(folder: Path, metric: bool = False) -> Path:
    """A Depth Anything model (DINOv2 backbone), processor as Depth-Anything-V2-Small-hf's at 56 px."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=37, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    extra = {"depth_estimation_type": "metric", "max_depth": 20} if metric else {}
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, **extra)
    _seeded_noisy(lambda: DepthAnythingForDepthEstimation(config)).save_pretrained(str(folder))
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(str(folder))
    return folder


def build_tiny_zoe(folder: Path) -> Path:
    """A ZoeDepth model (BEiT backbone, one metric bin configuration), its processor padding the image."""
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation
    from transformers.models.zoedepth.image_processing_pil_zoedepth import ZoeDepthImageProcessorPil

    backbone = BeitConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                          intermediate_size=37, use_relative_position_bias=True, reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = ZoeDepthConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, bottleneck_features=16,
        num_relative_features=8, bin_embedding_dim=8, num_attractors=[4, 4, 2, 1], num_patch_transformer_layers=1,
        patch_transformer_hidden_size=16, patch_transformer_intermediate_size=16,
        patch_transformer_num_attention_heads=2,
        bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}],
    )
    _seeded_noisy(lambda: ZoeDepthForDepthEstimation(config)).save_pretrained(str(folder))
    ZoeDepthImageProcessorPil(size={"height": 64, "width": 64}, keep_aspect_ratio=True, ensure_multiple_of=16,
                              do_pad=True, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_dpt_dir(tmp_path_factory) -> Path:
    """A tiny DPT depth model folder (inverse depth, like MiDaS)."""
    return build_tiny_dpt(tmp_path_factory.mktemp("tiny-dpt"))


@pytest.fixture(scope="session")
def tiny_depth_anything_dir(tmp_path_factory) -> Path:
    """A tiny Depth Anything folder (relative, inverse depth)."""
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-anything"))


@pytest.fixture(scope="session")
def tiny_metric_depth_anything_dir(tmp_path_factory) -> Path:
    """A tiny Depth Anything folder with the metric head (distance)."""
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-anything-metric"), metric=True)


@pytest.fixture(scope="session")
def tiny_zoe_dir(tmp_path_factory) -> Path:
    """A tiny ZoeDepth folder (metric depth, padded input)."""
    return build_tiny_zoe(tmp_path_factory.mktemp("tiny-zoe"))
