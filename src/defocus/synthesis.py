"""Synthetic defocus: the disk kernel, whole-image and spatially varying blur, composites.

Blur is the radius in px of a disk (pillbox) PSF everywhere in the project; a
radius of 0 means sharp. Images are float arrays in [0, 1], (H, W, 3) or (H, W).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .levels import BLUR_RADII


def _quadrant_area(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Signed area of {X in [0, x], Y in [0, y]} inside the disk of radius r at the origin.

    Odd in x and in y, so that a rectangle's area follows by inclusion-exclusion.
    """
    sx, sy = np.sign(x), np.sign(y)
    x, y = np.minimum(np.abs(x), r), np.minimum(np.abs(y), r)

    def g(t):  # integral of sqrt(r^2 - s^2) ds from 0 to t, 0 <= t <= r
        return 0.5 * (t * np.sqrt(np.maximum(r * r - t * t, 0.0)) + r * r * np.arcsin(np.clip(t / r, -1, 1)))

    # for s < xc the chord is taller than y, so the column height is y
    xc = np.sqrt(np.maximum(r * r - y * y, 0.0))
    area = np.where(x <= xc, x * y, xc * y + g(x) - g(xc))
    return sx * sy * area


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised disk (pillbox) kernel of the given radius, anti-aliased.

    Each pixel holds the exact area of its unit square inside the disk, so the
    kernel is the box-filtered disk, the intent of MATLAB's ``fspecial('disk', r)``
    (which approximates the boundary pixels' area); the kernel then sums to 1.

    Parameters
    ----------
    radius : float
        Disk radius in px, >= 0. Radius 0 gives the identity ``[[1.0]]``.

    Returns
    -------
    kernel : ndarray, (2 h + 1, 2 h + 1) float64, h = ceil(radius - 0.5)
        Zero outside the disk; symmetric under flips and transposition.
    """
    radius = float(radius)
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"disk radius must be a finite number >= 0, got {radius}")
    if radius <= 0.5:  # the disk lies inside the centre pixel
        return np.ones((1, 1))
    h = math.ceil(radius - 0.5)
    c = np.arange(-h, h + 1, dtype=np.float64)
    x0, x1 = (c - 0.5)[None, :], (c + 0.5)[None, :]
    y0, y1 = (c - 0.5)[:, None], (c + 0.5)[:, None]
    q = lambda x, y: _quadrant_area(x, y, radius)  # noqa: E731
    area = q(x1, y1) - q(x0, y1) - q(x1, y0) + q(x0, y0)
    area = np.maximum(area, 0.0)
    return area / area.sum()


def disk_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Blur an image with :func:`disk_kernel` (borders reflected, as ``BORDER_REFLECT``).

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), float in [0, 1]
    radius : float
        Disk radius, px (0 returns a float32 copy).

    Returns
    -------
    blurred : ndarray, same shape, float32
    """
    image = np.asarray(image, dtype=np.float32)
    kernel = disk_kernel(radius).astype(np.float32)
    if kernel.size == 1:
        return image.copy()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def varying_blur(image: np.ndarray, radius_map: np.ndarray, radii=BLUR_RADII) -> np.ndarray:
    """Spatially varying disk blur: per pixel, the image blurred with ``radius_map``.

    Approximated, as usual for synthetic defocus, by blurring the whole image with
    each radius of the grid ``radii`` and interpolating linearly per pixel between
    the two grid radii that bracket the pixel's radius (exact on the grid).

    Parameters
    ----------
    image : ndarray, (H, W, C) float in [0, 1]
    radius_map : ndarray, (H, W), px, within [radii[0], radii[-1]]
    radii : increasing sequence of radii, px

    Returns
    -------
    blurred : ndarray, (H, W, C) float32
    """
    radii = np.asarray(radii, dtype=np.float64)
    radius_map = np.asarray(radius_map, dtype=np.float64)
    if radius_map.shape != image.shape[:2]:
        raise ValueError(f"radius map {radius_map.shape} does not match image {image.shape[:2]}")
    if radius_map.min() < radii[0] - 1e-9 or radius_map.max() > radii[-1] + 1e-9:
        raise ValueError(f"radius map must lie in [{radii[0]}, {radii[-1]}] px")
    pos = np.interp(radius_map, radii, np.arange(len(radii)))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(radii) - 1)
    w = (pos - lo).astype(np.float32)[..., None]
    out = np.zeros(image.shape, np.float32)
    for k in np.unique(np.concatenate([lo.ravel(), hi.ravel()])):
        sel_lo, sel_hi = lo == k, hi == k
        if not (sel_lo.any() or sel_hi.any()):
            continue
        b = disk_blur(image, radii[k])
        out += np.where(sel_lo[..., None], (1 - w) * b, 0) + np.where(sel_hi[..., None], w * b, 0)
    return out


