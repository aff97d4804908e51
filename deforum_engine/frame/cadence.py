"""In-between (cadence) frames: both neighbouring diffused frames, each warped to the frame's
camera, crossfaded pixel by pixel from what each of them really shows.

A warp leaves part of the picture uncovered, and the border mode fills it (smeared edge pixels for
`replicate`). On a zoom-in the newer frame is warped backward, a zoom-out, so its filled border
would be faded into every in-between frame. Where one neighbour's warp does not cover a pixel, the
other neighbour shows it instead; only where neither does the border fill remains.
"""
import cv2
import numpy as np

_EPSILON = 1e-4  # where neither neighbour covers a pixel, the plain crossfade of their border fills


def coverage(matrix: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """How much of each pixel a warp by `matrix` takes from inside the image (float32, 0..1), or
    None when the warp covers the whole frame (the common case, found from the corners alone)."""
    m = np.asarray(matrix, dtype=np.float64)
    corners = np.array([[[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]], np.float64)
    sources = cv2.perspectiveTransform(corners, np.linalg.inv(m))[0]  # where each corner samples
    inside = (sources >= -1e-6) & (sources <= np.array([width - 1, height - 1]) + 1e-6)
    if inside.all():
        return None
    ones = np.ones((height, width), np.float32)
    flags, border = cv2.INTER_LINEAR, cv2.BORDER_CONSTANT
    if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12:
        return cv2.warpAffine(ones, (m / m[2, 2])[:2], (width, height), flags=flags, borderMode=border)
    return cv2.warpPerspective(ones, m, (width, height), flags=flags, borderMode=border)


def crossfade(older: np.ndarray, newer: np.ndarray, weight: float,
              older_seen: np.ndarray | None, newer_seen: np.ndarray | None) -> np.ndarray:
    """`older` * (1 - weight) + `newer` * weight, each pixel weighted by how much each image covers it."""
    if older_seen is None and newer_seen is None:
        return cv2.addWeighted(older, 1 - weight, newer, weight, 0)
    shape = older.shape[:2]
    older_w = (1.0 - weight) * (np.ones(shape, np.float32) if older_seen is None else older_seen + _EPSILON)
    newer_w = weight * (np.ones(shape, np.float32) if newer_seen is None else newer_seen + _EPSILON)
    return cv2.blendLinear(older, newer, older_w.astype(np.float32), newer_w.astype(np.float32))
