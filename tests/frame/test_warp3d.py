"""The 3D re-projection: Deforum's camera conventions, where known points go, and how moves compose."""
import math

import cv2
import numpy as np
import pytest

from deforum_engine.frame.motion3d import (CameraStep, Lens, camera_move, camera_moves, compose, frame_lens,
                                           rotation_xyz)
from deforum_engine.frame.warp3d import _grid_sample, source_pixels, warp_3d, warp_3d_path, warp_3d_path_covered

SIZE = 96
FOCAL_70 = 1 / math.tan(math.radians(35))  # f of Deforum's default 70 degree field of view


def smooth_image(height: int = SIZE, width: int = SIZE, seed: int = 0) -> np.ndarray:
    """Soft colour blobs: resampling error stays small, motion shows clearly."""
    rng = np.random.default_rng(seed)
    blobs = rng.integers(0, 256, (height // 12, width // 12, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 2)


def dot_image(points: list[tuple[float, float]], size: int = SIZE) -> np.ndarray:
    """Black with a small Gaussian dot (sigma 1.2 px) at each (column, row)."""
    cols, rows = np.meshgrid(np.arange(size), np.arange(size))
    image = np.zeros((size, size), dtype=np.float64)
    for col, row in points:
        image += 250 * np.exp(-((cols - col) ** 2 + (rows - row) ** 2) / (2 * 1.2**2))
    return np.repeat(np.clip(image, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(image: np.ndarray, near: tuple[float, float], radius: int = 6) -> tuple[float, float]:
    """Brightness-weighted centre (column, row) of the dot within `radius` of `near`."""
    col0, row0 = int(round(near[0])), int(round(near[1]))
    patch = image[row0 - radius:row0 + radius + 1, col0 - radius:col0 + radius + 1, 0].astype(np.float64)
    rows, cols = np.mgrid[row0 - radius:row0 + radius + 1, col0 - radius:col0 + radius + 1]
    return float((patch * cols).sum() / patch.sum()), float((patch * rows).sum() / patch.sum())


# --- Deforum's maths, written out independently: pytorch3d cameras as matrices, per point ------------


def deforum_sample_position(col: float, row: float, z: float, move: np.ndarray, lens: Lens, size: int):
    """Where output pixel (col, row) samples the input, by Deforum's recipe for one point.

    Point (x, y, z) with x, y from linspace(-1, 1); old camera identity, new camera p @ R + T; both
    projected by pytorch3d's FoV matrix (near 200, far 10000: they only touch z); the sampling grid
    is affine_grid's pixel centre minus the difference; back to pixels (align_corners=False).
    """
    near, far, f = 200.0, 10000.0, lens.focal
    projection = np.array([[f / lens.aspect, 0, 0, 0], [0, f, 0, 0],
                           [0, 0, far / (far - near), -far * near / (far - near)], [0, 0, 1, 0]])
    R, T = move[:3, :3].T, move[:3, 3]
    point = np.array([-1 + 2 * col / (size - 1), -1 + 2 * row / (size - 1), z])

    def project(p):
        h = projection @ np.append(p, 1.0)
        return h[:2] / h[3]

    offset = project(point @ R + T) - project(point)
    grid = np.array([(2 * col + 1) / size - 1, (2 * row + 1) / size - 1]) - offset
    return (grid + 1) * size / 2 - 0.5


def landing_position(source: tuple[float, float], depth_at, move: np.ndarray, lens: Lens, size: int = SIZE):
    """Solve for the output pixel whose sample position is `source` (Newton steps, numeric Jacobian)."""
    guess = np.array(source, dtype=np.float64)
    for _ in range(30):
        here = deforum_sample_position(*guess, depth_at(*guess), move, lens, size) - source
        jacobian = np.empty((2, 2))
        for axis in range(2):
            step = np.zeros(2)
            step[axis] = 1e-4
            moved = deforum_sample_position(*(guess + step), depth_at(*(guess + step)), move, lens, size) - source
            jacobian[:, axis] = (moved - here) / 1e-4
        guess = guess - np.linalg.solve(jacobian, here)
    return tuple(guess)


def flat(col, row):
    return 1.0


def ramp(col, row):
    """Near (z = 1) on the left edge to far (z = 2) on the right, as a depth model would give."""
    return 1.0 + col / (SIZE - 1)


def ramp_map(size: int = SIZE) -> np.ndarray:
    return np.repeat((1.0 + np.arange(size) / (size - 1))[None, :], size, axis=0).astype(np.float32)


# --- camera moves -------------------------------------------------------------------------------------


def test_camera_move_uses_deforums_translation_signs_and_scale():
    move = camera_move(translation_x=10, translation_y=4, translation_z=2)
    np.testing.assert_allclose(move[:3, 3], [-10 / 200, 4 / 200, -2 / 200])
    np.testing.assert_allclose(move[:3, :3], np.eye(3))


def test_rotation_is_pytorch3d_xyz_euler():
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    ry = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_xyz(30, 0, 0), rx, atol=1e-12)
    np.testing.assert_allclose(rotation_xyz(0, 30, 0), ry, atol=1e-12)
    np.testing.assert_allclose(rotation_xyz(0, 0, 30), rz, atol=1e-12)
    np.testing.assert_allclose(rotation_xyz(30, 30, 30), rx @ ry @ rz, atol=1e-12)
    # A move holds the transpose: Deforum's cameras apply R to row vectors (p @ R).
    np.testing.assert_allclose(camera_move(rotation_x=30, rotation_y=30, rotation_z=30)[:3, :3], (rx @ ry @ rz).T)


def test_moves_compose_last_first_and_invert():
    a = camera_move(translation_z=3, rotation_y=2)
    b = camera_move(translation_x=5, rotation_z=-1)
    np.testing.assert_allclose(compose([a, b]), b @ a)
    np.testing.assert_allclose(np.linalg.inv(a) @ a, np.eye(4), atol=1e-12)
    per_frame = camera_moves([0, 5], [0, 0], [3, 0], [0, 0], [2, 0], [0, -1])
    np.testing.assert_allclose(per_frame, [a, b])


def test_lens_aspect_from_schedule_or_old_formula():
    assert frame_lens(70, 1.0, 1024, 576) == Lens(70, 1.0)
    assert frame_lens(70, 1.0, 1024, 576, use_old_formula=True) == Lens(70, 1024 / 576)
    assert Lens(70).focal == pytest.approx(FOCAL_70)


# --- where known points go ----------------------------------------------------------------------------

CASES = {
    # name: (move, where the dot starts)
    "push in": (camera_move(translation_z=20), (80.0, 20.0)),
    "pan right": (camera_move(translation_x=10), (50.0, 40.0)),
    "pan down": (camera_move(translation_y=-10), (40.0, 50.0)),
    "roll": (camera_move(rotation_z=4), (70.0, 48.0)),
    "turn and push": (camera_move(translation_z=6, rotation_x=1.5, rotation_y=-2), (30.0, 60.0)),
}


@pytest.mark.parametrize("depth", ["flat", "ramp"])
@pytest.mark.parametrize("case", list(CASES))
def test_known_points_land_where_the_camera_maths_says(case, depth):
    move, start = CASES[case]
    depth_at, z = (flat, None) if depth == "flat" else (ramp, ramp_map())
    lens = Lens(70, 1.0)
    expected = landing_position(start, depth_at, move, lens)
    warped = warp_3d(dot_image([start]), z, move, lens, sampling_mode="bilinear")
    assert centroid(warped, expected) == pytest.approx(expected, abs=0.12)
    assert math.dist(expected, start) > 1.0  # the move is visible


def test_push_in_enlarges_about_the_centre_and_near_things_move_more():
    lens = Lens(70, 1.0)
    move = camera_move(translation_z=12)
    left, right = (20.0, 47.5), (75.0, 47.5)  # on the middle row, at z = 1.2 and 1.8 of the ramp
    warped = warp_3d(dot_image([left, right]), ramp_map(), move, lens, sampling_mode="bilinear")
    new_left = centroid(warped, landing_position(left, ramp, move, lens))
    new_right = centroid(warped, landing_position(right, ramp, move, lens))
    assert new_left[0] < left[0] and new_right[0] > right[0]  # both move outward
    assert left[0] - new_left[0] > 1.5 * (new_right[0] - right[0])  # the near one about twice as far


def test_pan_moves_the_picture_against_the_camera_by_f_times_t():
    """Flat depth: translation_x = 10 shifts every pixel left by f / aspect * 10 / 200 * W / 2."""
    lens = Lens(70, 1.0)
    start = (50.0, 40.0)
    warped = warp_3d(dot_image([start]), None, camera_move(translation_x=10), lens, sampling_mode="bilinear")
    shift = FOCAL_70 * 10 / 200 * SIZE / 2
    assert centroid(warped, (start[0] - shift, start[1])) == pytest.approx((start[0] - shift, start[1]), abs=0.1)


def test_positive_roll_turns_the_picture_counter_clockwise():
    lens = Lens(70, 1.0)
    start = (80.0, 47.5)  # right of centre, on the middle row
    warped = warp_3d(dot_image([start]), None, camera_move(rotation_z=4), lens, sampling_mode="bilinear")
    col, row = centroid(warped, landing_position(start, flat, camera_move(rotation_z=4), lens))
    assert row < start[1] - 2  # up on screen: counter-clockwise about the centre
    turned = math.degrees(math.atan2(start[1] - row, col - 47.5))
    assert turned == pytest.approx(4 * FOCAL_70, rel=0.1)  # Deforum's one-step warp turns by about f * angle


# --- agreement with Deforum's own sampling (torch grid_sample) -----------------------------------------


@pytest.mark.parametrize("padding_mode", ["border", "reflection", "zeros"])
@pytest.mark.parametrize("sampling_mode", ["bicubic", "bilinear", "nearest"])
def test_opencv_sampling_matches_torch_grid_sample(padding_mode, sampling_mode):
    image = smooth_image(72, 120)
    z = np.repeat((1.0 + np.arange(120) / 119)[None, :], 72, axis=0).astype(np.float32)
    move = camera_move(translation_x=8, translation_y=-5, translation_z=10, rotation_x=1, rotation_y=-1.5,
                       rotation_z=2)
    lens = Lens(60, 1.2)
    ours = warp_3d(image, z, move, lens, padding_mode, sampling_mode).astype(int)
    reference = _grid_sample(image, z, [CameraStep(move, lens)], padding_mode, sampling_mode, "cpu")[0].astype(int)
    difference = np.abs(ours - reference)
    if sampling_mode == "nearest":  # a pixel centre exactly between two can round either way
        assert (difference > 0).mean() < 0.01
    else:
        assert difference.max() <= 3 and difference.mean() < 0.3


def test_paths_sample_the_same_on_the_cpu_and_through_torch():
    """The CUDA path (torch, depth sampled with grid_sample) against the CPU path (OpenCV)."""
    import torch

    image, z = smooth_image(72, 120), np.repeat((1.0 + np.arange(120) / 119)[None, :], 72, axis=0).astype(np.float32)
    steps = [CameraStep(camera_move(translation_z=6, rotation_y=1.5), Lens(60, 1.2)),
             CameraStep(camera_move(translation_x=4, rotation_z=-2), Lens(70, 1.2)),
             CameraStep(camera_move(translation_z=6, rotation_x=1), Lens(80, 1.2))]
    ours = warp_3d_path(image, z, steps).astype(int)
    reference = _grid_sample(image, torch.from_numpy(z), steps, "border", "bicubic", "cpu")[0].astype(int)
    difference = np.abs(ours - reference)
    assert difference.max() <= 3 and difference.mean() < 0.3


def test_sampling_positions_equal_deforums_for_every_pixel():
    lens = Lens(55, 1.3)
    move = camera_move(translation_x=-4, translation_z=7, rotation_x=2, rotation_y=1, rotation_z=-3)
    map_x, map_y = source_pixels(ramp_map(), move, lens, SIZE, SIZE)
    for col, row in [(0, 0), (95, 0), (13, 71), (47, 47), (95, 95)]:
        expected = deforum_sample_position(col, row, ramp(col, row), move, lens, SIZE)
        assert (map_x[row, col], map_y[row, col]) == pytest.approx(tuple(expected), abs=1e-3)


def test_coverage_says_which_pixels_come_from_inside_the_picture():
    """A push in covers the frame (None); pulling back leaves a band the padding fills, covered 0."""
    image = smooth_image()
    steps_in = [CameraStep(camera_move(translation_z=6), Lens())] * 2
    assert warp_3d_path_covered(image, ramp_map(), steps_in)[1] is None
    pull_back = [step.inverse() for step in steps_in]
    warped, seen = warp_3d_path_covered(image, ramp_map(), pull_back)
    np.testing.assert_array_equal(warped, warp_3d_path(image, ramp_map(), pull_back))
    assert seen[48, 48] == 1.0 and seen[48, 0] == 0.0 and seen[0, 48] == 0.0
    _, seen_torch = _grid_sample(image, ramp_map(), pull_back, "border", "bicubic", "cpu", covered=True)
    np.testing.assert_allclose(seen_torch, seen, atol=0.02)


def test_padding_modes_fill_what_comes_into_view():
    image = smooth_image()
    pan = camera_move(translation_x=-40)  # camera left: the picture moves right, a strip enters on the left
    zeros = warp_3d(image, None, pan, Lens(), padding_mode="zeros")
    border = warp_3d(image, None, pan, Lens(), padding_mode="border")
    assert zeros[:, :5].max() == 0
    np.testing.assert_allclose(border[:, :5].astype(int), np.repeat(image[:, :1], 5, axis=1).astype(int), atol=2)


# --- moves compose: one warp by the product ~ Deforum's frame-by-frame warps -----------------------------


def test_one_warp_by_composed_moves_matches_frame_by_frame_warps():
    image = smooth_image()
    moves = [camera_move(translation_z=1.75, rotation_y=0.4, translation_x=1.0),
             camera_move(translation_z=1.75, rotation_y=0.4, rotation_z=0.3)]
    lens = Lens(70, 1.0)
    step_by_step = warp_3d(warp_3d(image, None, moves[0], lens), None, moves[1], lens).astype(int)
    at_once = warp_3d(image, None, compose(moves), lens).astype(int)
    motion = np.abs(step_by_step - image.astype(int)).mean()
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(at_once - step_by_step)[inner].mean() < 0.1 * motion
    assert motion > 2


def test_a_path_of_frames_warps_like_deforums_frame_by_frame_warps_where_the_product_does_not():
    """Cadence warps a key over several frames at once: composing Deforum's one-frame maps (a path)
    keeps the camera's speed; one warp by the product of the moves pushes in faster."""
    image = smooth_image()
    lens = Lens(70, 1.0)
    push = camera_move(translation_z=10, rotation_z=0.5)
    step_by_step = image
    for _ in range(4):
        step_by_step = warp_3d(step_by_step, None, push, lens)
    path = warp_3d_path(image, None, [CameraStep(push, lens)] * 4)
    product = warp_3d(image, None, compose([push] * 4), lens)
    inner = (slice(12, -12), slice(12, -12))
    path_error = np.abs(path.astype(int) - step_by_step)[inner].mean()
    product_error = np.abs(product.astype(int) - step_by_step)[inner].mean()
    assert path_error < 1.5 and product_error > 4 * path_error


def test_a_path_through_depth_follows_the_frames_own_lenses():
    lens_a, lens_b = Lens(50, 1.0), Lens(90, 1.0)
    move = camera_move(translation_z=8, translation_x=3)
    start = (70.0, 30.0)
    first = landing_position(start, ramp, move, lens_a)
    second = landing_position(first, ramp, move, lens_b)
    warped = warp_3d_path(dot_image([start]), ramp_map(), [CameraStep(move, lens_a), CameraStep(move, lens_b)],
                          sampling_mode="bilinear")
    assert centroid(warped, second) == pytest.approx(second, abs=0.25)


def test_an_undone_path_brings_the_picture_back():
    image = smooth_image()
    steps = [CameraStep(camera_move(translation_z=6, rotation_y=1), Lens(60)),
             CameraStep(camera_move(translation_z=6, rotation_x=-1), Lens(65))]
    there = warp_3d_path(image, ramp_map(), steps)
    back = warp_3d_path(there, ramp_map(), [step.inverse() for step in reversed(steps)])
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(back.astype(int) - image)[inner].mean() < 0.25 * np.abs(there.astype(int) - image)[inner].mean()


def test_the_inverse_move_brings_a_later_frame_back():
    image = smooth_image()
    move = compose([camera_move(translation_z=2, rotation_x=0.5), camera_move(translation_z=2, rotation_x=0.5)])
    there_and_back = warp_3d(warp_3d(image, ramp_map(), move, Lens()), ramp_map(), np.linalg.inv(move), Lens())
    inner = (slice(8, -8), slice(8, -8))
    gone = np.abs(warp_3d(image, ramp_map(), move, Lens()).astype(int) - image)[inner].mean()
    back = np.abs(there_and_back.astype(int) - image)[inner].mean()
    assert back < 0.25 * gone


def test_no_move_is_the_identity():
    image = smooth_image()
    np.testing.assert_array_equal(warp_3d(image, ramp_map(), np.eye(4), Lens()), image)


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="padding_mode"):
        warp_3d(smooth_image(), None, np.eye(4), Lens(), padding_mode="wrap")
    with pytest.raises(ValueError, match="sampling_mode"):
        warp_3d(smooth_image(), None, np.eye(4), Lens(), sampling_mode="lanczos")
