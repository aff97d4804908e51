"""Every closed set of allowed values, written once: the settings model, the importers and the
modules that act on a choice all read these tuples, so a list cannot drift from its check.

Deforum's spellings where Deforum has the setting. `canonical` matches a choice whatever its case,
as Deforum's UI stores some choices capitalised and its files are edited by hand.
"""
from __future__ import annotations

ANIMATION_MODES = ("2D", "3D", "None", "Video Input")
SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
BORDERS = ("replicate", "wrap", "reflect")
PADDING_MODES = ("border", "reflection", "zeros")
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")
COLOR_COHERENCES = ("None", "RGB", "HSV", "LAB", "Image", "Video Input")
COLOR_COHERENCE_SOURCES = ("init_image", "first_frame")
NOISE_TYPES = ("uniform", "perlin")
INIT_FITS = ("resize", "crop", "pad")
IMAGE_PROMPT_MODES = ("all", "style", "layout")
DTYPES = ("float32", "float16", "bfloat16")
VAES = ("full", "tiny")
# Deforum's add_soundtrack values; the engine's own files use true / false.
SOUNDTRACK_CHOICES = ("None", "File", "Init Video")
# ffmpeg's libx264 presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# Deforum's depth_algorithm names (models/depth.py says what loads for each); Deforum Studio's alias.
DEPTH_ALGORITHMS = ("Midas-3-Hybrid", "Midas-3.1-BeitLarge", "Zoe", "Depth-Anything-V2-Small", "Leres", "AdaBins",
                    "Midas+AdaBins (old)", "Zoe+AdaBins (old)")
DEPTH_ALGORITHM_ALIASES = {"depth-anything": "Depth-Anything-V2-Small"}
DEPTH_NORMALIZATIONS = ("steady", "per_frame")
# Video in (video/): Deforum's hybrid video and optical-flow choices.
FLOW_METHODS = ("RAFT", "DIS Medium", "DIS Fine", "Farneback")
HYBRID_COMPOSITES = ("None", "Normal", "Before Motion", "After Generation")
HYBRID_MOTIONS = ("None", "Optical Flow", "Perspective", "Affine")
HYBRID_MASK_TYPES = ("None", "Depth", "Video Depth", "Blend", "Difference")
HYBRID_MASK_EQUALIZE = ("None", "Before", "After", "Both")
HUMAN_MASKS = ("None", "PNGs", "Video", "Both")
# After the render (post/): Deforum's "RIFE v4.6" and the like are read as RIFE.
FRAME_INTERPOLATION_ENGINES = ("None", "RIFE")
UPSCALE_FACTORS = ("x2", "x3", "x4")


def canonical(value: str, allowed: tuple[str, ...], aliases: dict[str, str] | None = None) -> str | None:
    """`value` as it is spelled in `allowed`, matched without regard to case or surrounding spaces; None
    when it is not one of them."""
    key = value.strip().lower()
    by_key = {choice.lower(): choice for choice in allowed}
    by_key.update({alias.lower(): target for alias, target in (aliases or {}).items()})
    return by_key.get(key)


def allowed_text(allowed: tuple[str, ...]) -> str:
    """The choices as an error message lists them."""
    return ", ".join(repr(choice) for choice in allowed)
