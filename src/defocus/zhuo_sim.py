"""Defocus map of Zhuo & Sim, "Defocus map estimation from a single image",
Pattern Recognition 44(9), 2011, pp. 1852-1858.

Model: an edge blurred by a Gaussian of std ``sigma`` and re-blurred by one of
std ``sigma0`` has, at the edge, the gradient-magnitude ratio::

    R = |grad I| / |grad I_reblur| = sqrt(sigma**2 + sigma0**2) / sigma

so ``sigma = sigma0 / sqrt(R**2 - 1)`` wherever ``R > 1``.
Steps (:func:`estimate_sigma`):

1. Luminance (scikit-image ``rgb2gray``, as :func:`defocus.edges.detect_edges`),
   Canny edges (:func:`~defocus.edges.detect_edges` unless an edge map is given),
   re-blur with a Gaussian of std ``sigma0`` (scipy, truncated at 4 std,
   replicated borders).
2. Gradient magnitude ``sqrt(Ix**2 + Iy**2)`` with the Scharr operator:
   a central difference ``(f[x+1] - f[x-1]) / 2`` across, ``[3, 10, 3] / 16``
   along. Across a straight edge a central difference is the exact derivative of
   the profile convolved with a 2 px box, i.e. it sees an extra blur of variance
   ``1/3`` px**2 (``GRAD_VAR``); with the Scharr smoothing this holds within 10 %
   for every edge orientation (1/3 at 0 deg, 0.35 at 45 deg). The ratio thus
   measures ``sqrt(sigma**2 + GRAD_VAR)``, and we report::

       sigma = sqrt(max(sigma0**2 / (R**2 - 1) - GRAD_VAR, 0))

   ``grad_var=0`` gives the paper's formula literally; it over-estimates a
   sigma = 1 px edge by ~18 % (sigma = 2 px: ~4 %), the correction brings both
   within ~3 % for an edge centred on a pixel (tests). The ratio is read at the
   Canny pixel, not at the sub-pixel edge centre, where both gradients are
   lower and their ratio too: an edge half-way between two pixels reads ~15 %
   high at sigma = 1 px, ~3 % at 2 px (a bias of the method itself).
3. Sigma clipped to ``max_sigma`` (edges with R barely above 1 would give huge
   values; the authors' code clips at 3 px); pixels with ``R <= 1`` are dropped.
   Where the corrected variance is negative (R >= 2 for sigma0 = 1, i.e. sharper
   than the gradient operator resolves) sigma is 0 and the pixel stays valid.
4. Joint bilateral filtering of the sparse map to correct outliers, as in the
   paper: normalised over the valid edge pixels only, evaluated at them, guided
   by the RGB image. Parameters from the authors' released MATLAB code
   (``defocusEstimation.m`` / ``sparseBilateralFilter.m``): spatial std 5 px on a
   21 x 21 window, range std ``0.1 * max_sigma`` on the RGB guide in [0, 1].
   Unlike that code we use the usual Euclidean RGB distance (the code sums a
   Gaussian per channel), skip neighbours outside the image (the code replicates
   the border) and do not add its extra ``exp(-sigma)`` weight.
5. Propagation to every pixel with the matting Laplacian
   (:func:`defocus.matting.propagate_matting`; lambda = 0.005 as in the paper,
   the authors' demo script uses 0.001; eps = 1e-5; 3 x 3 windows), clipped to
   the range of the filtered sparse values.

The result is a Gaussian std in px; converting it to a disk radius is left to the
caller. On the 360 x 360 RTF ``image_01.png`` (2 shared cores) the whole
:func:`estimate_sigma` takes about 2-2.5 s, nearly all of it the matting solve.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter
from skimage.color import rgb2gray

from .edges import detect_edges
from .matting import EPS, LAM, propagate_matting

#: Std of the re-blurring Gaussian, px (paper: sigma0 = 1).
SIGMA0 = 1.0
#: Largest sigma reported, px.
MAX_SIGMA = 3.275
#: Blur variance added by the central-difference gradient, px**2 (see module doc).
GRAD_VAR = 1.0 / 3.0
#: Joint bilateral filter: spatial std, px, and window radius, px (authors' code).
JBF_SIGMA_S = 5.0
JBF_RADIUS = 10
#: Joint bilateral filter: range std = this * max_sigma, in RGB units (authors' code).
JBF_RANGE_FRACTION = 0.1

_DIFF = np.array([-0.5, 0.0, 0.5])
_SMOOTH = np.array([3.0, 10.0, 3.0]) / 16.0


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be RGB (H, W, 3), got shape {np.shape(image)}")
    if min(img.shape[:2]) < 3:
        raise ValueError(f"image must be at least 3 x 3 px, got {img.shape[:2]}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image has non-finite values")
    return img


def gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """``sqrt(Ix**2 + Iy**2)`` with the Scharr operator (replicated borders).

    Parameters
    ----------
    gray : ndarray, (H, W) float

    Returns
    -------
    magnitude : ndarray, (H, W) float64, intensity per px
    """
    f = np.asarray(gray, dtype=np.float64)
    gx = correlate1d(correlate1d(f, _DIFF, axis=1, mode="nearest"), _SMOOTH, axis=0, mode="nearest")
    gy = correlate1d(correlate1d(f, _DIFF, axis=0, mode="nearest"), _SMOOTH, axis=1, mode="nearest")
    return np.hypot(gx, gy)


def sparse_sigma(
    image: np.ndarray,
    edges: np.ndarray | None = None,
    sigma0: float = SIGMA0,
    max_sigma: float = MAX_SIGMA,
    canny: Mapping[str, float] | None = None,
    *,
    grad_var: float = GRAD_VAR,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur std at edge pixels from the re-blur gradient ratio.

    Parameters
    ----------
    image : ndarray, (H, W, 3), RGB float in [0, 1]
    edges : ndarray, (H, W) bool, optional
        Edge pixels. Default: :func:`defocus.edges.detect_edges` with ``canny``.
    sigma0 : float
        Std of the re-blurring Gaussian, px (> 0).
    max_sigma : float
        Sigmas above this are clipped to it, px (> 0).
    canny : mapping, optional
        Keyword arguments of :func:`defocus.edges.detect_edges` (``sigma``,
        ``low``, ``high``); ignored when ``edges`` is given.
    grad_var : float
        Blur variance of the discrete gradient, px**2, removed from the estimate
        (default 1/3, see the module doc; 0 = the paper's formula as printed).

    Returns
    -------
    sigma : ndarray, (H, W) float32
        Blur std in px in ``[0, max_sigma]`` at valid pixels, 0 elsewhere.
    valid : ndarray, (H, W) bool
        Edge pixels with a gradient ratio ``R > 1``.

    Raises
    ------
    ValueError
        For a non-RGB image, an edge map of another size, or non-positive
        ``sigma0`` / ``max_sigma`` or a negative ``grad_var``.
    """
    img = _check_image(image)
    if not sigma0 > 0:
        raise ValueError(f"sigma0 must be > 0, got {sigma0}")
    if not max_sigma > 0:
        raise ValueError(f"max_sigma must be > 0, got {max_sigma}")
    if not grad_var >= 0:
        raise ValueError(f"grad_var must be >= 0, got {grad_var}")
    if edges is None:
        edges = detect_edges(img, **dict(canny or {}))
    edges = np.asarray(edges)
    if edges.shape != img.shape[:2]:
        raise ValueError(f"edges is {edges.shape}, image is {img.shape[:2]}")
    edges = edges.astype(bool)

    gray = rgb2gray(img)
    reblur = gaussian_filter(gray, sigma0, mode="nearest", truncate=4.0)
    g1 = gradient_magnitude(gray)
    g2 = gradient_magnitude(reblur)
    valid = edges & (g2 > 1e-12)
    ratio = np.zeros_like(g1)
    np.divide(g1, g2, out=ratio, where=valid)
    valid &= ratio > 1.0
    var = np.zeros_like(g1)
    np.divide(sigma0**2, ratio**2 - 1.0, out=var, where=valid)
    sigma = np.sqrt(np.maximum(var - grad_var, 0.0))
    sigma = np.where(valid, np.minimum(sigma, max_sigma), 0.0)
    return sigma.astype(np.float32), valid


