"""ControlNet preprocessors: a picture (or a depth map) -> the control map a unit conditions on.

Each step is a pure function of (image, values) -> image, on H x W x 3 uint8 RGB. As in the
ControlNet extension, the input is first brought to the processor resolution (its short side), the
module runs there, and the map is then fitted to the render size by the unit's resize mode.
"""
from __future__ import annotations

import cv2
import numpy as np

from deforum_engine.frame.images import fit_image
from deforum_engine.config.control_units import ControlUnit


def processor_resolution(unit: ControlUnit, height: int, width: int, target_h: int, target_w: int) -> int:
    """The short side the module runs at: processor_res, or with pixel_perfect the size at which the
    input lands on the render size under the resize mode (the ControlNet extension's formula)."""
    if not unit.pixel_perfect:
        return unit.processor_res
    k_h, k_w = target_h / height, target_w / width
    scale = min(k_h, k_w) if unit.fit == "pad" else max(k_h, k_w)
    return max(1, int(round(scale * min(height, width))))


def resize_short_side(image: np.ndarray, short: int) -> np.ndarray:
    """Scale so the short side is `short` pixels (area when shrinking, cubic when enlarging)."""
    height, width = image.shape[:2]
    scale = short / min(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """OpenCV Canny edges (white on black) with hysteresis thresholds low / high (threshold_a / _b)."""
    edges = cv2.Canny(np.ascontiguousarray(image), float(low), float(high))
    return np.repeat(edges[:, :, None], 3, axis=2)


def invert(image: np.ndarray) -> np.ndarray:
    """Negative image: black line art on white becomes white lines on black, as line models expect."""
    return 255 - image


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` (threshold_a), for blur / tile-style models."""
    return cv2.GaussianBlur(image, (0, 0), float(sigma))


def tile(image: np.ndarray, rate: float) -> np.ndarray:
    """Down-sample by `rate` (threshold_a, 1 .. 8): the tile model re-adds the detail lost."""
    if rate <= 1:
        return image
    height, width = image.shape[:2]
    size = (max(1, int(width / rate)), max(1, int(height / rate)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def depth_map(depth: np.ndarray) -> np.ndarray:
    """A grey depth picture (near white, H x W uint8) as a 3-channel control map."""
    return np.repeat(np.asarray(depth, dtype=np.uint8)[:, :, None], 3, axis=2)


def run_module(unit: ControlUnit, image: np.ndarray) -> np.ndarray:
    """The unit's module on an image already at processor resolution (depth maps come in ready)."""
    if unit.module == "canny":
        return canny(image, unit.threshold_a, unit.threshold_b)
    if unit.module == "invert":
        return invert(image)
    if unit.module == "blur":
        return blur(image, unit.threshold_a)
    if unit.module == "tile":
        return tile(image, unit.threshold_a)
    return image  # none, depth: the input already is the control map


def control_map(unit: ControlUnit, image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A unit's control map at the render size, from its input picture (or grey depth picture).

    none and depth maps are only fitted; the other modules run at the processor resolution first."""
    if image.ndim == 2:
        image = depth_map(image)
    if unit.module not in ("none", "depth"):
        short = processor_resolution(unit, image.shape[0], image.shape[1], height, width)
        image = run_module(unit, resize_short_side(image, short))
    return fit_image(np.ascontiguousarray(image, dtype=np.uint8), width, height, unit.fit)
