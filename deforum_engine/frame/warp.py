"""2D camera motion in Deforum's conventions: per-frame 3x3 matrices and the OpenCV warp.

Coordinates are OpenCV pixel coordinates: x to the right, y down, pixel centres on integers,
so the geometric centre of a W x H image is ((W - 1) / 2, (H - 1) / 2).

A matrix from `motion_matrix` maps a point of the previous frame to where it appears in the
new frame (the forward motion). Matrices compose like functions: "A, then B" is `B @ A`, so the
motion accumulated over frames 1..n is `M_n @ ... @ M_2 @ M_1`, and a cadence frame k steps
after a keyframe is the keyframe warped by `M_k @ ... @ M_1`.
"""
from dataclasses import dataclass

import cv2
import numpy as np

BORDER_MODES = {
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "reflect": cv2.BORDER_REFLECT_101,
}


@dataclass(frozen=True)
class PerspectiveFlip:
    """Deforum's perspective flip: the image plane turned in 3D, in degrees.

    theta rolls it in the screen plane (counter-clockwise, like `angle`), phi tilts it
    (positive sends the top edge away from the viewer), gamma pans it (positive sends the right
    edge away). fv is the field of view across the image diagonal: small values flatten the
    effect, large values exaggerate it (typical 30-160).
    """

    theta: float = 0.0
    phi: float = 0.0
    gamma: float = 0.0
    fv: float = 53.0


def _translation(dx: float, dy: float) -> np.ndarray:
    """3x3 matrix moving points by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _about(matrix: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Conjugate a 3x3 linear map so that it pivots on (cx, cy) instead of the origin."""
    return _translation(cx, cy) @ matrix @ _translation(-cx, -cy)


def _rotations(theta: float, phi: float, gamma: float) -> np.ndarray:
    """3D rotation (y down, z away from the viewer): roll theta, then pan gamma, then tilt phi."""
    t, p, g = np.deg2rad([theta, phi, gamma])
    roll = np.array([[np.cos(t), np.sin(t), 0.0], [-np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    pan = np.array([[np.cos(g), 0.0, -np.sin(g)], [0.0, 1.0, 0.0], [np.sin(g), 0.0, np.cos(g)]])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), np.sin(p)], [0.0, -np.sin(p), np.cos(p)]])
    return tilt @ pan @ roll


def perspective_matrix(width: int, height: int, flip: PerspectiveFlip) -> np.ndarray:
    """Homography of the image plane turned in 3D about the image centre and seen through a pinhole.

    The camera sits at the distance where the image diagonal spans `fv` degrees, so with no
    rotation the result is the identity.
    """
    if not 0.0 < flip.fv < 180.0:
        raise ValueError(f"perspective_flip_fv must be between 0 and 180 degrees, got {flip.fv}")
    focal = np.hypot(width, height) / (2.0 * np.sin(np.deg2rad(flip.fv) / 2.0))
    r = _rotations(flip.theta, flip.phi, flip.gamma)
    # Plane point (x, y, 0) relative to the centre -> camera coordinates, plane `focal` away.
    plane_to_camera = np.array(
        [[r[0, 0], r[0, 1], 0.0], [r[1, 0], r[1, 1], 0.0], [r[2, 0], r[2, 1], focal]]
    )
    camera = np.diag([focal, focal, 1.0])
    h = _about(camera @ plane_to_camera, (width - 1) / 2.0, (height - 1) / 2.0)
    return h / h[2, 2]


def motion_matrix(
    width: int,
    height: int,
    *,
    angle: float,
    zoom: float,
    translation_x: float,
    translation_y: float,
    center_x: float = 0.5,
    center_y: float = 0.5,
    perspective: PerspectiveFlip | None = None,
) -> np.ndarray:
    """One frame's forward motion: zoom and turn about the centre, perspective flip, translation.

    zoom > 1 enlarges the content about (center_x * W, center_y * H) measured from the image's
    top-left corner; angle turns it counter-clockwise on screen (degrees); the perspective flip
    (optional) turns the image plane about the image centre; translation then moves the picture
    right/down by exactly that many screen pixels. Unlike Deforum (`rot @ T`, whose translation
    gets scaled by zoom and turned by angle, and is dropped altogether when the perspective flip is
    on) the translation here is always applied, in screen pixels.
    """
    a = np.deg2rad(angle)
    c, s = zoom * np.cos(a), zoom * np.sin(a)
    # With y pointing down, this matrix turns counter-clockwise as seen on screen.
    turn = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    spin = _about(turn, center_x * width - 0.5, center_y * height - 0.5)
    if perspective is not None:
        spin = perspective_matrix(width, height, perspective) @ spin
    return _translation(translation_x, translation_y) @ spin


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