def joint_bilateral(
    values: np.ndarray,
    valid: np.ndarray,
    guide: np.ndarray,
    sigma_s: float = JBF_SIGMA_S,
    sigma_r: float = JBF_RANGE_FRACTION * MAX_SIGMA,
    radius: int = JBF_RADIUS,
) -> np.ndarray:
    """Normalised joint bilateral filter of a sparse map, at its valid pixels.

    ``out(p) = sum_q w(p, q) v(q) / sum_q w(p, q)`` over valid ``q`` with
    ``|q - p|_inf <= radius``, ``w = exp(-|p - q|**2 / (2 sigma_s**2)
    - |G(p) - G(q)|**2 / (2 sigma_r**2))``: the same as filtering ``v * mask`` and
    ``mask`` and dividing, evaluated only where ``mask`` is set.

    Parameters
    ----------
    values : ndarray, (H, W)
        Sparse values (e.g. blur std, px); read at valid pixels only.
    valid : ndarray, (H, W) bool
    guide : ndarray, (H, W, C) or (H, W), float in [0, 1]
    sigma_s : float
        Spatial std, px.
    sigma_r : float
        Range std, in guide units (Euclidean distance over the channels).
    radius : int
        Half-width of the square window, px.

    Returns
    -------
    filtered : ndarray, (H, W) float32
        Filtered values at valid pixels, 0 elsewhere.
    """
    valid = np.asarray(valid, dtype=bool)
    h, w = valid.shape
    g = np.asarray(guide, dtype=np.float64)
    if g.ndim == 2:
        g = g[:, :, None]
    v = np.asarray(values, dtype=np.float64)
    if g.shape[:2] != (h, w) or v.shape != (h, w):
        raise ValueError(f"values {v.shape}, valid {valid.shape} and guide {g.shape[:2]} differ")
    if not (sigma_s > 0 and sigma_r > 0):
        raise ValueError(f"sigma_s and sigma_r must be > 0, got {sigma_s}, {sigma_r}")
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be an integer >= 0, got {radius}")
    out = np.zeros((h, w), dtype=np.float32)
    if not valid.any():
        return out
    r = int(radius)
    wp = w + 2 * r
    vpad = np.pad(valid, r).ravel()  # outside the image = not valid
    gpad = np.pad(g, ((r, r), (r, r), (0, 0))).reshape(-1, g.shape[2])
    xpad = np.pad(np.where(valid, v, 0.0), r).ravel()
    ys, xs = np.nonzero(valid)
    centre = (ys + r) * wp + (xs + r)
    gc = gpad[centre]
    num = np.zeros(centre.size)
    den = np.zeros(centre.size)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            q = centre + dy * wp + dx
            d2 = ((gpad[q] - gc) ** 2).sum(axis=1)
            wt = vpad[q] * np.exp(-(dy * dy + dx * dx) / (2.0 * sigma_s**2) - d2 / (2.0 * sigma_r**2))
            num += wt * xpad[q]
            den += wt
    out[ys, xs] = num / den  # den >= 1: every valid pixel is its own neighbour
    return out


