"""3D camera motion in Deforum's conventions, as 4x4 matrices (numpy only: the plan builds them).

A camera move acts on column vectors, `p_new = M @ p`, like the 2D matrices of motion.py: "A,
then B" is `B @ A`, the move from key frame k to frame k+n is `M_{k+n} @ ... @ M_{k+1}`, and
`inv(M)` moves back. Deforum's pytorch3d cameras use row vectors (`p @ R + T`); a frame's move is
`M = [[R.T, T], [0, 1]]` with, exactly as Deforum:
- T = (-translation_x, translation_y, -translation_z) / 200: positive translation_z pushes in,
  positive translation_x moves the camera right (the picture moves left), positive translation_y
  raises it (the picture moves down);
- R = Rx @ Ry @ Rz from rotation_3d_x/y/z in degrees (pytorch3d's "XYZ" Euler order): positive
  rotation_3d_y turns the view right, positive rotation_3d_x tilts it up, positive rotation_3d_z
  turns the picture counter-clockwise.
A frame's lens (`Lens`) is pytorch3d's FoVPerspectiveCameras: (X, Y, Z) -> (f / aspect * X / Z,
f * Y / Z) with f = 1 / tan(fov / 2); near and far only shape the projected z, which the warp
(warp3d.py) discards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRANSLATION_SCALE = 1.0 / 200.0  # Deforum's (and Disco Diffusion's) 3D translation units


@dataclass(frozen=True)
class Lens:
    """A frame's perspective camera: field of view (degrees) and the aspect of its x axis."""

    fov: float = 70.0
    aspect: float = 1.0

    @property
    def focal(self) -> float:
        """pytorch3d's FoV projection scale, 1 / tan(fov / 2)."""
        return 1.0 / math.tan(math.radians(self.fov) / 2.0)


def frame_lens(fov: float, aspect_ratio: float, width: int, height: int, use_old_formula: bool = False) -> Lens:
    """The lens of a frame: aspect_ratio_schedule's value, or W / H with aspect_ratio_use_old_formula."""
    return Lens(fov=fov, aspect=width / height if use_old_formula else aspect_ratio)


def rotation_xyz(rotation_x: float, rotation_y: float, rotation_z: float) -> np.ndarray:
    """pytorch3d's euler_angles_to_matrix(radians(angles), "XYZ"): Rx @ Ry @ Rz, used as `p @ R`."""
    return rotations_xyz(np.array([rotation_x]), np.array([rotation_y]), np.array([rotation_z]))[0]


def rotations_xyz(rotation_x: np.ndarray, rotation_y: np.ndarray, rotation_z: np.ndarray) -> np.ndarray:
    """Rx @ Ry @ Rz for arrays of angles in degrees: an (N, 3, 3) array."""
    cx, cy, cz = (np.cos(np.radians(a)) for a in (rotation_x, rotation_y, rotation_z))
    sx, sy, sz = (np.sin(np.radians(a)) for a in (rotation_x, rotation_y, rotation_z))
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rx @ ry @ rz


def camera_moves(translation_x, translation_y, translation_z, rotation_x, rotation_y, rotation_z) -> np.ndarray:
    """Per-frame camera moves from Deforum's 3D schedules (arrays of N frames): an (N, 4, 4) array."""
    rotation = rotations_xyz(*(np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (rotation_x, rotation_y,
                                                                                          rotation_z)))
    moves = np.zeros((len(rotation), 4, 4))
    moves[:, :3, :3] = rotation.transpose(0, 2, 1)  # row-vector p @ R is column-vector R.T @ p
    moves[:, 0, 3] = -np.asarray(translation_x, dtype=np.float64) * TRANSLATION_SCALE
    moves[:, 1, 3] = np.asarray(translation_y, dtype=np.float64) * TRANSLATION_SCALE
    moves[:, 2, 3] = -np.asarray(translation_z, dtype=np.float64) * TRANSLATION_SCALE
    moves[:, 3, 3] = 1.0
    return moves


def camera_move(translation_x: float = 0.0, translation_y: float = 0.0, translation_z: float = 0.0,
                rotation_x: float = 0.0, rotation_y: float = 0.0, rotation_z: float = 0.0) -> np.ndarray:
    """One frame's camera move (4x4, column vectors) from Deforum's translation and rotation values."""
    return camera_moves(translation_x, translation_y, translation_z, rotation_x, rotation_y, rotation_z)[0]


def compose(moves: np.ndarray) -> np.ndarray:
    """The move made by `moves[0]`, then `moves[1]`, ...: their product, last first."""
    total = np.eye(4)
    for move in moves:
        total = move @ total
    return total


@dataclass(frozen=True)
class CameraStep:
    """One frame's camera move (4x4) with the lens of that frame: what one Deforum warp applies."""

    move: np.ndarray
    lens: Lens

    def inverse(self) -> "CameraStep":
        """The move undone, seen through the same lens."""
        return CameraStep(np.linalg.inv(self.move), self.lens)
