"""Colour coherence: match each frame's per-channel histograms to a fixed reference frame.

The reference is reduced once to per-channel cumulative histograms (256 bins) in the mode's
colour space; each frame then costs one colour conversion each way, three histograms and one
lookup table, with no per-pixel sorting.
"""
from dataclasses import dataclass

import cv2
import numpy as np

# mode -> (RGB to space, space to RGB) OpenCV codes; None means the RGB values themselves.
# HSV uses the _FULL codes so that hue spans all 256 levels.
COLOR_SPACES = {
    "None": None,
    "RGB": None,
    "HSV": (cv2.COLOR_RGB2HSV_FULL, cv2.COLOR_HSV2RGB_FULL),
    "LAB": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB),
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


def _to_space(image: np.ndarray, mode: str) -> np.ndarray:
    """RGB image -> the mode's colour space, uint8 channels."""
    codes = COLOR_SPACES[mode]
    return image if codes is None else cv2.cvtColor(image, codes[0])


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
    return ColorReference(mode, _cdfs(_to_space(image, mode)))


def match_color(image: np.ndarray, reference: ColorReference) -> np.ndarray:
    """Histogram-match each channel of the image to the reference, in the reference's space."""
    if reference.mode == "None":
        return image
    space = _to_space(image, reference.mode)
    source_cdf = _cdfs(space)
    tables = [_match_lut(source_cdf[c], reference.cdf[c]) for c in range(3)]
    lut = np.rint(np.stack(tables, axis=-1)).astype(np.uint8).reshape(256, 1, 3)
    matched = cv2.LUT(space, lut)
    codes = COLOR_SPACES[reference.mode]
    return matched if codes is None else cv2.cvtColor(matched, codes[1])
