"""Masks: reading and adjusting mask pictures, and the three places a mask acts in Deforum's frame loop.

1. Noise mask: the frame's noise lands only where the noise mask is white (`noise_only_in`).
2. Inpainting: the diffusion repaints only the white part; the black part keeps the prepared frame.
   After decoding, the prepared frame is pasted back through the mask softened by
   `mask_overlay_blur` (AUTOMATIC1111's mask blur), so the masked-out region is the warped frame
   exactly (`inpaint_composite`); the diffusers backend also holds that region in the latents.
3. Overlay (`overlay_mask`): the finished frame is composited over the original picture (the init
   image) through the mask, on diffused and in-between frames alike (`overlay`).
White (True) always means "this part changes". Pure functions on H x W (x 3) uint8 / bool / float arrays.
"""
from __future__ import annotations

import cv2
import numpy as np

WHITE_FROM = 128  # a grey mask pixel counts as white (repaint) from this value on


def adjust_mask(grey: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Brightness (x factor), then contrast (stretch around the mean grey) of a grey uint8 mask.

    The factors mean what their names say: `mask_brightness_adjust` scales brightness and
    `mask_contrast_adjust` the contrast (Deforum passes the two swapped; see the README's differences).
    """
    values = grey.astype(np.float32)
    if brightness != 1.0:
        values = np.clip(np.rint(values * brightness), 0, 255)
    if contrast != 1.0:
        mean = float(values.mean())
        values = np.clip(np.rint(mean + contrast * (values - mean)), 0, 255)
    return values.astype(np.uint8)


def to_grey(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 picture as grey (ITU-R 601 luma, as PIL's 'L'); a grey one unchanged."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def binary(grey: np.ndarray) -> np.ndarray:
    """A grey mask as booleans: True (repaint) from mid-grey up, without dithering."""
    return np.asarray(grey) >= WHITE_FROM


def alpha_mask(rgba: np.ndarray) -> np.ndarray | None:
    """An RGBA picture's alpha channel as a grey mask; None when it is uniform (nothing masked)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        return None
    alpha = rgba[:, :, 3]
    return None if alpha.min() == alpha.max() else np.ascontiguousarray(alpha)


def soft_mask(mask: np.ndarray, blur: float) -> np.ndarray:
    """A boolean mask as float32 0..1, blurred with AUTOMATIC1111's mask blur (Gaussian, sigma `blur`,
    kernel 2 * int(2.5 * blur + 0.5) + 1) when blur > 0."""
    values = np.asarray(mask, dtype=np.float32)
    if blur <= 0:
        return values
    size = 2 * int(2.5 * blur + 0.5) + 1
    return cv2.GaussianBlur(values, (size, size), float(blur))


def composite(top: np.ndarray, bottom: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`top` where weight is 1, `bottom` where it is 0, blended between (uint8 RGB out)."""
    if weight.dtype == bool:
        return np.where(weight[:, :, None], top, bottom).astype(np.uint8)
    w = weight.astype(np.float32)[:, :, None]
    blended = top.astype(np.float32) * w + bottom.astype(np.float32) * (1.0 - w)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    keep, take = w[:, :, 0] <= 0.0, w[:, :, 0] >= 1.0
    out[keep], out[take] = bottom[keep], top[take]  # exact where the mask is fully off or on
    return out


def inpaint_composite(generated: np.ndarray, prepared: np.ndarray, mask: np.ndarray, blur: float) -> np.ndarray:
    """The diffused frame inside the mask, the prepared (warped) frame outside, joined through the
    mask blurred by `mask_overlay_blur`."""
    return composite(generated, prepared, soft_mask(mask, blur))


def overlay(frame: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Deforum's overlay_mask: the frame where the mask is white, the original picture where it is black."""
    return composite(frame, original, np.asarray(mask, dtype=bool))


def noise_only_in(before: np.ndarray, noised: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The noised frame where the noise mask is white, the frame without noise elsewhere (Deforum pulls
    the masked-out part toward grey instead; see the README's differences)."""
    return np.where(np.asarray(mask, dtype=bool)[:, :, None], noised, before).astype(np.uint8)
