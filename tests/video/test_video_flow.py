"""Optical flow with OpenCV (DIS Medium, DIS Fine, Farneback), pictures moved along a flow, and
Deforum's forward/backward consistency check."""
import numpy as np
import pytest

from deforum_engine.errors import SettingsError
from deforum_engine.video.flow import (OPENCV_METHODS, choose_flow, consistent_flow, flow_reliability, raft_available,
                                       warp_by_flow)
from video_clips import PAN, measured_shift, panned_frames, psnr


@pytest.fixture(scope="module")
def pair():
    return panned_frames(2, 96, 96)


@pytest.mark.parametrize("method", OPENCV_METHODS)
def test_each_method_recovers_the_pan(pair, method):
    flow = choose_flow(method, "hybrid_flow_method")(*pair)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    centre = flow[24:72, 24:72]
    assert abs(np.median(centre[..., 0]) - PAN) <= 0.5
    assert abs(np.median(centre[..., 1])) <= 0.5


@pytest.mark.parametrize("method", OPENCV_METHODS)
def test_moving_along_the_flow_gives_the_next_frame(pair, method):
    flow = choose_flow(method, "hybrid_flow_method")(*pair)
    moved = warp_by_flow(pair[0], flow)
    assert psnr(moved[8:-8, 8:-8], pair[1][8:-8, 8:-8]) > 35
    dx, dy = measured_shift(pair[0], warp_by_flow(pair[0], flow, 0.5))  # the flow factor scales the move
    assert abs(dx - PAN / 2) <= 0.5 and abs(dy) <= 0.5


def test_a_uniform_flow_moves_the_picture_exactly():
    picture = panned_frames(1, 64, 64)[0]
    flow = np.zeros((64, 64, 2), np.float32)
    flow[..., 0] = 2.0
    moved = warp_by_flow(picture, flow)
    assert np.array_equal(moved[:, 2:], picture[:, :-2])


def test_reliability_is_one_where_the_flows_agree_and_minus_three_quarters_elsewhere():
    forward = np.zeros((32, 32, 2), np.float32)
    forward[..., 0] = 3.0
    backward = -forward
    assert np.all(flow_reliability(forward, backward) == 1.0)
    backward = backward.copy()
    backward[10:20, 5:15] = 0.0  # forward lands here (x + 3 in 8..18) and is not sent back
    reliability = flow_reliability(forward, backward)
    assert np.all(reliability[10:20, 2:12] == -0.75)
    assert reliability[0, 0] == 1.0 and set(np.unique(reliability)) == {-0.75, 1.0}


def test_consistent_flow_keeps_a_clean_pan_and_blurs_the_check(pair):
    flow = consistent_flow(*pair, choose_flow("DIS Medium", "hybrid_flow_method"), blur=2)
    assert abs(np.median(flow[24:72, 24:72, 0]) - PAN) <= 0.5


def test_unknown_method_is_an_error():
    with pytest.raises(SettingsError, match="optical_flow_cadence: 'DIS Slow' is not a flow method; choose one of"):
        choose_flow("DIS Slow", "optical_flow_cadence")


@pytest.mark.skipif(raft_available(), reason="torchvision is installed here")
def test_raft_without_torchvision_names_the_alternative():
    with pytest.raises(SettingsError, match="hybrid_flow_method: RAFT needs torchvision.*use 'DIS Fine'"):
        choose_flow("RAFT", "hybrid_flow_method")


def test_matrices_become_moves_that_compose_and_invert():
    from deforum_engine.video.flow import compose_flows, invert_flow, matrix_flow
    from deforum_engine.video.hybrid import warp_by_matrix
    picture = panned_frames(1, 96, 96)[0]
    shift = np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])
    turn = np.array([[0.99, -0.05, 4.0], [0.05, 0.99, -2.0], [0, 0, 1]])
    move = matrix_flow(shift, 96, 96)
    assert np.allclose(move, [3.0, -2.0])
    assert np.array_equal(warp_by_flow(picture, move)[8:-8, 8:-8], warp_by_matrix(picture, shift)[8:-8, 8:-8])
    both = compose_flows(move, matrix_flow(turn, 96, 96))
    assert np.abs(both - matrix_flow(turn @ shift, 96, 96))[8:-8, 8:-8].max() < 1e-3
    back = invert_flow(both)
    assert np.abs(back - matrix_flow(np.linalg.inv(turn @ shift), 96, 96))[8:-8, 8:-8].max() < 0.01
