"""The 2D warp: an image moved by a 3x3 motion matrix (frame/motion.py) with OpenCV.

A matrix maps a point of the previous frame to where it appears in the new one; uncovered edges
are filled by the border mode.
"""
import cv2
import numpy as np

BORDER_MODES = {
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "reflect": cv2.BORDER_REFLECT_101,
}


def warp_frame(image: np.ndarray, matrix: np.ndarray, border: str) -> np.ndarray:
    """Warp an image by a forward motion matrix, same size out, bilinear, filling with `border`."""
    mode = BORDER_MODES.get(border)
    if mode is None:
        raise ValueError(f"border must be one of {sorted(BORDER_MODES)}, got {border!r}")
    height, width = image.shape[:2]
    m = np.asarray(matrix, dtype=np.float64)
    m = m / m[2, 2]
    if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12:
        return cv2.warpAffine(image, m[:2], (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=mode)
    return cv2.warpPerspective(image, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=mode)
