"""Patch extraction: the one way patches are cut out of an image.

The image is padded by :data:`PAD` = 20 px with OpenCV's ``BORDER_REFLECT``
(edge pixel repeated); the 41 x 41 patch of pixel (y, x) is then
``padded[y:y + 41, x:x + 41]``, so it is centred on (y, x). The 27 and 15 px
scales are cut out of it inside the networks (see :mod:`defocus.nets`).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

PATCH = 41
PAD = PATCH // 2
#: (top, bottom) = (left, right) crops that cut P27 and P15 out of P41.
CROP_27 = (8, 6)
CROP_15 = (14, 12)


def pad_image(image: np.ndarray) -> np.ndarray:
    """Reflect-pad an (H, W, C) image by 20 px on every side."""
    h, w = image.shape[:2]
    if min(h, w) < PATCH:
        raise ValueError(f"image is {w}x{h} px; at least {PATCH}x{PATCH} px is needed (the patch size)")
    return cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT)


def extract_patches(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """41 x 41 patches centred on pixels (ys, xs) of the unpadded image.

    Parameters
    ----------
    padded : ndarray, (H + 40, W + 40, C)
        Output of :func:`pad_image`.
    ys, xs : int arrays, (N,)
        Pixel coordinates in the unpadded image.

    Returns
    -------
    patches : ndarray, (N, 41, 41, C), same dtype as ``padded``
    """
    windows = np.lib.stride_tricks.sliding_window_view(padded, (PATCH, PATCH), axis=(0, 1))
    return np.ascontiguousarray(windows[np.asarray(ys), np.asarray(xs)].transpose(0, 2, 3, 1))


def iter_patch_batches(
    image: np.ndarray, ys: np.ndarray, xs: np.ndarray, batch_size: int = 256
) -> Iterator[np.ndarray]:
    """Yield float32 patch batches of at most ``batch_size``, in the order of (ys, xs).

    Memory stays bounded by one batch (``batch_size * 41 * 41 * 3 * 4`` bytes)
    whatever the number of pixels.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    padded = pad_image(np.asarray(image, dtype=np.float32))
    for start in range(0, len(ys), batch_size):
        yield extract_patches(padded, ys[start : start + batch_size], xs[start : start + batch_size])
