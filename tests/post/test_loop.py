"""Seamless loops: the last frames dissolve back to frame 0; the seam is no larger than a usual step."""
import numpy as np

from deforum_engine import render
from deforum_engine.config.settings import validate_settings
from deforum_engine.post.frames import open_source
from deforum_engine.post.loop import choose_loop_frames, loop_weight, looped, seam_and_median


def test_the_weights_climb_evenly_to_frame_0():
    assert [loop_weight(i, 10, 4) for i in range(10)] == [0] * 6 + [0.2, 0.4, 0.6, 0.8]
    assert all(loop_weight(i, 10, 0) == 0 for i in range(10))
    frames = [np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200, 250)]
    assert [int(f[0, 0, 0]) for f in looped(frames, 4, 2)] == [0, 100, 133, 83]


def test_a_loop_render_has_no_jump_at_the_seam(tmp_path):
    settings = validate_settings({"W": 64, "H": 64, "max_frames": 24, "seed": 5, "zoom": "0:(1.04)",
                                  "angle": "0:(1.5)", "video_preset": "ultrafast"})
    folder = render(settings, out=tmp_path / "r", preview=True, quiet=True).folder
    raw = open_source(folder)
    seam, median = seam_and_median(raw.frames())
    assert seam > 2 * median  # without the loop, the video jumps back to frame 0
    length = choose_loop_frames(raw.frames, raw.count)
    assert 1 <= length <= 11
    seam, median = seam_and_median(open_source(folder, loop_frames=length).frames())
    assert seam <= median
