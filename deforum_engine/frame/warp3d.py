"""3D camera motion in Deforum's conventions: per-frame 4x4 camera moves and the depth re-projection.

Deforum's 3D warp (the A1111 extension's `transform_image_3d_new`, Disco Diffusion before it) puts
every pixel on a [-1, 1] grid (x right, y down) at its depth z, looks at these points through two
perspective cameras of the same field of view, one where the camera was (identity) and one moved
by the frame's rotation R and translation T, and pulls each pixel by the difference of the two
projections. It is a one-step approximation of a true re-projection: the offset found at a pixel's
own position is applied there, so the image follows the camera closely for the small moves of one
frame (and of a cadence segment), not for large ones.

A camera move here is a 4x4 matrix acting on column vectors, `p_new = M @ p`, so moves compose
like the 2D ones in `warp.py`: "A, then B" is `B @ A`, the move from key frame k to frame k+n is
`M_{k+n} @ ... @ M_{k+1}`, and `inv(M)` moves back. Deforum's pytorch3d cameras use row vectors
(`p @ R + T`); `camera_move` turns that into `M = [[R.T, T], [0, 1]]`.

Conventions kept from Deforum exactly:
- T = (-translation_x, translation_y, -translation_z) / 200: positive translation_z pushes in,
  positive translation_x moves the camera right (the picture moves left).
- R = Rx @ Ry @ Rz from rotation_3d_x/y/z in degrees (pytorch3d's "XYZ" Euler order).
- Projection of pytorch3d's FoVPerspectiveCameras: (X, Y, Z) -> (f / aspect * X / Z, f * Y / Z)
  with f = 1 / tan(fov / 2); near and far only shape the projected z, which the warp discards.
- The points' x, y are `linspace(-1, 1, W)` / `linspace(-1, 1, H)`; the sampling grid is
  `affine_grid` of the identity with align_corners=False (pixel centres), minus the offset;
  grid_sample with the chosen padding and sampling modes, align_corners=False; values clamped to
  0..255. Where Deforum truncates to uint8 (each warp darkens by half a level on average), this
  rounds.

Speed: on the CPU the sampling runs through OpenCV's remap (the same bicubic kernel, a = -0.75,
as torch's grid_sample, and the same border rules, at about half the cost); on CUDA it runs
through torch's grid_sample. The pixel grid is computed once per size and device.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

TRANSLATION_SCALE = 1.0 / 200.0  # Deforum's (and Disco Diffusion's) 3D translation units
PADDING_MODES = {"border": cv2.BORDER_REPLICATE, "reflection": cv2.BORDER_REFLECT, "zeros": cv2.BORDER_CONSTANT}
SAMPLING_MODES = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


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
class _PixelGrid:
    """Deforum's point grid and the base sampling grid of one frame size, as numpy or torch arrays.

    x, y: the points, `linspace(-1, 1, W)` as (1, W) and `linspace(-1, 1, H)` as (H, 1).
    u, v: the identity sampling grid, pixel centres; in pixels (i, j) for OpenCV's remap, or
    grid_sample's normalised (2i + 1) / W - 1 for torch. scale_x, scale_y: grid units per
    normalised unit (W / 2 and H / 2 in pixels, 1 normalised).
    """

    x: object
    y: object
    u: object
    v: object
    scale_x: float
    scale_y: float


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int, device: str | None) -> _PixelGrid:
    """The grid for numpy (device None) or for torch on `device`; made once per size."""
    if device is None:
        return _PixelGrid(
            x=np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :],
            y=np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None],
            u=np.arange(width, dtype=np.float32)[None, :],
            v=np.arange(height, dtype=np.float32)[:, None],
            scale_x=width / 2.0, scale_y=height / 2.0,
        )
    import torch

    def centres(n: int):
        return (torch.arange(n, dtype=torch.float32, device=device) * 2 + 1) / n - 1

    return _PixelGrid(
        x=torch.linspace(-1.0, 1.0, width, device=device).view(1, width),
        y=torch.linspace(-1.0, 1.0, height, device=device).view(height, 1),
        u=centres(width).view(1, width), v=centres(height).view(height, 1), scale_x=1.0, scale_y=1.0,
    )


def _sampling_grid(grid: _PixelGrid, z, move: np.ndarray, lens: Lens):
    """Where each output pixel samples the input: the identity grid minus Deforum's projection offset.

    Works on numpy arrays and torch tensors alike (in-place arithmetic only); `z` is an H x W
    array of the same kind, or None for flat depth (z = 1).
    """
    r = move[:3, :3].T.tolist()  # back to pytorch3d's row-vector R: a point's new coordinates are p @ R + T
    t = move[:3, 3].tolist()

    def moved(axis: int):
        """Column `axis` of p @ R + T, as a new H x W array."""
        flat_part = t[axis] + (r[2][axis] if z is None else 0.0)
        out = grid.y * r[1][axis] + (grid.x * r[0][axis] + flat_part)
        if z is not None:
            out += z * r[2][axis]
        return out

    new_z = moved(2)
    still_x, still_y = (grid.x, grid.y) if z is None else (grid.x / z, grid.y / z)
    sample_x, sample_y = moved(0), moved(1)
    sample_x /= new_z
    sample_x -= still_x
    sample_x *= -lens.focal / lens.aspect * grid.scale_x
    sample_x += grid.u
    sample_y /= new_z
    sample_y -= still_y
    sample_y *= -lens.focal * grid.scale_y
    sample_y += grid.v
    return sample_x, sample_y


def source_pixels(z, move: np.ndarray, lens: Lens, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel, the input pixel (column, row; float32 H x W maps) it is sampled from."""
    depth = None if z is None else _as_numpy_depth(z)
    return _sampling_grid(_pixel_grid(height, width, None), depth, move, lens)


