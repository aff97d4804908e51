"""Seeded per-frame noise: zero-mean Gaussian noise added to the frame, optionally perlin-modulated.

Strength: noise of `amount` has a standard deviation of `amount * 0.5` in [0, 1] units
(`amount * 127.5` levels), times the perlin field for noise_type "perlin". That is the spread of
Deforum's noise image (`randn * 0.5 + 0.5`, times the same perlin field) before Deforum blends it
in with weight `amount`; with Deforum's default perlin noise that image is hardly clipped, so the
noise strength matches it (its "uniform" type clips its noise at 2 sigma, about 0.36 instead of
0.5). Unlike Deforum the frame is not pulled toward grey, so brightness does not drift. Negative
amounts (Deforum's "low-key" presets) add noise of the same strength.
"""
import math

import cv2
import numpy as np

NOISE_STD_PER_AMOUNT = 0.5
PERLIN_CELLS = 8  # Deforum's perlin_w / perlin_h: the coarsest octave has 8 x 8 cells.
NOISE_TYPES = ("perlin", "uniform")


def _normal_levels(n: int) -> np.ndarray:
    """n equal-probability levels of a standard normal (its quantiles), rescaled to unit std."""
    p = (np.arange(n) + 0.5) / n
    x = np.zeros(n)
    for _ in range(40):  # Newton on Phi(x) = p; monotone from 0 because Phi is convex below 0.
        phi = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in x]))
        x -= (phi - p) / (np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))
    return (x / x.std()).astype(np.float32)


# Random bytes index this table to give Gaussian samples 10x faster than rng.standard_normal.
NORMAL_LEVELS = _normal_levels(256)
NORMAL_LEVELS.setflags(write=False)


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic smoothstep 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _perlin_octave(rng: np.random.Generator, cells: int, per_cell: int) -> np.ndarray:
    """Gradient noise on a cells x cells lattice, sampled per_cell times per cell along each axis."""
    angles = rng.uniform(0.0, 2.0 * np.pi, (cells + 1, cells + 1))
    gx, gy = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    u = ((np.arange(per_cell) + 0.5) / per_cell).astype(np.float32)
    weights = (1.0 - _fade(u), _fade(u))
    out = np.zeros((cells, per_cell, cells, per_cell), np.float32)  # (row cell, v, col cell, u)
    for dy in (0, 1):
        for dx in (0, 1):
            corner_x = gx[dy : dy + cells, dx : dx + cells][:, None, :, None]
            corner_y = gy[dy : dy + cells, dx : dx + cells][:, None, :, None]
            wx, wy = weights[dx], weights[dy]
            out += corner_x * np.outer(wy, wx * (u - dx))[None, :, None, :]
            out += corner_y * np.outer(wy * (u - dy), wx)[None, :, None, :]
    return out.reshape(cells * per_cell, cells * per_cell)


def perlin_field(rng: np.random.Generator, octaves: int, persistence: float) -> np.ndarray:
    """Square multi-octave perlin field mapped to [0, 1] (0.5 on average), at least 256 px wide."""
    if not 1 <= octaves <= 8:
        raise ValueError(f"perlin_octaves must be between 1 and 8, got {octaves}")
    size = max(256, PERLIN_CELLS * 2 ** (octaves - 1))
    total = np.zeros((size, size), np.float32)
    for k in range(octaves):
        cells = PERLIN_CELLS * 2**k
        total += persistence**k * _perlin_octave(rng, cells, size // cells)
    return np.clip((total + 1.0) * 0.5, 0.0, 1.0)


def add_noise(
    image: np.ndarray,
    amount: float,
    seed: int,
    noise_type: str = "perlin",
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Add seeded zero-mean Gaussian noise (std amount * 127.5 levels, perlin-modulated or not)."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {list(NOISE_TYPES)}, got {noise_type!r}")
    if amount == 0:
        return image
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    field = perlin_field(rng, octaves, persistence) if noise_type == "perlin" else None
    picks = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
    noise = cv2.LUT(picks, NORMAL_LEVELS * np.float32(amount * NOISE_STD_PER_AMOUNT * 255.0))
    if field is not None:
        noise *= cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    return cv2.add(image, noise, dtype=cv2.CV_8U)
