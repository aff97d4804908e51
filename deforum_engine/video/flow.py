"""Optical flow: how far each pixel of one picture moved in the next, and pictures moved along it.

A flow is H x W x 2 float32: pixel (x, y) of the first picture is at (x + fx, y + fy) in the
second. The methods are Deforum's: OpenCV's DIS (Medium, Fine) and Farneback with Deforum's
parameters, and RAFT through torchvision where a working torchvision is installed.

Deforum hands each hybrid flow the previous one as a starting guess (and Farneback receives it in
the wrong argument, which fails on current numpy); here each flow is measured from the two
pictures alone, so a flow never depends on how far a render got before it was resumed.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Callable

import cv2
import numpy as np

from deforum_engine.config.choices import FLOW_METHODS
from deforum_engine.errors import SettingsError

OPENCV_METHODS = tuple(method for method in FLOW_METHODS if method != "RAFT")  # RAFT needs torchvision

Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (picture, next picture) -> flow


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)


def dis_medium(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS with OpenCV's MEDIUM preset."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(a), _gray(b), None)


def dis_fine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS as Deforum's "fine": the FAST preset with 192 descent iterations at the finest scale
    (0), patch 8, stride 4."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    dis.setGradientDescentIterations(192)
    dis.setFinestScale(0)
    dis.setPatchSize(8)
    dis.setPatchStride(4)
    return dis.calc(_gray(a), _gray(b), None)


def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback with Deforum's parameters: pyramid scale 0.5, 5 levels, window 21, 5 iterations,
    polynomial neighbourhood 7, sigma 1.2."""
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, 0.5, 5, 21, 5, 7, 1.2, 0)


def raft_available() -> bool:
    """Whether RAFT can run here: torchvision installed (it is not part of the engine's install)."""
    return importlib.util.find_spec("torchvision") is not None


def check_flow_methods(methods: dict[str, str]) -> None:
    """Before any model loads: every flow method in use (setting -> method) can run here."""
    for setting, method in methods.items():
        if method == "RAFT" and not raft_available():
            choose_flow(method, setting)


def raft_flow(device: str | None = None) -> Flow:
    """RAFT (torchvision's raft_large, 50 flow updates, as Deforum runs it) on `device` (default: the
    GPU when there is one). The model loads by this call (the render keeps one per device in the models
    cache: rendering/video_steps.py); its weights come from torchvision's cache or download."""
    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    weights = Raft_Large_Weights.DEFAULT
    model = raft_large(weights=weights, progress=False).to(device).eval()
    transform = weights.transforms()

    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        height, width = a.shape[:2]
        pad_h, pad_w = -height % 8, -width % 8
        tensors = [torch.from_numpy(np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge"))
                   .permute(2, 0, 1)[None] for image in (a, b)]
        first, second = transform(*tensors)
        with torch.inference_mode():
            result = model(first.to(device), second.to(device), num_flow_updates=50)[-1]
        return result[0].permute(1, 2, 0).cpu().numpy()[:height, :width].astype(np.float32)

    return flow


def choose_flow(method: str, setting: str, device: str | None = None) -> Flow:
    """The flow function for `method`; RAFT without torchvision is an error naming `setting`."""
    opencv = {"DIS Medium": dis_medium, "DIS Fine": dis_fine, "Farneback": farneback}
    if method in opencv:
        return opencv[method]
    if method != "RAFT":
        raise SettingsError(f"{setting}: {method!r} is not a flow method; choose one of {', '.join(FLOW_METHODS)}")
    if not raft_available():
        raise SettingsError(f"{setting}: RAFT needs torchvision, which is not installed here; "
                            "use 'DIS Fine' (OpenCV, no download) or install torchvision built for your torch")
    return raft_flow(device)


def warp_by_flow(image: np.ndarray, flow: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """The picture moved along the flow: out(x) = image(x - factor * flow(x)), bilinear, edges
    reflected (Deforum pads a reflected quarter around the picture first, which gives the same
    pixels for any move under a quarter of the picture)."""
    grid_x, grid_y = _pixel_grid(*flow.shape[:2])
    map_x = grid_x - np.float32(factor) * flow[..., 0]
    map_y = grid_y - np.float32(factor) * flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def flow_reliability(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Deforum's forward/backward check (its hybrid_flow_consistency): 1 where following the
    forward flow and then the backward flow comes back to the start (squared error below
    0.01 * (|f|^2 + |b|^2) + 0.5), -0.75 elsewhere."""
    height, width = forward.shape[:2]
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    to_x, to_y = xs + forward[..., 0], ys + forward[..., 1]
    back = _bilinear(backward, np.clip(to_x, 0, width - 2), np.clip(to_y, 0, height - 2))
    error = (to_x + back[..., 0] - xs) ** 2 + (to_y + back[..., 1] - ys) ** 2
    threshold = 0.01 * (np.sum(back ** 2, axis=2) + np.sum(forward.astype(np.float64) ** 2, axis=2)) + 0.5
    return np.where(error >= threshold, -0.75, 1.0).astype(np.float32)


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`field` sampled at (x, y) with bilinear weights, in float64 (x, y within the field)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    top = field[y0, x0] * (1 - ax) + field[y0, x0 + 1] * ax
    bottom = field[y0 + 1, x0] * (1 - ax) + field[y0 + 1, x0 + 1] * ax
    return top * (1 - ay) + bottom * ay


def consistent_flow(a: np.ndarray, b: np.ndarray, flow: Flow, blur: float) -> np.ndarray:
    """The flow from a to b with its reliability multiplied in, as Deforum does: the reliability map
    (1 or -0.75) blurred with sigma `blur` (a kernel of radius round(blur), zero outside the
    picture), so unreliable pixels get a reversed, weakened flow."""
    forward = flow(a, b)
    reliability = flow_reliability(forward, flow(b, a))
    if blur > 0:
        radius = int(blur + 0.5)
        kernel = cv2.getGaussianKernel(2 * radius + 1, blur)
        reliability = cv2.sepFilter2D(reliability, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    return forward * reliability[..., None]


# ------------------------------------------------------------------ moves as flows (hybrid motion)
# A move is a displacement field d: the moved picture is out(x) = picture(x - d(x)) (warp_by_flow).
# Matrices and flows both become moves, so a segment's moves compose and invert the same way.


def matrix_flow(matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """The move of a 3x3 motion matrix (a point p of the picture goes to matrix @ p): d(x) = x - M^-1 x."""
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    points = np.stack([grid_x, grid_y], axis=-1).reshape(1, -1, 2)
    sources = cv2.perspectiveTransform(points, np.linalg.inv(np.asarray(matrix, np.float64)))[0]
    return (points[0] - sources).reshape(height, width, 2).astype(np.float32)


def compose_flows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The move `first`, then `second`: d(x) = d2(x) + d1(x - d2(x))."""
    return second + _sampled(first, second)


def invert_flow(flow: np.ndarray, iterations: int = 4) -> np.ndarray:
    """The move back: e with e(x) = -d(x - e(x)), by fixed-point steps from -d (exact for a uniform
    flow, sub-pixel for the smooth moves of a camera or a clip)."""
    back = -flow
    for _ in range(iterations):
        back = -_sampled(flow, back)
    return back


@functools.lru_cache(maxsize=4)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's x and y (float32), made once per picture size: flows are applied many times a frame."""
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid_x.flags.writeable = grid_y.flags.writeable = False
    return grid_x, grid_y


def _sampled(field: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`field` read at x - shift(x), edges replicated."""
    grid_x, grid_y = _pixel_grid(*field.shape[:2])
    return cv2.remap(field, grid_x - shift[..., 0], grid_y - shift[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
