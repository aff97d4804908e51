"""Hybrid video: a clip's frame composited into the animation's frame, and the clip's motion
between two of its frames as a matrix (Affine, Perspective) for the animation to follow.

The pictures are RGB uint8, the clip's frame already fitted to the render size. Masks are grey
uint8, white where the animation's own frame is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

@dataclass(frozen=True)
class MaskValues:
    """A frame's hybrid mask values: the schedules' values at the frame, and the fixed choices."""

    blend_alpha: float = 0.5
    contrast: float = 1.0
    cutoff_low: int = 0
    cutoff_high: int = 100
    auto_contrast: bool = False
    inverse: bool = False
    equalize: str = "None"


def gray(image: np.ndarray) -> np.ndarray:
    """Luma, ITU-R 601 weights (what PIL's grayscale gives)."""
    return cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)


def raw_mask(kind: str, frame: np.ndarray, video: np.ndarray, blend_alpha: float,
             depth: np.ndarray | None = None) -> np.ndarray | None:
    """The mask before processing: Blend (the two in grey, mixed by `blend_alpha`), Difference
    (|frame - video| in grey), Depth / Video Depth (`depth`: a grey depth picture, near white:
    the previous frame's, or the clip frame's); None for no mask."""
    if kind == "None":
        return None
    if kind == "Blend":
        return cv2.addWeighted(gray(frame), 1 - blend_alpha, gray(video), blend_alpha, 0)
    if kind == "Difference":
        return cv2.absdiff(gray(frame), gray(video))
    if depth is None:
        raise ValueError(f"hybrid_comp_mask_type {kind!r} needs a depth picture")
    return depth if depth.ndim == 2 else gray(depth)


def pil_contrast(mask: np.ndarray, factor: float) -> np.ndarray:
    """PIL's contrast enhancement on a grey picture: mean + factor * (x - mean), mean rounded."""
    if factor == 1:
        return mask
    mean = int(mask.mean() + 0.5)
    return np.clip(mean + factor * (mask.astype(np.float32) - mean), 0, 255).astype(np.uint8)


def auto_contrast(mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """Stretch the grey values between the `low` and `high` percentiles to 0..255 (a flat mask is kept)."""
    low_value, high_value = np.percentile(mask, low), np.percentile(mask, high)
    if high_value <= low_value:
        return mask
    stretched = 255.0 * (mask.astype(np.float64) - low_value) / (high_value - low_value)
    return np.clip(stretched, 0, 255).astype(np.uint8)


def process_mask(mask: np.ndarray, values: MaskValues) -> np.ndarray:
    """Deforum's order: invert, equalize (Before/Both), contrast, auto-contrast with its
    percentile cutoffs, equalize (After/Both)."""
    if values.inverse:
        mask = 255 - mask
    if values.equalize in ("Before", "Both"):
        mask = cv2.equalizeHist(mask)
    mask = pil_contrast(mask, values.contrast)
    if values.auto_contrast:
        mask = auto_contrast(mask, values.cutoff_low, values.cutoff_high)
    if values.equalize in ("After", "Both"):
        mask = cv2.equalizeHist(mask)
    return mask


def composite(frame: np.ndarray, video: np.ndarray, alpha: float, mask: np.ndarray | None = None) -> np.ndarray:
    """frame * (1 - alpha) + comp * alpha, where comp is the clip's frame, or with a mask the two
    pictures mixed by it (white keeps the frame). Alpha 0 gives the frame, 1 the composite."""
    if mask is None:
        comp = video
    else:
        weight = mask.astype(np.float32)[..., None] / 255.0
        comp = frame * weight + video * (1.0 - weight)
    mixed = frame.astype(np.float32) * (1.0 - alpha) + np.asarray(comp, np.float32) * alpha
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def hybrid_composite(frame: np.ndarray, video: np.ndarray, kind: str, alpha: float, values: MaskValues,
                     depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The composited frame, and the processed mask (None without a mask type)."""
    mask = raw_mask(kind, frame, video, values.blend_alpha, depth)
    if mask is not None:
        mask = process_mask(mask, values)
    return composite(frame, video, alpha, mask), mask


def sift_features(image: np.ndarray) -> tuple:
    """A picture's SIFT keypoints and descriptors (what motion_matrix matches)."""
    return cv2.SIFT_create().detectAndCompute(gray(image), None)


def motion_matrix(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The clip's motion from picture a to picture b as a 3x3 matrix (see matrix_between)."""
    return matrix_between(sift_features(a), sift_features(b), kind)


def matrix_between(features_a: tuple, features_b: tuple, kind: str) -> np.ndarray:
    """Motion from SIFT features: matched with Lowe's ratio 0.75, then a homography (Perspective;
    RANSAC, 5 px) or a rotation, uniform scale and shift (Affine). Eight matches or fewer, or no
    fit: the identity."""
    (points_a, descriptors_a), (points_b, descriptors_b) = features_a, features_b
    if descriptors_a is None or descriptors_b is None or len(points_a) < 2 or len(points_b) < 2:
        return np.eye(3)
    pairs = cv2.BFMatcher().knnMatch(descriptors_a, descriptors_b, k=2)
    good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < 0.75 * pair[1].distance]
    if len(good) <= 8:
        return np.eye(3)
    source = np.float32([points_a[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    target = np.float32([points_b[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    if kind == "Perspective":
        matrix, _ = cv2.findHomography(source, target, cv2.RANSAC, 5.0)
        return np.eye(3) if matrix is None else matrix
    matrix, _ = cv2.estimateAffinePartial2D(source, target)
    return np.eye(3) if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])


def warp_by_matrix(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The picture moved by a 3x3 motion matrix, edges reflected (as Deforum's hybrid motion)."""
    height, width = image.shape[:2]
    if np.allclose(matrix[2], [0.0, 0.0, 1.0]):
        return cv2.warpAffine(image, matrix[:2], (width, height), borderMode=cv2.BORDER_REFLECT_101)
    return cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
