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


def padded_window(image: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``pad_image(image)[r0:r1, c0:c1]`` without padding the whole image.

    Rows and columns are in padded coordinates (image pixel (y, x) is padded
    (y + PAD, x + PAD)); positions beyond the padded image are 0. Only the window is
    allocated, so a tiled pass over a large photo needs no padded copy of it.

    Parameters
    ----------
    image : ndarray, (H, W, C)
    r0, r1, c0, c1 : int
        Window bounds, 0 <= r0 < r1 and 0 <= c0 < c1.

    Returns
    -------
    window : ndarray, (r1 - r0, c1 - c0, C), same dtype as ``image``
    """
    h, w = image.shape[:2]
    if min(h, w) < PATCH:
        raise ValueError(f"image is {w}x{h} px; at least {PATCH}x{PATCH} px is needed (the patch size)")
    out = np.zeros((r1 - r0, c1 - c0, *image.shape[2:]), image.dtype)
    rows = np.arange(r0, min(r1, h + 2 * PAD)) - PAD
    cols = np.arange(c0, min(c1, w + 2 * PAD)) - PAD
    out[: len(rows), : len(cols)] = image[np.ix_(_reflect(rows, h), _reflect(cols, w))]
    return out


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Indices -PAD..n + PAD - 1 mapped into 0..n - 1 as ``cv2.BORDER_REFLECT`` does (edge repeated)."""
    i = np.where(i < 0, -i - 1, i)
    return np.where(i >= n, 2 * n - 1 - i, i)


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


def rot_margin(size: int = PATCH) -> int:
    """Half-size of the window that holds a ``size`` x ``size`` patch rotated by any
    angle, ``ceil((size // 2) * sqrt(2))`` px: centres closer than this to the border
    cannot be cut out rotated."""
    return int(np.ceil((size // 2) * np.sqrt(2)))


#: :func:`rot_margin` of a 41 x 41 patch (29 px): edge pixels closer than this to the
#: border are not sampled for training.
ROT_MARGIN = rot_margin(PATCH)


def extract_rotated(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, angles: np.ndarray,
                    size: int = PATCH, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``size`` x ``size`` patches (41 x 41 by default) centred on (ys, xs), each rotated
    about its centre by its angle.

    Parameters
    ----------
    image : ndarray, (H, W, C) or (H, W), uint8 or float
        The image itself (not padded): every centre must lie at least
        ``rot_margin(size)`` px inside it.
    ys, xs : int arrays, (N,)
    angles : int or float array, (N,)
        Degrees, counter-clockwise as displayed (OpenCV's convention). Multiples
        of 90 are exact (pixel permutations); other angles interpolate (bilinear by
        default) over a ``2 * rot_margin(size) + 1`` px window (59 x 59 for 41), so no
        pixel of the result is padding.
    size : int
        Odd side of the patches, px.
    interpolation : OpenCV flag
        ``cv2.INTER_NEAREST`` for label masks.

    Returns
    -------
    patches : ndarray, (N, size, size, C) (or (N, size, size)), dtype of ``image``
    """
    ys, xs, angles = (np.asarray(a) for a in (ys, xs, angles))
    if size % 2 != 1:
        raise ValueError(f"patch size must be odd, got {size}")
    h, w = image.shape[:2]
    m, half = rot_margin(size), size // 2
    if len(ys) and (ys.min() < m or xs.min() < m or ys.max() >= h - m or xs.max() >= w - m):
        raise ValueError(f"patch centres must lie at least {m} px inside the {w}x{h} image")
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    out = np.ascontiguousarray(np.moveaxis(windows[ys - half, xs - half], (-2, -1), (1, 2)))
    quarter = np.mod(angles, 90) == 0
    for i in np.flatnonzero(quarter & (np.mod(angles, 360) != 0)):
        out[i] = np.rot90(out[i], k=int(angles[i] // 90) % 4)
    for i in np.flatnonzero(~quarter):
        y, x = int(ys[i]), int(xs[i])
        window = image[y - m : y + m + 1, x - m : x + m + 1]
        rot = cv2.getRotationMatrix2D((float(m), float(m)), float(angles[i]), 1.0)
        rot[:, 2] -= m - half
        out[i] = cv2.warpAffine(window, rot, (size, size), flags=interpolation).reshape(out[i].shape)
    return out
