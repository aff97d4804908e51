"""Image prompt / init image files: every bad file gets a clear error; fitting to W x H."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import check_image_file, fit_image, fit_warning, load_image


def _picture(width=40, height=30):
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _save(path, fmt, **kwargs):
    Image.fromarray(_picture()).save(path, fmt, **kwargs)
    return path


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_accepts_jpeg_png_webp(tmp_path, fmt, suffix):
    path = _save(tmp_path / f"ok.{suffix}", fmt)
    assert check_image_file(path, role="image_prompt") == path
    assert check_image_file(str(path), role="init_image") == path
    assert load_image(path).shape == (30, 40, 3)


def _error(path, role="image_prompt", **kwargs) -> str:
    with pytest.raises(SettingsError) as caught:
        check_image_file(path, role=role, **kwargs)
    message = str(caught.value)
    assert str(path) in message and role in message
    return message


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.png")


def test_directory(tmp_path):
    assert "folder" in _error(tmp_path, role="init_image")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    message = _error(path)
    assert "JPEG, PNG, WEBP" in message


def test_gif_is_refused_by_content_not_extension(tmp_path):
    path = tmp_path / "animated.png"  # a GIF in disguise
    Image.fromarray(_picture()).save(path, "GIF")
    message = _error(path)
    assert "GIF" in message and "JPEG, PNG, WEBP" in message


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_truncated_file(tmp_path, fmt, suffix):
    whole = _save(tmp_path / f"whole.{suffix}", fmt).read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    assert "corrupt or truncated" in _error(path)


def test_corrupt_bytes_after_a_valid_header(tmp_path):
    whole = bytearray(_save(tmp_path / "whole.png", "PNG").read_bytes())
    middle = len(whole) // 2
    whole[middle : middle + 40] = bytes(40)  # zeroed image data: the checksum no longer matches
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(whole))
    assert "corrupt or truncated" in _error(path)


def test_oversize_image_prompt_names_limit_and_setting(tmp_path):
    path = _save(tmp_path / "big.png", "PNG")
    message = _error(path, max_bytes=100)
    assert "limit" in message and "image_prompt_max_mb" in message
    assert check_image_file(path, role="image_prompt") == path  # the 5 MB default lets it through


def test_default_image_prompt_limit_is_5_mb(tmp_path):
    path = tmp_path / "noise.png"
    noise = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, "PNG", compress_level=0)  # about 5.9 MB
    assert path.stat().st_size > 5 * 1024 * 1024
    assert "5 MB limit" in _error(path)
    assert check_image_file(path, role="init_image") == path  # init images have no size limit
    assert check_image_file(path, role="color_coherence_image") == path


def _png_header_only(width, height):
    """A PNG whose header claims width x height, with one empty data chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(60_000, 60_000))
    assert "megapixel" in _error(path)


def test_decompression_bomb_small_on_disk(tmp_path):
    path = tmp_path / "bomb2.png"
    Image.new("1", (10_000, 10_000)).save(path, "PNG")  # 100 megapixels, a few kB on disk
    assert path.stat().st_size < 100_000
    assert "megapixel" in _error(path, role="init_image")


def test_load_image_flattens_alpha_and_applies_exif_orientation(tmp_path):
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    flat = load_image(tmp_path / "alpha.png")
    assert flat.dtype == np.uint8 and flat.shape == (10, 20, 3)
    assert tuple(flat[5, 2]) == (200, 0, 0) and tuple(flat[5, 15]) == (255, 255, 255)

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_picture(40, 30)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (40, 30, 3)


@pytest.mark.parametrize("mode", ["resize", "crop", "pad"])
@pytest.mark.parametrize("size", [(40, 30), (17, 90), (300, 200)])
def test_fit_modes_give_exact_size(mode, size):
    image = _picture(*size)
    fitted = fit_image(image, 64, 48, mode)
    assert fitted.shape == (48, 64, 3) and fitted.dtype == np.uint8


def test_fit_modes_keep_or_change_aspect():
    tall = _picture(20, 80)
    padded = fit_image(tall, 64, 64, "pad")  # 16 x 64 picture in the middle, edges extended
    assert np.array_equal(padded[:, 0], padded[:, 23])  # replicated edge column
    cropped = fit_image(tall, 64, 64, "crop")
    assert cropped.shape == (64, 64, 3)
    with pytest.raises(SettingsError, match="resize, crop, pad"):
        fit_image(tall, 64, 64, "zoom")


def test_small_image_warning():
    assert fit_warning(_picture(100, 100), 512, 512) is not None
    assert "100x100" in fit_warning(_picture(100, 100), 512, 512)
    assert fit_warning(_picture(300, 300), 512, 512) is None
    assert fit_warning(_picture(512, 200), 512, 512) is not None
