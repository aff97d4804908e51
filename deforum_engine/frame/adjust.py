"""Per-frame tone steps: contrast about the frame's mean, and the anti-blur unsharp mask."""
import cv2
import numpy as np


def adjust_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """Scale every value's distance from the frame's mean level by `contrast` (1 = unchanged).

    The mean is taken over all pixels and channels, so the average brightness stays put.
    Deliberately unlike Deforum, which multiplies the pixel values (`img * contrast`) and so
    brightens or darkens the whole frame as well, drifting over a render.
    """
    if contrast == 1:
        return image
    mean = float(np.mean(cv2.mean(image)[:3]))
    levels = np.arange(256, dtype=np.float64)
    lut = np.clip(np.rint(mean + (levels - mean) * contrast), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def _odd_kernel(kernel: float) -> int:
    """Round a kernel size to an odd int >= 1, or 0 (let sigma choose the size)."""
    k = int(round(kernel))
    if k <= 0:
        return 0
    return k if k % 2 == 1 else k + 1


def unsharp_mask(
    image: np.ndarray, kernel: float, sigma: float, amount: float, threshold: float
) -> np.ndarray:
    """Anti-blur: image + amount * (image - gaussian_blur(image)), saturated to 0..255.

    `kernel` is rounded to an odd size (an even one goes up by 1; 0 lets sigma set the size;
    sigma 0 lets the kernel set sigma). `threshold` is in 0-255 levels, as in Deforum: values
    whose difference from the blurred frame is below it (per channel) keep their original
    value, so flat areas and fine grain are not sharpened. amount 0 returns the input.
    """
    k = _odd_kernel(kernel)
    if amount == 0 or (k == 0 and sigma <= 0):
        return image
    blurred = cv2.GaussianBlur(image, (k, k), max(float(sigma), 0.0))
    sharpened = cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0.0)
    if threshold > 0:
        # A comparison in numpy, not cv2.compare: OpenCV turns a Python float into the scalar
        # (t, 0, 0, 0), which would test only the first channel against the threshold.
        flat = cv2.absdiff(image, blurred) < threshold
        np.copyto(sharpened, image, where=flat)
    return sharpened
