"""The 3D warp in Deforum's conventions: a picture re-projected through its depth by a camera move.

Deforum's 3D warp (the A1111 extension's `transform_image_3d_new`, Disco Diffusion before it) puts
every pixel on a [-1, 1] grid (x right, y down) at its depth z, looks at these points through two
perspective cameras of the same field of view, one where the camera was (identity) and one moved
by the frame's rotation R and translation T, and pulls each pixel by the difference of the two
projections. It is a one-step approximation of a true re-projection: the offset found at a pixel's
own position is applied there, so the image follows the camera closely for the small moves of one
frame (and of a cadence segment), not for large ones.

The camera moves and lenses are those of motion3d.py (4x4 matrices, Deforum's conventions).
Kept from Deforum exactly here:
- The points' x, y are `linspace(-1, 1, W)` / `linspace(-1, 1, H)`; the sampling grid is
  `affine_grid` of the identity with align_corners=False (pixel centres), minus the offset;
  grid_sample with the chosen padding and sampling modes, align_corners=False; values clamped to
  0..255. Where Deforum truncates to uint8 (each warp darkens by half a level on average), this
  rounds.

Several frames at once (cadence: a key warped to a frame n steps on, or back): `warp_3d_path`
composes Deforum's one-frame maps (each with its frame's lens, and the depth at the point it
moves) and samples the picture once. Composing the 4x4 moves first and warping once by the
product would not do: the one-frame warp is not linear in the move (a push of n frames at once
zooms more than n pushes of one frame; 14 % more over 4 frames of translation_z 10).

Speed: on the CPU the sampling runs through OpenCV's remap (the same bicubic kernel, a = -0.75,
as torch's grid_sample, and the same border rules, at about half the cost); on CUDA it runs
through torch's grid_sample. The pixel grid is made once per size and device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from deforum_engine.frame.motion3d import CameraStep, Lens

PADDING_MODES = {"border": cv2.BORDER_REPLICATE, "reflection": cv2.BORDER_REFLECT, "zeros": cv2.BORDER_CONSTANT}
SAMPLING_MODES = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class _PixelGrid:
    """The output pixels' columns (1, W) and rows (H, 1), as float32 numpy arrays or torch tensors."""

    columns: object
    rows: object


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int, device: str | None) -> _PixelGrid:
    """The grid for numpy (device None) or for torch on `device`; made once per size."""
    if device is None:
        return _PixelGrid(np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None])
    import torch

    return _PixelGrid(torch.arange(width, dtype=torch.float32, device=device).view(1, width),
                      torch.arange(height, dtype=torch.float32, device=device).view(height, 1))


def _deforum_step(px, py, z, step: CameraStep, width: int, height: int):
    """One frame of Deforum's warp: the positions in the previous picture that output positions
    (px, py), in pixels, sample. `z` is the depth there (an array like px) or None for flat depth.

    Works on numpy arrays and torch tensors alike (in-place arithmetic on new arrays only).
    """
    r = step.move[:3, :3].T.tolist()  # back to pytorch3d's row-vector R: a point's new coordinates are p @ R + T
    t = step.move[:3, 3].tolist()
    x = px * (2.0 / (width - 1)) - 1.0  # Deforum's points: linspace(-1, 1, W) at the pixels
    y = py * (2.0 / (height - 1)) - 1.0

    def moved(axis: int):
        """Column `axis` of p @ R + T, as a new H x W array."""
        flat_part = t[axis] + (r[2][axis] if z is None else 0.0)
        out = y * r[1][axis] + (x * r[0][axis] + flat_part)
        if z is not None:
            out += z * r[2][axis]
        return out

    new_z = moved(2)
    still_x, still_y = (x, y) if z is None else (x / z, y / z)
    sample_x, sample_y = moved(0), moved(1)
    # The projections' difference, f / aspect * (X / Z - x / z), is in grid_sample's units: W / 2 pixels.
    sample_x /= new_z
    sample_x -= still_x
    sample_x *= -step.lens.focal / step.lens.aspect * (width / 2.0)
    sample_x += px
    sample_y /= new_z
    sample_y -= still_y
    sample_y *= -step.lens.focal * (height / 2.0)
    sample_y += py
    return sample_x, sample_y


def _sampling_positions(z, steps, height: int, width: int, device: str | None):
    """Where each output pixel samples the picture `steps` frames back: Deforum's one-frame warps,
    composed from the last step back to the first, each with the depth at the point it moves."""
    grid = _pixel_grid(height, width, device)
    px, py = grid.columns, grid.rows
    depth = z
    for number, step in enumerate(reversed(steps)):
        if number and z is not None:
            depth = _sample_depth(z, px, py)
        px, py = _deforum_step(px, py, depth, step, width, height)
    if not steps:
        px, py = grid.columns + 0 * grid.rows, grid.rows + 0 * grid.columns
    return px, py


