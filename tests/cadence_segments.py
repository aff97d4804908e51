"""A cadence segment between two known pictures, for the 2D and 3D in-between tests."""
import numpy as np


def in_betweens_of_two_textures(plan, cadence: int = 4):
    """A cadence segment's in-between frames between two unrelated blurred-noise keys, for a preview
    loop over `plan`: (loop, older, newer, motion, {index: in-between frame})."""
    import cv2

    from deforum_engine.backends.preview import PreviewBackend
    from deforum_engine.rendering.loop import FrameLoop, Key

    loop = FrameLoop.for_render(plan, PreviewBackend(), None)
    rng = np.random.default_rng(3)
    size = (plan.canvas.height, plan.canvas.width, 3)
    older, newer = (cv2.GaussianBlur(rng.integers(0, 256, size, dtype=np.uint8), (0, 0), 1.5) for _ in range(2))
    motion = loop.motion(0, cadence)
    return loop, older, newer, motion, dict(loop.in_between(Key(older), Key(newer), motion, 0))
