"""Non-blind deblurring driven by a blur map (the paper's Table II).

A blur map (disk radius in px per pixel, as estimated by the project) tells
which disk PSF blurred each pixel. :func:`deconvolve` removes one uniform disk
blur from a whole image with a Wiener-Hunt filter; :func:`deblur` removes a
spatially varying one by deconvolving the image once per radius level the map
spans and picking, per pixel, the deconvolution of the pixel's radius, blended
linearly between the two nearest levels.

Images are RGB (or grey) float in [0, 1]; radii are disk radii in px, the PSF
being :func:`defocus.synthesis.disk_kernel` (the project's one disk kernel).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.restoration import wiener

from .synthesis import disk_blur, disk_kernel

#: Step in px of the default radius grid of :func:`deblur` (the B-NET class step).
RADIUS_STEP = 0.25
#: Largest radius in px of the default grid (the largest B-NET class).
MAX_RADIUS = 6.0

#: Default Wiener-Hunt ``balance`` (weight of the Laplacian prior), chosen by measurement:
#: see :func:`deconvolve`.
DEFAULT_BALANCE = 3e-4


def _mirror_size(n: int, kernel_side: int) -> int:
    """Length of the mirrored extension of an axis of ``n`` px: a multiple of 2 n, at least the kernel side."""
    return 2 * n * max(1, math.ceil(kernel_side / (2 * n)))


def deconvolve(image: np.ndarray, radius: float, balance: float = DEFAULT_BALANCE) -> np.ndarray:
    """Remove a uniform disk blur of known radius (Wiener-Hunt deconvolution).

    Each channel is deconvolved with :func:`skimage.restoration.wiener`, the PSF
    being :func:`defocus.synthesis.disk_kernel` of ``radius`` and the prior the
    default Laplacian (high-frequency penalty) weighted by ``balance``.

    Borders: the filter works in the Fourier domain (circular convolution), so
    the image is first extended by reflection to twice its size along each axis
    (``[I, flip(I)]``: ``numpy.pad(mode="symmetric")``, the reflection of
    :func:`defocus.synthesis.disk_blur`'s ``BORDER_REFLECT``), more periods being
    added if the kernel is larger than that. This padding (>= the image size, so
    >= the kernel size for any image larger than the kernel) is periodic, hence
    the circular model has no seam at all, and for the symmetric disk PSF it is
    exactly the reflective boundary condition (the DCT-based deconvolution): a
    photo blurred by :func:`~defocus.synthesis.disk_blur` is deconvolved without
    border ringing. The result is cropped back and clipped to [0, 1]. (A plain
    reflective pad of 2 kernel sides instead left ringing that cost up to
    9 dB at r = 4 with balance 1e-4.)

    Choice of ``balance`` (default :data:`DEFAULT_BALANCE` = 3e-4). Measured on
    the 8 held-out COCO photos (``data/raw/heldout/coco``, about 480 x 640 px):
    each photo blurred by :func:`~defocus.synthesis.disk_blur` of radius r,
    quantised to 8 bits (as any saved photo) and deconvolved; mean PSNR (dB)
    against the sharp photo. Column Q: deconvolved with the true radius, per r
    (blurry input: 27.53, 23.51, 22.09, 21.33 dB for r = 1, 2, 3, 4) and mean
    over r; then the mean over r = 1 .. 4 for N: Gaussian noise of sigma 0.005
    added before quantisation, M+ / M-: deconvolved with r + 0.25 / r - 0.25
    (an error of one step of the blur map's grid); All: mean of Q, N, M+, M-::

        balance   Q r=1   r=2    r=3    r=4    mean  |   N      M+     M-   |  All
        1e-5      38.01  31.92  28.96  27.65  31.64  | 21.23  19.04  24.05 | 23.99
        3e-5      38.11  31.95  29.19  27.96  31.80  | 23.70  21.44  25.35 | 25.57
        1e-4      37.21  30.76  28.36  27.21  30.88  | 25.92  23.79  26.27 | 26.72
        3e-4      35.71  28.88  27.22  26.13  29.48  | 26.96  25.29  26.51 | 27.06
        1e-3      33.63  26.95  25.94  25.05  27.89  | 26.94  25.93  26.26 | 26.76
        3e-3      31.47  25.84  24.82  24.23  26.59  | 26.27  25.69  25.77 | 26.08
        1e-2      29.12  25.09  23.90  23.39  25.38  | 25.29  24.98  25.09 | 25.19

    With an exact radius and no noise but quantisation, 3e-5 is best, but with
    a 0.25 px radius error it falls below the blurry input (21.44 against
    23.62 dB, mean over r) and with mild noise it gains nothing (23.70 against
    23.57): a blur map estimated from a real photo has both. 3e-4 is the best
    overall (All) and gains 4.8 .. 8.2 dB over the blurry input with the true
    radius, so it is the default; pass a smaller balance for clean synthetic
    data with exact radii. Richardson-Lucy
    (:func:`skimage.restoration.richardson_lucy`, reflective padding) was
    measured too, on 200 x 200 crops of 4 of the photos (Q, mean over r):
    24.82 / 26.34 / 27.92 dB after 10 / 30 / 100 iterations against 28.79 dB for
    Wiener at 3e-4 (31.35 at 3e-5), and 100 iterations ran 20 times longer, so
    Wiener is used.

    Parameters
    ----------
    image : ndarray, (H, W, C) or (H, W), float in [0, 1]
        The blurred image.
    radius : float
        Disk radius of the blur, px. A radius <= 0.5 returns the image unchanged
        (as float32): the disk kernel is then the identity.
    balance : float, > 0
        Weight of the Laplacian prior; larger values smooth more and ring less.

    Returns
    -------
    restored : ndarray, same shape as ``image``, float32 in [0, 1]
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    radius = float(radius)
    if not math.isfinite(radius):
        raise ValueError(f"radius must be finite, got {radius}")
    if not balance > 0:
        raise ValueError(f"balance must be > 0, got {balance}")
    if radius <= 0.5:
        return image.astype(np.float32, copy=True)
    psf = disk_kernel(radius)
    grey = image.ndim == 2
    # float32 throughout (skimage keeps the input's precision): the PSNR equals float64's
    # to 1e-4 dB, at under half the memory and time
    img = (image[..., None] if grey else image).astype(np.float32)
    h, w = img.shape[:2]
    ph, pw = _mirror_size(h, psf.shape[0]), _mirror_size(w, psf.shape[1])
    out = np.empty(img.shape, np.float32)
    for c in range(img.shape[2]):  # one channel's mirror at a time bounds the memory
        padded = np.pad(img[..., c], ((0, ph - h), (0, pw - w)), mode="symmetric")
        out[..., c] = wiener(padded, psf, balance, clip=False)[:h, :w]
    np.clip(out, 0.0, 1.0, out=out)
    return out[..., 0] if grey else out


def default_radii(blur_map: np.ndarray) -> np.ndarray:
    """The radius levels :func:`deblur` uses by default for this map, px.

    The 0.25 px grid 0, 0.25, ..., 6.0 restricted to the map's range: from the
    grid level at or below the map's minimum to the one at or above its maximum
    (both clamped to [0, 6]), so that every map value is bracketed by two levels.
    """
    m = np.asarray(blur_map, dtype=np.float64)
    if m.size == 0 or not np.isfinite(m).all():
        raise ValueError("blur map must be non-empty and finite")
    n = round(MAX_RADIUS / RADIUS_STEP)
    lo = min(max(math.floor(m.min() / RADIUS_STEP + 1e-9), 0), n)
    hi = min(max(math.ceil(m.max() / RADIUS_STEP - 1e-9), 0), n)
    return RADIUS_STEP * np.arange(lo, hi + 1, dtype=np.float64)


#: Guard band, in units of the level's radius: a level is deconvolved only where the map
#: stays within :data:`LEVEL_TOL` of it over a disk of ``GUARD * r`` px.
GUARD = 2.0
#: px; the map's level step.
LEVEL_TOL = 0.25


def _consistent(image: np.ndarray, blur_map: np.ndarray, radius: float, guard: float, tol: float) -> np.ndarray:
    """The image made consistent with one disk PSF before deconvolving it.

    Where the map stays within ``tol`` of ``radius`` over a disk of ``guard *
    radius`` px, the image is kept; elsewhere it is replaced by itself blurred
    with that PSF (which deconvolves back to itself, without ringing), the two
    blended by a Gaussian of std ``radius``. Without this, the parts of a layered
    image that another PSF blurred (an in-focus object, the band where two
    layers mix) ring across the whole image: deblurring the 8 layered images of
    the ``synth_test`` stage with their true maps (Wiener balance 3e-4) gave a
    mean PSNR of 16.10 dB without it, 25.73 dB with it, against 21.53 dB for the
    blurry input; with ``guard`` 1 / 1.5 / 2: 25.13 / 25.72 / 25.73 dB; ``tol``
    0.25 / 0.5 / 1 px: the same with the true maps, 24.22 / 23.70 / 22.71 dB
    with the published model's maps.
    """
    side = 2 * int(math.ceil(guard * radius)) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    bm = np.asarray(blur_map, dtype=np.float32)
    keep = (cv2.dilate(bm, disk) - radius <= tol) & (radius - cv2.erode(bm, disk) <= tol)
    if keep.all():
        return image
    w = cv2.GaussianBlur(keep.astype(np.float32), (0, 0), radius)
    w = w[..., None] if image.ndim == 3 else w
    return w * image + (1 - w) * disk_blur(image, radius)


def deblur(
    image: np.ndarray, blur_map: np.ndarray, radii=None, balance: float = DEFAULT_BALANCE,
    guard: float = GUARD, tol: float = LEVEL_TOL,
) -> np.ndarray:
    """Remove a spatially varying disk blur given its blur map.

    The image is deconvolved (:func:`deconvolve`) once per radius level; each
    pixel takes the deconvolution at its map radius, interpolated linearly
    between the two levels that bracket it (exact on a level), so a change of
    radius in the map gives a blend, not a hard switch, between levels. Map
    values outside ``[radii[0], radii[-1]]`` are clamped to that range. Levels
    no pixel uses are skipped, and the levels are visited in order while the
    result accumulates, so besides the input only two full images are held at
    once (the result and the current level's deconvolution, float32), plus a
    few (H, W) weight maps and :func:`deconvolve`'s transient work arrays (one
    channel's 2H x 2W float32 mirror, its spectrum and the filter): measured
    with ``tracemalloc`` on 480 x 640 px, a peak of about 9 RGB float32 images'
    worth for :func:`deconvolve` and 12 for :func:`deblur`.

    A constant map on a level radius r gives exactly ``deconvolve(image, r)``.

    Parameters
    ----------
    image : ndarray, (H, W, C) or (H, W), float in [0, 1]
    blur_map : ndarray, (H, W)
        Disk radius of the blur at each pixel, px (0 = sharp).
    radii : increasing sequence of float, px, optional
        Radius levels. Default :func:`default_radii` of the map: the 0.25 px grid
        from 0 to 6.0 restricted to the levels the map spans.
    balance : float
        Wiener-Hunt prior weight, see :func:`deconvolve`.
    guard, tol : float
        Each level deconvolves the image made consistent with its PSF where the
        map departs from the level by more than ``tol`` px within ``guard * r``
        px (:func:`_consistent`); ``guard=0`` deconvolves the whole image as is.

    Returns
    -------
    restored : ndarray, same shape as ``image``, float32 in [0, 1]
    """
    image = np.asarray(image)
    blur_map = np.asarray(blur_map, dtype=np.float64)
    if blur_map.shape != image.shape[:2]:
        raise ValueError(f"blur map {blur_map.shape} does not match image {image.shape[:2]}")
    if not np.isfinite(blur_map).all():
        raise ValueError("blur map must be finite")
    radii = default_radii(blur_map) if radii is None else np.asarray(radii, dtype=np.float64).ravel()
    if radii.size == 0 or (radii.size > 1 and not (np.diff(radii) > 0).all()):
        raise ValueError("radii must be a non-empty increasing sequence")
    if radii.size == 1:
        return deconvolve(image, radii[0], balance)
    pos = np.interp(blur_map, radii, np.arange(len(radii), dtype=np.float64))
    lo = np.floor(pos).astype(np.int32)  # lower bracketing level per pixel
    hi = np.minimum(lo + 1, len(radii) - 1)  # upper one (= lo on the last level, with frac 0)
    frac = (pos - lo).astype(np.float32)  # weight of the upper level
    del pos
    out = np.zeros(image.shape, np.float32)
    for k in range(int(lo.min()), int(hi.max()) + 1):
        weight = np.where(lo == k, np.float32(1) - frac, np.float32(0)) + np.where(hi == k, frac, np.float32(0))
        if not weight.any():
            continue
        src = _consistent(image, blur_map, radii[k], guard, tol) if guard > 0 and radii[k] > 0.5 else image
        restored = deconvolve(src, radii[k], balance)
        restored *= weight[..., None] if image.ndim == 3 else weight
        out += restored
        del restored
    np.clip(out, 0.0, 1.0, out=out)
    return out
