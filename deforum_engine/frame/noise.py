"""Seeded per-frame noise with Deforum's strength, without Deforum's pull toward grey.

Deforum blends a noise image into the frame, frame * (1 - amount) + N * amount, where
N = 255 * clip(0.5 + 0.5 * z, 0, 1) for standard normal z (times Deforum's perlin field p for
noise_type "perlin": z * p). The change that makes is amount * (N - 127.5), the grain, plus
amount * (127.5 - frame), a pull toward mid-grey. The engine adds only the grain:
amount * 127.5 * clip(z * p, -1, 1), with p = 1 for "uniform" and Deforum's field for "perlin".
So the grain has Deforum's strength and distribution (uniform: std 0.36 * 255 * amount, 5.9
levels at 0.065), and brightness does not drift. Negative amounts (Deforum's "low-key" presets)
add grain of the same strength.
"""
import math

import cv2
import numpy as np

GRAIN_LEVELS_PER_AMOUNT = 127.5  # amount 1 spans Deforum's whole noise image: 0.5 +- 0.5, in levels
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


# Random bytes index these tables: Gaussian samples ~10x faster than rng.standard_normal, and the
# 256-level quantisation is far below the 1-level rounding of the result. Uniform grain is clipped
# at +-1 sigma here, as Deforum's noise image clips it; perlin grain is clipped after modulation.
NORMAL_LEVELS = _normal_levels(256)
CLIPPED_LEVELS = np.clip(NORMAL_LEVELS, -1.0, 1.0)
NORMAL_LEVELS.setflags(write=False)
CLIPPED_LEVELS.setflags(write=False)


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic smoothstep 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _cell_weights(per_cell: int):
    """Fade weights and offsets for a cell's 2 corners at per_cell sample points across it."""
    frac = ((np.arange(per_cell) + 0.5) / per_cell).astype(np.float32)
    fade = _fade(frac)
    return (1.0 - fade, fade), (frac, frac - 1.0)


def _perlin_octave(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """size x size gradient noise on a cells x cells lattice of random unit gradients."""
    per_cell = size // cells
    angles = rng.uniform(0.0, 2.0 * np.pi, (cells + 1, cells + 1)).astype(np.float32)
    gx, gy = np.cos(angles), np.sin(angles)
    (w0, w1), (d0, d1) = _cell_weights(per_cell)
    # Each corner's gradient . offset, fade-blended; separable, so blend along x (every lattice
    # row, cells x per_cell samples), then along y, by broadcasting rather than gathering.
    x_part = (gx[:, :-1, None] * (w0 * d0) + gx[:, 1:, None] * (w1 * d1)).reshape(cells + 1, size)
    y_part = (gy[:, :-1, None] * w0 + gy[:, 1:, None] * w1).reshape(cells + 1, size)
    r0, r1, rd0, rd1 = (w[None, :, None] for w in (w0, w1, w0 * d0, w1 * d1))
    x_top, x_bottom = x_part[:-1, None], x_part[1:, None]  # each (cells, 1, size)
    y_top, y_bottom = y_part[:-1, None], y_part[1:, None]
    out = x_top * r0 + x_bottom * r1 + y_top * rd0 + y_bottom * rd1
    return out.reshape(size, size)


def perlin_field(rng: np.random.Generator, octaves: int, persistence: float) -> np.ndarray:
    """Square multi-octave perlin field on Deforum's scale, at least 256 px wide.

    As in Deforum: octave k has an (8 * 2**k)-cell lattice and weight persistence**k, each octave
    is scaled by sqrt(2) (so one octave spans about -1..1), and the sum s becomes (s + 1) / 2,
    0.5 on average, not clipped. Sizes are powers of two, so every octave has a whole number of
    samples per cell.
    """
    if not 1 <= octaves <= 8:
        raise ValueError(f"perlin_octaves must be between 1 and 8, got {octaves}")
    octaves = int(octaves)
    size = max(256, PERLIN_CELLS * 2 ** (octaves - 1))
    total = np.zeros((size, size), np.float32)
    for k in range(octaves):
        total += np.float32(math.sqrt(2.0) * persistence**k) * _perlin_octave(rng, PERLIN_CELLS * 2**k, size)
    return (total + 1.0) * np.float32(0.5)


def add_noise(
    image: np.ndarray,
    amount: float,
    seed: int,
    noise_type: str = "perlin",
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Add seeded zero-mean grain of Deforum's strength: amount * 127.5 * clip(z * field, -1, 1) levels."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {list(NOISE_TYPES)}, got {noise_type!r}")
    if amount == 0:
        return image
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    field = perlin_field(rng, octaves, persistence) if noise_type == "perlin" else None
    # Raw 64-bit draws viewed as bytes: the cheapest uniform bytes numpy's generator offers.
    raw = rng.bit_generator.random_raw(-(-image.size // 8)).view(np.uint8)
    picks = raw[: image.size].reshape(image.shape)
    limit = np.float32(abs(amount) * GRAIN_LEVELS_PER_AMOUNT)
    noise = cv2.LUT(picks, (CLIPPED_LEVELS if field is None else NORMAL_LEVELS) * limit)
    if field is not None:
        strength = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
        np.multiply(noise, cv2.merge([strength] * 3), out=noise)
        np.clip(noise, -limit, limit, out=noise)  # Deforum's noise image clips z * field at +-1
    return cv2.add(image, noise, dtype=cv2.CV_8U)
