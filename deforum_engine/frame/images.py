"""Image files in and out of the engine: checking, loading and fitting to W x H.

Light on purpose (PIL and numpy only): settings validation calls `check_image_file` for the image
prompt and the init image before any model loads, so a bad file costs milliseconds, not a model
load. Images inside the engine are H x W x 3 uint8 RGB numpy arrays.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deforum_engine.config.choices import INIT_FITS
from deforum_engine.errors import SettingsError
from deforum_engine.limits import Limits, env_name

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
_ACCEPTED_FORMATS = ALLOWED_FORMATS + ("MPO",)  # MPO: a JPEG with extra frames, as many phone cameras write
IMAGE_PROMPT_MAX_MB = 5.0  # the default limit for image prompts (setting `image_prompt_max_mb`)

ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are flattened on white

_ROLE_LIMITS = {"image_prompt": int(IMAGE_PROMPT_MAX_MB * 1024 * 1024)}  # other roles: no default limit
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)


def max_pixels() -> int:
    """Larger input images are refused (decompression bombs, and renders that would need gigabytes to load
    them): 40 megapixels unless DEFORUM_ENGINE_MAX_MEGAPIXELS says otherwise (limits.py)."""
    return int(Limits.from_env().max_megapixels * 1_000_000)


def check_image_file(path: str | Path, *, role: str, max_bytes: int | None = None) -> Path:
    """Check that `path` is a readable, complete JPEG, PNG or WEBP image; return it as a Path.

    `role` is the setting that names the file ("image_prompt", "init_image", ...), used in messages.
    `max_bytes` defaults to 5 MB for image prompts (setting `image_prompt_max_mb`) and no limit for
    other roles. Every problem is a SettingsError naming the file and what is allowed.
    """
    path = Path(path).expanduser()
    if max_bytes is None:
        max_bytes = _ROLE_LIMITS.get(role)
    size = _check_file_exists(path, role)
    if max_bytes is not None and size > max_bytes:
        raise_hint = " or raise the limit with `image_prompt_max_mb`" if role == "image_prompt" else ""
        raise SettingsError(
            f"{role}: {path} is {_size_text(size)}, over the {_size_text(max_bytes)} limit; "
            f"use a smaller image{raise_hint}"
        )
    _check_decodes(path, role)
    return path


def _size_text(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MB" if size >= 100 * 1024 else f"{size} bytes"


def _check_file_exists(path: Path, role: str) -> int:
    """Return the file's size in bytes, or raise SettingsError if it is missing, a folder or empty."""
    if not path.exists():
        raise SettingsError(f"{role}: {path} does not exist; give a JPEG, PNG or WEBP file")
    if path.is_dir():
        raise SettingsError(f"{role}: {path} is a folder; give a JPEG, PNG or WEBP file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise SettingsError(f"{role}: {path} cannot be read ({error.strerror or error})") from error
    if size == 0:
        raise SettingsError(f"{role}: {path} is empty (0 bytes); give a JPEG, PNG or WEBP file")
    return size


def _check_decodes(path: Path, role: str) -> None:
    """Open the file by content, check format and pixel count, then decode it fully."""
    allowed = ", ".join(ALLOWED_FORMATS)
    try:
        with _open_guarded(path) as image:
            if image.format not in _ACCEPTED_FORMATS:
                raise SettingsError(
                    f"{role}: {path} is a {image.format or 'unknown'} image; allowed formats: {allowed}"
                )
            width, height = image.size
            if width * height > max_pixels():
                raise SettingsError(_bomb_message(role, path, f"{width}x{height} pixels"))
            image.verify()  # checks structure and checksums (PNG CRCs) without decoding pixels
        with _open_guarded(path) as image:
            image.load()  # a full decode: catches truncated and corrupt pixel data
    except SettingsError:
        raise
    except UnidentifiedImageError as error:
        raise SettingsError(f"{role}: {path} is not an image PIL recognises; allowed formats: {allowed}") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "a huge size"
        raise SettingsError(_bomb_message(role, path, size)) from error
    except _DECODE_ERRORS as error:
        raise SettingsError(f"{role}: {path} is corrupt or truncated ({error}); re-export it as {allowed}") from error


def _open_guarded(path: Path) -> Image.Image:
    """Image.open with PIL's decompression-bomb warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _bomb_message(role: str, path: Path, size: str) -> str:
    return (
        f"{role}: {path} is {size}, over the {max_pixels() / 1e6:g} megapixel limit "
        "(a decompression bomb or a very large image); use an image of at most a few thousand pixels a side "
        f"(or raise the limit with {env_name('max_megapixels')})"
    )


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as H x W x 3 uint8 RGB: EXIF orientation applied, transparency on white."""
    path = Path(path).expanduser()
    try:
        with _open_guarded(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(_to_rgb(image), dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SettingsError(f"{path} cannot be loaded as an image ({error})") from error
    except _DECODE_ERRORS as error:
        raise SettingsError(f"{path} cannot be loaded as an image ({error})") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, flattening transparency on ALPHA_BACKGROUND."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_image(image: np.ndarray, width: int, height: int, mode: str = "crop",
              resize: Callable[[np.ndarray, int, int], np.ndarray] | None = None) -> np.ndarray:
    """Bring an H x W x 3 uint8 image to `height` x `width`.

    resize: stretch to the size (the aspect ratio may change).
    crop: scale to cover the size, then cut the centre.
    pad: scale to fit inside the size, then extend the edge pixels outward (no black bars, which
    img2img would keep as dark borders).
    `resize` resamples (default: Lanczos through PIL; a clip's frames use OpenCV's, which is faster).
    """
    _resized = resize or _lanczos
    if mode not in INIT_FITS:
        raise SettingsError(f"init_fit: {mode!r} is not a fit mode; choose one of {', '.join(INIT_FITS)}")
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    if mode == "resize":
        return _resized(image, width, height)
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
        new_w, new_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return _resized(image, new_w, new_h)[top : top + height, left : left + width].copy()
    scale = min(width / src_w, height / src_h)
    new_w, new_h = min(width, max(1, round(src_w * scale))), min(height, max(1, round(src_h * scale)))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    pads = ((top, height - new_h - top), (left, width - new_w - left), (0, 0))
    return np.pad(_resized(image, new_w, new_h), pads, mode="edge")


def _lanczos(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample with Lanczos to width x height."""
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS), dtype=np.uint8)


def fit_warning(image: np.ndarray, width: int, height: int) -> str | None:
    """A warning when the image is less than half the render size in either side, else None."""
    src_h, src_w = image.shape[:2]
    if src_w * 2 >= width and src_h * 2 >= height:
        return None
    return (
        f"the image is {src_w}x{src_h}, much smaller than the render size {width}x{height}: "
        "it will be upscaled and look soft; use a larger image for sharper frames"
    )
