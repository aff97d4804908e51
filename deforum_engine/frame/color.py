"""Colour coherence: match each frame's per-channel histograms to a fixed reference frame.

The reference is reduced once to per-channel cumulative histograms (256 bins) in the mode's
colour space; each frame then costs one colour conversion each way, three histograms and one
lookup table, with no per-pixel sorting.
"""
from dataclasses import dataclass

import cv2
import numpy as np

# mode -> (RGB to space, space to RGB) OpenCV codes for float32 images in [0, 1], and each
# channel's value range in that space. Conversions are done in float: OpenCV's 8-bit HSV and LAB
# round trips lose a level or more each time, which would drift colours frame after frame.
COLOR_SPACES = {
    "None": None,
    "RGB": None,
    "HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
    "LAB": (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB),
}
CHANNEL_RANGES = {
    "HSV": np.array([[0.0, 360.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32),
    "LAB": np.array([[0.0, 100.0], [-128.0, 127.0], [-128.0, 127.0]], dtype=np.float32),
}

# Affine maps from each space's channel ranges to levels 0..255 (cv2.transform applies them in one pass).
_QUANTISE = {
    mode: np.hstack([np.diag(255 / (r[:, 1] - r[:, 0])), (-r[:, 0] * 255 / (r[:, 1] - r[:, 0]))[:, None]])
    for mode, r in CHANNEL_RANGES.items()
}


@dataclass(frozen=True, eq=False)
class ColorReference:
    """A reference palette: the mode and a (3, 256) array of cumulative histograms in [0, 1].

    Mode "None" holds an empty (0, 256) array. `to_array` / `from_array` round-trip it through a
    plain numpy array (saved with the resume state).
    """

    mode: str
    cdf: np.ndarray

    def __post_init__(self) -> None:
        cdf = np.array(self.cdf, dtype=np.float64)  # a private, read-only copy: it never changes
        cdf.setflags(write=False)
        object.__setattr__(self, "cdf", cdf)

    def to_array(self) -> np.ndarray:
        """The cumulative histograms as a plain float64 array."""
        return np.array(self.cdf, dtype=np.float64)

    @classmethod
    def from_array(cls, mode: str, arr: np.ndarray) -> "ColorReference":
        """Rebuild a reference saved with `to_array`."""
        _check_mode(mode)
        expected = (0, 256) if mode == "None" else (3, 256)
        if np.shape(arr) != expected:
            raise ValueError(f"a {mode} colour reference is {expected}, got {np.shape(arr)}")
        cdf = np.asarray(arr, dtype=np.float64)
        if cdf.size and not (np.all(np.diff(cdf, axis=1) >= 0) and np.allclose(cdf[:, -1], 1.0)):
            raise ValueError("a colour reference's rows must be cumulative histograms rising to 1")
        return cls(mode, cdf)


def _check_mode(mode: str) -> None:
    """Raise ValueError unless mode is a known colour-coherence mode."""
    if mode not in COLOR_SPACES:
        raise ValueError(f"color_coherence must be one of {list(COLOR_SPACES)}, got {mode!r}")


def _to_space(image: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image -> (the mode's colour space, its values quantised to 256 levels per channel)."""
    codes = COLOR_SPACES[mode]
    if codes is None:
        return image, image
    space = cv2.cvtColor(np.multiply(image, np.float32(1 / 255), dtype=np.float32), codes[0])
    return space, cv2.convertScaleAbs(cv2.transform(space, _QUANTISE[mode]))


def _cdfs(image: np.ndarray) -> np.ndarray:
    """(3, 256) cumulative histograms of a 3-channel uint8 image, normalised to end at 1."""
    hists = [cv2.calcHist([image], [c], None, [256], [0, 256]).ravel() for c in range(3)]
    cdf = np.cumsum(np.asarray(hists, dtype=np.float64), axis=1)
    return cdf / cdf[:, -1:]


def _match_lut(source_cdf: np.ndarray, reference_cdf: np.ndarray) -> np.ndarray:
    """256-entry table sending each level to the reference level at the same quantile."""
    present = np.diff(reference_cdf, prepend=0.0) > 0
    levels = np.flatnonzero(present)
    return np.interp(source_cdf, reference_cdf[present], levels)


def color_reference(image: np.ndarray, mode: str) -> ColorReference:
    """Reduce a reference frame to its per-channel cumulative histograms in the mode's space."""
    _check_mode(mode)
    if mode == "None":
        return ColorReference(mode, np.zeros((0, 256)))
    return ColorReference(mode, _cdfs(_to_space(image, mode)[1]))


def match_color(image: np.ndarray, reference: ColorReference) -> np.ndarray:
    """Histogram-match each channel of the image to the reference, in the reference's space.

    Each pixel moves by its level's shift in the lookup table, keeping its exact value otherwise,
    so a frame that already matches the reference comes back unchanged.
    """
    if reference.mode == "None":
        return image
    space, levels = _to_space(image, reference.mode)
    source_cdf = _cdfs(levels)
    tables = np.stack([_match_lut(source_cdf[c], reference.cdf[c]) for c in range(3)], axis=-1)
    codes = COLOR_SPACES[reference.mode]
    if codes is None:
        return cv2.LUT(image, np.rint(tables).astype(np.uint8).reshape(256, 1, 3))
    step = (CHANNEL_RANGES[reference.mode][:, 1] - CHANNEL_RANGES[reference.mode][:, 0]) / 255
    shifts = ((tables - np.arange(256)[:, None]) * step).astype(np.float32).reshape(256, 1, 3)
    matched = cv2.add(space, cv2.LUT(levels, shifts))
    return cv2.convertScaleAbs(cv2.cvtColor(matched, codes[1]), alpha=255)