def estimate_sigma(
    image: np.ndarray,
    edges: np.ndarray | None = None,
    sigma0: float = SIGMA0,
    max_sigma: float = MAX_SIGMA,
    canny: Mapping[str, float] | None = None,
    lam: float = LAM,
    eps: float = EPS,
    *,
    grad_var: float = GRAD_VAR,
) -> np.ndarray:
    """Dense defocus map (Gaussian std) of Zhuo & Sim 2011.

    :func:`sparse_sigma`, then :func:`joint_bilateral` (spatial std 5 px, range
    std ``0.1 * max_sigma``), then :func:`defocus.matting.propagate_matting`.

    Parameters
    ----------
    image : ndarray, (H, W, 3), RGB float in [0, 1]
    edges, sigma0, max_sigma, canny, grad_var
        See :func:`sparse_sigma`.
    lam : float
        Data-term weight of the matting propagation (paper: 0.005).
    eps : float
        Matting Laplacian regulariser.

    Returns
    -------
    sigma : ndarray, (H, W) float32
        Blur std in px, within the range of the filtered edge values (so in
        ``[0, max_sigma]``); 0 everywhere when no edge gives a valid estimate.
    """
    img = _check_image(image)
    sigma, valid = sparse_sigma(img, edges, sigma0, max_sigma, canny, grad_var=grad_var)
    refined = joint_bilateral(sigma, valid, img, JBF_SIGMA_S, JBF_RANGE_FRACTION * max_sigma, JBF_RADIUS)
    return propagate_matting(img, refined, valid, lam=lam, eps=eps, fill=0.0)