def _sample_depth(z, px, py):
    """The depth map, bilinear, at pixel positions (px, py) (edges held)."""
    if isinstance(z, np.ndarray):
        return cv2.remap(z, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    import torch.nn.functional as F

    height, width = z.shape
    grid = _normalised(px, py, width, height)
    return F.grid_sample(z[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]


def _normalised(px, py, width: int, height: int):
    """Pixel positions as grid_sample's (1, H, W, 2) grid (align_corners=False: pixel i is (2i + 1) / W - 1)."""
    import torch

    return torch.stack(((px * 2 + 1) / width - 1, (py * 2 + 1) / height - 1), dim=-1).unsqueeze(0)


def source_pixels(z, move: np.ndarray, lens: Lens, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel, the input pixel (column, row; float32 H x W maps) one camera move samples."""
    return _sampling_positions(None if z is None else _as_numpy_depth(z), (CameraStep(move, lens),), height, width,
                               None)


def _as_numpy_depth(z) -> np.ndarray:
    if hasattr(z, "detach"):
        z = z.detach().to("cpu").float().numpy()
    return np.asarray(z, dtype=np.float32)


def warp_3d(image: np.ndarray, z, move: np.ndarray, lens: Lens, padding_mode: str = "border",
            sampling_mode: str = "bicubic", device: str = "cpu") -> np.ndarray:
    """Re-project an RGB uint8 image through its depth `z` (None: flat) by one camera move (4x4), as
    Deforum warps one frame. Same size out. See warp_3d_path."""
    return warp_3d_path(image, z, (CameraStep(move, lens),), padding_mode, sampling_mode, device)


def warp_3d_path(image: np.ndarray, z, steps, padding_mode: str = "border", sampling_mode: str = "bicubic",
                 device: str = "cpu") -> np.ndarray:
    """Re-project an image through its depth along several frames' camera steps (CameraStep: move
    and lens, in order), as Deforum's frame-by-frame warps would move it, sampled once.

    `z` is an H x W torch tensor or numpy array, or None (flat). `device` is the render's torch
    device: CUDA samples with grid_sample there; any other device samples on the CPU with OpenCV.
    """
    return _warp(image, z, steps, padding_mode, sampling_mode, device, covered=False)[0]


def warp_3d_path_covered(image: np.ndarray, z, steps, padding_mode: str = "border", sampling_mode: str = "bicubic",
                         device: str = "cpu") -> tuple[np.ndarray, np.ndarray | None]:
    """warp_3d_path, and how much of each pixel comes from inside the picture (float32 0..1, bilinear),
    or None where every pixel does: what the padding filled weighs less in a crossfade (frame/cadence.py)."""
    return _warp(image, z, steps, padding_mode, sampling_mode, device, covered=True)


def _warp(image: np.ndarray, z, steps, padding_mode: str, sampling_mode: str, device: str, covered: bool):
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
    if sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"sampling_mode must be one of {sorted(SAMPLING_MODES)}, got {sampling_mode!r}")
    if str(device).startswith("cuda"):
        return _grid_sample(image, z, steps, padding_mode, sampling_mode, str(device), covered)
    height, width = image.shape[:2]
    depth = None if z is None else _as_numpy_depth(z)
    map_x, map_y = _sampling_positions(depth, steps, height, width, None)
    warped = cv2.remap(image, map_x, map_y, SAMPLING_MODES[sampling_mode], borderMode=PADDING_MODES[padding_mode],
                       borderValue=0)
    if not covered or _inside(map_x, map_y, width, height):
        return warped, None
    ones = np.ones((height, width), np.float32)
    return warped, cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _inside(map_x, map_y, width: int, height: int) -> bool:
    """Every sampling position within the picture (pixel centres 0 .. W - 1, 0 .. H - 1)."""
    return bool(map_x.min() >= 0 and map_y.min() >= 0 and map_x.max() <= width - 1 and map_y.max() <= height - 1)


def _grid_sample(image: np.ndarray, z, steps, padding_mode: str, sampling_mode: str, device: str,
                 covered: bool = False):
    """torch's grid_sample on the device, as Deforum samples (align_corners=False)."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    depth = None if z is None else torch.as_tensor(z, dtype=torch.float32, device=device)
    px, py = _sampling_positions(depth, steps, height, width, device)
    grid = _normalised(px, py, width, height)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).unsqueeze(0).float()
    warped = F.grid_sample(pixels, grid, mode=sampling_mode, padding_mode=padding_mode, align_corners=False)
    warped = warped[0].clamp_(0, 255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    if not covered or _inside(px, py, width, height):
        return warped, None
    ones = torch.ones((1, 1, height, width), dtype=torch.float32, device=device)
    seen = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped, seen[0, 0].cpu().numpy()
