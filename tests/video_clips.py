"""Clips made in the tests: a smooth random texture panned a known number of pixels per frame,
encoded with ffmpeg (imageio-ffmpeg), so decoding, frame mapping and motion can be checked."""
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

PAN = 3  # pixels the picture moves right per frame


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth coloured noise with detail at several scales (something flow and features can lock onto)."""
    rng = np.random.default_rng(seed)
    picture = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((2.0, 0.3), (5.0, 0.5), (12.0, 0.6)):
        layer = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), sigma)
        picture += weight * layer / (layer.std() + 1e-6)
    return np.clip(128 + 40 * picture, 0, 255).astype(np.uint8)


def panned_frames(count: int, width: int = 64, height: int = 64, pan: int = PAN, seed: int = 0) -> list[np.ndarray]:
    """Frame t shows the texture moved `pan` * t pixels right."""
    margin = pan * count + 8
    big = texture(width + margin, height, seed)
    return [np.ascontiguousarray(big[:, margin - pan * t: margin - pan * t + width]) for t in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 15, crf: int = 4,
               audio: Path | None = None) -> Path:
    """Encode frames as H.264 (yuv420p, high quality), optionally with an audio track."""
    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         output_params=["-crf", str(crf)], macro_block_size=1, audio_path=
                                         str(audio) if audio else None, audio_codec="aac" if audio else None)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def panned_clip(folder: Path, count: int = 12, width: int = 64, height: int = 64, name: str = "pan.mp4",
                **kwargs) -> tuple[Path, list[np.ndarray]]:
    """A panned clip on disk and the frames it was made from."""
    frames = panned_frames(count, width, height)
    return write_clip(folder / name, frames, **kwargs), frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0 ** 2 / error)


def measured_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far picture b is moved from picture a (x, y), by phase correlation on the centre."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, window)
    return dx, dy