def _as_numpy_depth(z) -> np.ndarray:
    if hasattr(z, "detach"):
        z = z.detach().to("cpu").float().numpy()
    return np.asarray(z, dtype=np.float32)


def warp_3d(image: np.ndarray, z, move: np.ndarray, lens: Lens, padding_mode: str = "border",
            sampling_mode: str = "bicubic", device: str = "cpu") -> np.ndarray:
    """Re-project an RGB uint8 image through its depth `z` (None: flat) by a camera move (4x4).

    Same size out. `z` is an H x W torch tensor or numpy array. `device` is the render's torch
    device: CUDA samples with grid_sample there; any other device samples on the CPU with OpenCV.
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
    if sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"sampling_mode must be one of {sorted(SAMPLING_MODES)}, got {sampling_mode!r}")
    height, width = image.shape[:2]
    if str(device).startswith("cuda"):
        return _grid_sample(image, z, move, lens, padding_mode, sampling_mode, str(device))
    map_x, map_y = source_pixels(z, move, lens, height, width)
    return cv2.remap(image, map_x, map_y, SAMPLING_MODES[sampling_mode], borderMode=PADDING_MODES[padding_mode],
                     borderValue=0)


def _grid_sample(image: np.ndarray, z, move: np.ndarray, lens: Lens, padding_mode: str, sampling_mode: str,
                 device: str) -> np.ndarray:
    """torch's grid_sample on the device, as Deforum samples (align_corners=False)."""
    import torch

    height, width = image.shape[:2]
    depth = None if z is None else torch.as_tensor(z, dtype=torch.float32, device=device)
    sample_x, sample_y = _sampling_grid(_pixel_grid(height, width, device), depth, move, lens)
    sample = torch.stack((sample_x, sample_y), dim=-1).unsqueeze(0)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).unsqueeze(0).float()
    warped = torch.nn.functional.grid_sample(pixels, sample, mode=sampling_mode, padding_mode=padding_mode,
                                             align_corners=False)
    return warped[0].clamp_(0, 255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
