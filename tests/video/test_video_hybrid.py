"""Hybrid compositing (alpha, masks and their processing) and motion taken from a clip's frames."""
import numpy as np
import pytest

from deforum_engine.video.hybrid import (MaskValues, auto_contrast, composite, hybrid_composite, motion_matrix,
                                         pil_contrast, process_mask, raw_mask, warp_by_matrix)
from video_clips import PAN, measured_shift, panned_frames


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_alpha_zero_gives_the_frame_and_one_the_clip(pictures):
    frame, video = pictures
    assert np.array_equal(composite(frame, video, 0.0), frame)
    assert np.array_equal(composite(frame, video, 1.0), video)
    half = composite(frame, video, 0.5).astype(int)
    assert np.abs(half - (frame.astype(int) + video) / 2).max() <= 0.5


def test_a_white_mask_keeps_the_frame_and_a_black_one_takes_the_clip(pictures):
    frame, video = pictures
    white, black = np.full((32, 32), 255, np.uint8), np.zeros((32, 32), np.uint8)
    assert np.array_equal(composite(frame, video, 1.0, white), frame)
    assert np.array_equal(composite(frame, video, 1.0, black), video)


def test_difference_mask_is_zero_where_the_pictures_agree(pictures):
    frame, _ = pictures
    video = frame.copy()
    video[8:16, 8:16] = 255 - video[8:16, 8:16]
    mask = raw_mask("Difference", frame, video, 0.5)
    changed = np.zeros((32, 32), bool)
    changed[8:16, 8:16] = True
    assert np.all(mask[~changed] == 0) and mask[changed].mean() > 40
    result, _ = hybrid_composite(frame, video, "Difference", 1.0, MaskValues())
    assert np.array_equal(result[~changed], frame[~changed])  # equal pixels: nothing changes


def test_blend_mask_mixes_the_two_greys():
    frame, video = np.full((4, 4, 3), 200, np.uint8), np.full((4, 4, 3), 100, np.uint8)
    assert np.all(raw_mask("Blend", frame, video, 0.25) == 175)


def test_mask_processing_in_deforums_order():
    mask = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    assert np.array_equal(process_mask(mask, MaskValues(inverse=True)), 255 - mask)
    assert np.array_equal(pil_contrast(mask, 1.0), mask)
    mean = int(mask.mean() + 0.5)
    assert pil_contrast(mask, 2.0)[0, 8] == np.clip(mean + 2 * (128 - mean), 0, 255)
    stretched = auto_contrast(mask, 25, 75)
    assert stretched.min() == 0 and stretched.max() == 255
    assert np.array_equal(auto_contrast(np.full((4, 4), 9, np.uint8), 0, 100), np.full((4, 4), 9, np.uint8))
    equalized = process_mask(np.full((4, 4), 60, np.uint8) + np.eye(4, dtype=np.uint8), MaskValues(equalize="After"))
    assert equalized.max() == 255


def test_depth_masks_need_a_depth_picture(pictures):
    frame, video = pictures
    depth = np.full((32, 32), 255, np.uint8)
    assert np.array_equal(hybrid_composite(frame, video, "Depth", 1.0, MaskValues(), depth)[0], frame)
    with pytest.raises(ValueError, match="needs a depth picture"):
        raw_mask("Video Depth", frame, video, 0.5)


@pytest.mark.parametrize("kind", ["Affine", "Perspective"])
def test_motion_matrix_follows_the_clip(kind):
    a, b = panned_frames(2, 128, 128)
    matrix = motion_matrix(a, b, kind)
    dx, dy = measured_shift(a, warp_by_matrix(a, matrix))
    assert abs(dx - PAN) <= 0.5 and abs(dy) <= 0.5


def test_featureless_pictures_give_the_identity():
    flat = np.full((64, 64, 3), 90, np.uint8)
    assert np.array_equal(motion_matrix(flat, flat, "Affine"), np.eye(3))