def composite(
    obj: np.ndarray, mask: np.ndarray, background: np.ndarray, r_fg: float, r_bg: float
) -> tuple[np.ndarray, np.ndarray]:
    """A defocused object layer over a defocused background (two depth layers).

    The object is cut out with its mask, blurred with radius ``r_fg``, and
    alpha-blended over the background blurred with ``r_bg``, the alpha being the
    mask blurred with ``r_fg``:
    ``C = blur(obj * m, r_fg) + (1 - blur(m, r_fg)) * blur(background, r_bg)``
    (premultiplied alpha, so the object's own surroundings never leak in).

    Parameters
    ----------
    obj, background : ndarray, (H, W, 3) float in [0, 1], same size
    mask : ndarray, (H, W) float in [0, 1] (1 = object)
    r_fg, r_bg : float
        Disk radii of object and background, px.

    Returns
    -------
    image : ndarray, (H, W, 3) float32 in [0, 1]
    alpha : ndarray, (H, W) float32, the blurred mask
    """
    if obj.shape != background.shape or obj.shape[:2] != mask.shape:
        raise ValueError(f"object {obj.shape}, mask {mask.shape} and background {background.shape} differ in size")
    m = np.asarray(mask, dtype=np.float32)
    fg = disk_blur(np.asarray(obj, np.float32) * m[..., None], r_fg)
    alpha = disk_blur(m, r_fg)
    bg = disk_blur(background, r_bg)
    out = fg + (1.0 - alpha[..., None]) * bg
    return np.clip(out, 0.0, 1.0), alpha


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a binary mask that touch its complement (8-neighbourhood), (H, W) bool."""
    m = np.asarray(mask, dtype=np.uint8)
    k = np.ones((3, 3), np.uint8)
    inner = cv2.erode(m, k, borderType=cv2.BORDER_REPLICATE)
    outer = cv2.dilate(m, k, borderType=cv2.BORDER_REPLICATE)
    return (outer != inner) & (m > 0)


def ramp_map(shape: tuple[int, int], r0: float, r1: float, angle: float) -> np.ndarray:
    """Radius map varying linearly from ``r0`` to ``r1`` across the image along ``angle`` (rad)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return r0 + (r1 - r0) * t


def step_map(shape: tuple[int, int], r0: float, n_steps: int, angle: float, step: float = 0.25) -> np.ndarray:
    """Radius map of ``n_steps`` equal bands along ``angle`` (rad), radius ``r0 + step * band``."""
    t = ramp_map(shape, 0.0, 1.0, angle)
    band = np.minimum((t * n_steps).astype(int), n_steps - 1)
    return r0 + step * band


def fit_background(background: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A (H, W) crop of ``background`` at a random place, enlarged first if it is too small."""
    h, w = shape
    hb, wb = background.shape[:2]
    scale = max(h / hb, w / wb)
    if scale > 1:
        size = (max(w, math.ceil(wb * scale)), max(h, math.ceil(hb * scale)))
        background = cv2.resize(background, size, interpolation=cv2.INTER_LINEAR)
        hb, wb = background.shape[:2]
    y = int(rng.integers(0, hb - h + 1))
    x = int(rng.integers(0, wb - w + 1))
    return background[y : y + h, x : x + w]


def near_boundary(boundary_mask: np.ndarray, r_fg: float, band: int) -> np.ndarray:
    """Pixels within ``ceil(r_fg) + band`` px of an object's boundary (a disk), (H, W) bool:
    where a Canny edge of a composite is a depth edge (the object's edge blurred by ``r_fg``)."""
    reach = int(np.ceil(r_fg)) + int(band)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    return cv2.dilate(np.asarray(boundary_mask, dtype=np.uint8), disk) > 0


def pattern_variants(image: np.ndarray, rng: np.random.Generator, steps: int,
                     radii=BLUR_RADII, step: float = 0.25) -> dict[str, np.ndarray]:
    """The three pattern-edge images of E-NET's training data made from one sharp photo.

    ``uniform``: one radius of ``radii`` everywhere; ``gradual``: a linear ramp between two
    radii along a random direction; ``step``: ``steps`` bands, each ``step`` px more blurred
    than the last. Radii and direction are drawn from ``rng``. Images in [0, 1], float32.
    """
    n = len(radii)
    shape = image.shape[:2]
    a, b = rng.choice(n, size=2, replace=False)
    r0 = radii[rng.integers(0, n - steps + 1)]
    angle = float(rng.uniform(0, 2 * math.pi))
    return {
        "uniform": disk_blur(image, radii[a]),
        "gradual": varying_blur(image, ramp_map(shape, radii[a], radii[b], angle)),
        "step": varying_blur(image, step_map(shape, r0, steps, angle, step)),
    }
