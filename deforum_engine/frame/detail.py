"""Fine detail put back where repeated warps blur it away: what a motion preview does in place of a model.

A model turns each warped frame back into a detailed picture; without one, every warp softens the
frame a little, and over hundreds of frames a zoom ends in a blur. `restore_detail` stands in for
that: when a frame's finest detail has faded against its coarser detail, it adds fine detail taken
from the frame itself at half size, so a long zoom keeps a textured picture instead of a smear.
"""
from __future__ import annotations

import cv2
import numpy as np

# The finest band's energy is kept at least this many times the next octave's: about what a natural
# picture has (1/f**1.2 amplitude), so a zoom that moves detail down an octave at a time finds the
# same mix of detail at every depth instead of a growing blur.
FINE_TO_COARSE = 2.5
# ... and at most this share of the picture's whole variance, so that where the warp keeps the fine
# detail sharp (bicubic 3D sampling), topping it up never runs away into noise.
FINE_SHARE = 0.05


def _fine(image: np.ndarray) -> np.ndarray:
    """The finest octave of detail: the picture less its blur."""
    return image - cv2.GaussianBlur(image, (0, 0), 1.0)


def _energies(grey: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(the finest detail of a grey picture, its energy, the energy of the octave below it)."""
    soft = cv2.GaussianBlur(grey, (0, 0), 1.0)
    fine = grey - soft
    return fine, float(np.mean(fine ** 2)), float(np.mean((soft - cv2.GaussianBlur(grey, (0, 0), 2.0)) ** 2))


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def restore_detail(image: np.ndarray, seed: int, ratio: float = FINE_TO_COARSE, share: float = FINE_SHARE) -> np.ndarray:
    """Put back the fine detail that repeated warps blur away: when the finest band's energy (of the
    brightness) is below `ratio` times the next octave's (and `share` of the picture's variance), add
    the fine band of the picture itself at half size (mirrored 2 x 2, shifted by an offset drawn from
    `seed`), scaled so the sum's finest band has that energy. A frame with its detail intact comes
    back unchanged. The offset changes from frame to frame, so the added detail never lines up into
    streaks along the motion; once added, it moves with the picture like the rest of it."""
    height, width = image.shape[:2]
    if height < 4 or width < 4:
        return image
    grey = _grey(image).astype(np.float32)
    fine, fine_energy, coarse_energy = _energies(grey)
    target = min(ratio * coarse_energy, share * float(grey.var()))
    if fine_energy >= target - 1e-3:
        return image
    picture = image.astype(np.float32)
    half = cv2.resize(picture, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
    mirrored = np.concatenate([half, half[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)  # seamless when rolled
    shift = np.random.default_rng(seed).integers(0, mirrored.shape[:2])
    detail = _fine(np.roll(mirrored, tuple(shift), axis=(0, 1))[:height, :width])
    # the sum's fine band is fine + s * fine(detail): solve mean((fine + s * d)^2) = target for s
    detail_fine = _fine(_grey(detail))
    a = float(np.mean(detail_fine ** 2))
    if a <= 1e-9:
        return image
    b = 2 * float(np.mean(fine * detail_fine))
    scale = (-b + np.sqrt(b * b - 4 * a * (fine_energy - target))) / (2 * a)
    return np.clip(np.rint(picture + scale * detail), 0, 255).astype(np.uint8)
