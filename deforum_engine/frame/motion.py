"""2D camera motion in Deforum's conventions, as 3x3 matrices (numpy only: the plan builds them).

Coordinates are OpenCV pixel coordinates: x to the right, y down, pixel centres on integers,
so the geometric centre of a W x H image is ((W - 1) / 2, (H - 1) / 2).

A matrix from `motion_matrix` maps a point of the previous frame to where it appears in the
new frame (the forward motion). Matrices compose like functions: "A, then B" is `B @ A`, so the
motion accumulated over frames 1..n is `M_n @ ... @ M_2 @ M_1`, and a cadence frame k steps
after a keyframe is the keyframe warped by `M_k @ ... @ M_1` (frame/warp.py applies them).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PerspectiveFlip:
    """Deforum's perspective flip: the image plane turned in 3D, in degrees.

    The directions are Deforum's: theta rolls it in the screen plane, clockwise for positive values
    (the opposite of `angle`), phi tilts it (positive sends the top edge away from the viewer),
    gamma pans it (positive sends the right edge away). fv is the field of view across the image
    diagonal: small values flatten the effect, large values exaggerate it (typical 30-160).
    """

    theta: float = 0.0
    phi: float = 0.0
    gamma: float = 0.0
    fv: float = 53.0


def _matrices(rows) -> np.ndarray:
    """3x3 matrices from rows of entries, each a number or a per-frame array: (3, 3) or (n, 3, 3)."""
    entries = np.broadcast_arrays(*[np.asarray(entry, dtype=np.float64) for row in rows for entry in row])
    return np.stack(entries, axis=-1).reshape(entries[0].shape + (3, 3))


# The maths below multiplies matrices written as rows of entries (numbers or per-frame arrays), entry
# by entry: for a whole render's frames that is a few dozen array operations instead of stacks of
# (n, 3, 3) products. Exact zeros and ones are skipped, so the sparse camera matrices cost little.

def _times(a, b):
    if isinstance(a, float) and a in (0.0, 1.0):
        return b if a == 1.0 else 0.0
    if isinstance(b, float) and b in (0.0, 1.0):
        return a if b == 1.0 else 0.0
    return a * b


def _product(a, b):
    """a @ b for 3x3 matrices written as rows of entries."""
    return [[sum((_times(a[i][k], b[k][j]) for k in range(3)), 0.0) for j in range(3)] for i in range(3)]


def _translation(dx, dy):
    """Rows of the matrix moving points by (dx, dy)."""
    return [[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]


def _about(matrix, cx: float, cy: float):
    """Conjugate a 3x3 linear map so that it pivots on (cx, cy) instead of the origin."""
    return _product(_product(_translation(cx, cy), matrix), _translation(-cx, -cy))


def _rotations(theta, phi, gamma):
    """3D rotation (y down, z away from the viewer): roll theta, then pan gamma, then tilt phi.

    Deforum's rotation matrices (animation.getRotationMatrixManual) in these axes: its z points
    toward the viewer, so its tilt and pan change sign here, its roll does not (clockwise on screen).
    """
    t, p, g = (np.deg2rad(np.asarray(angle, dtype=np.float64)) for angle in (theta, phi, gamma))
    roll = [[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]]
    pan = [[np.cos(g), 0.0, -np.sin(g)], [0.0, 1.0, 0.0], [np.sin(g), 0.0, np.cos(g)]]
    tilt = [[1.0, 0.0, 0.0], [0.0, np.cos(p), np.sin(p)], [0.0, -np.sin(p), np.cos(p)]]
    return _product(_product(tilt, pan), roll)


def _perspective_rows(width: int, height: int, flip: PerspectiveFlip):
    fv = np.asarray(flip.fv, dtype=np.float64)
    half_sine = np.sin(np.deg2rad(fv) / 2.0)
    if not np.all(np.isfinite(fv) & ~np.isclose(half_sine, 0.0, atol=1e-12)):
        raise ValueError(f"perspective_flip_fv must keep away from 0 (and multiples of 360) degrees, got {flip.fv}")
    # Deforum's camera distance; outside (0, 180) as its formula gives it (a negative fv: the other side)
    focal = np.hypot(width, height) / (2.0 * half_sine)
    r = _rotations(flip.theta, flip.phi, flip.gamma)
    # Plane point (x, y, 0) relative to the centre -> camera coordinates, plane `focal` away, seen
    # through a pinhole of focal length `focal`.
    projected = [[focal * r[0][0], focal * r[0][1], 0.0], [focal * r[1][0], focal * r[1][1], 0.0],
                 [r[2][0], r[2][1], focal]]
    h = _about(projected, (width - 1) / 2.0, (height - 1) / 2.0)
    return [[entry / h[2][2] for entry in row] for row in h]


def perspective_matrix(width: int, height: int, flip: PerspectiveFlip) -> np.ndarray:
    """Homography of the image plane turned in 3D about the image centre and seen through a pinhole.

    The camera sits at the distance where the image diagonal spans `fv` degrees (Deforum's camera
    distance), so with no rotation the result is the identity. Deforum turns the plane about an
    off-centre point and shrinks it by about 0.5 % (its flip matrix is not the identity at 0);
    here it turns about the centre. The flip's fields may be per-frame arrays: then one
    homography per frame, (n, 3, 3).
    """
    return _matrices(_perspective_rows(width, height, flip))


def motion_matrix(
    width: int,
    height: int,
    *,
    angle,
    zoom,
    translation_x,
    translation_y,
    center_x=0.5,
    center_y=0.5,
    perspective: PerspectiveFlip | None = None,
) -> np.ndarray:
    """One frame's forward motion: zoom and turn about the centre, perspective flip, translation.

    zoom > 1 enlarges the content about (center_x * W, center_y * H) measured from the image's
    top-left corner; angle turns it counter-clockwise on screen (degrees); the perspective flip
    (optional) turns the image plane about the image centre; translation then moves the picture
    right/down by exactly that many screen pixels. Unlike Deforum (`rot @ T`, whose translation
    gets scaled by zoom and turned by angle, and is dropped altogether when the perspective flip is
    on) the translation here is always applied, in screen pixels.

    Every value may be a per-frame array: then the result holds one matrix per frame, (n, 3, 3),
    computed in one vectorised pass (the plan builds a whole render's motion this way).
    """
    a = np.deg2rad(np.asarray(angle, dtype=np.float64))
    c, s = zoom * np.cos(a), zoom * np.sin(a)
    px = np.asarray(center_x, dtype=np.float64) * width - 0.5
    py = np.asarray(center_y, dtype=np.float64) * height - 0.5
    # Zoom and turn about (px, py), written out; with y pointing down, [[c, s], [-s, c]] turns
    # counter-clockwise as seen on screen.
    if perspective is None:
        return _matrices([[c, s, px - c * px - s * py + translation_x],
                          [-s, c, py + s * px - c * py + translation_y], [0.0, 0.0, 1.0]])
    spin = [[c, s, px - c * px - s * py], [-s, c, py + s * px - c * py], [0.0, 0.0, 1.0]]
    flipped = _product(_perspective_rows(width, height, perspective), spin)
    return _matrices(_product(_translation(translation_x, translation_y), flipped))
