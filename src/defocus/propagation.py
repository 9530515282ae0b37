"""Depth-edge-aware propagation of sparse blur values (paper Eq. 2-3).

The filter is the recursive-filter (RF) form of the domain transform (Gastal &
Oliveira, SIGGRAPH 2011). Along a row or a column the distance between a pixel
and its previous neighbour is::

    d = 1 + (sigma_s / sigma_r) * sum_c |I_c(x) - I_c(x - 1)| + penalty(x)

where ``penalty = psi`` at depth-edge pixels and 0 elsewhere. With no penalty
the filter equals OpenCV-contrib's ``cv2.ximgproc.dtFilter(mode=DTF_RF)``.
"""

from __future__ import annotations

import numpy as np

N_ITER = 5
SIMPLIFY_SIGMA_S = 7.0
SIMPLIFY_SIGMA_R = 0.5
PROPAGATE_SIGMA_R = 3.75
#: Normalisers at or below this are treated as "no pattern edge reaches here".
REACH_EPS = 1e-30


def _distances(guide: np.ndarray, ratio: float, penalty, axis: int) -> np.ndarray:
    """Domain-transform distance from each pixel to its previous neighbour along ``axis``.

    Accumulated one guide channel at a time, so the temporaries are single-channel.
    """
    h, w, c = guide.shape
    diff = np.zeros((h, w - 1) if axis == 1 else (h - 1, w))
    for k in range(c):
        diff += np.abs(np.diff(guide[:, :, k], axis=axis))
    d = np.ones((h, w))
    if axis == 1:
        d[:, 1:] += ratio * diff
    else:
        d[1:, :] += ratio * diff
    if penalty is not None:
        d += penalty
    return d


def _recursive_pass(f: np.ndarray, v: np.ndarray) -> None:
    """Causal then anti-causal first-order recursion along axis 0, in place.

    ``f`` is (n, m, c), ``v`` (n, m) holds the feedback coefficient ``a ** d``
    linking row i to row i - 1.
    """
    n = f.shape[0]
    v = v[:, :, None]
    buf = np.empty_like(f[0])
    sub, mul, add = np.subtract, np.multiply, np.add
    for i in range(1, n):  # f[i] += v[i] * (f[i - 1] - f[i]), without temporaries
        fi = f[i]
        sub(f[i - 1], fi, out=buf)
        mul(buf, v[i], out=buf)
        add(fi, buf, out=fi)
    for i in range(n - 2, -1, -1):
        fi = f[i]
        sub(f[i + 1], fi, out=buf)
        mul(buf, v[i + 1], out=buf)
        add(fi, buf, out=fi)


def domain_transform(
    image: np.ndarray,
    guide: np.ndarray,
    sigma_s: float,
    sigma_r: float,
    n_iter: int = N_ITER,
    penalty: np.ndarray | None = None,
) -> np.ndarray:
    """Edge-aware recursive filter with an optional per-pixel distance penalty.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        What to filter.
    guide : ndarray, (H, W) or (H, W, K), values in [0, 1]
        Image whose edges stop the filter (float32 or float64; differences are
        taken in its precision and summed in float64).
    sigma_s : float
        Spatial standard deviation, px.
    sigma_r : float
        Range standard deviation, in guide units.
    n_iter : int
        Iterations; iteration i (1-based) uses
        ``sigma_s * sqrt(3) * 2 ** (n_iter - i) / sqrt(4 ** n_iter - 1)``.
        Each filters rows (left-right, right-left) then columns.
    penalty : ndarray, (H, W), optional
        Extra distance added at each pixel (paper: psi at depth edges). It weakens
        the link between the pixel and its previous neighbour, in both passes.

    Returns
    -------
    filtered : ndarray, float64, shape of ``image``
    """
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    f = img[:, :, None].copy() if squeeze else img.copy()
    g = np.asarray(guide)
    if g.dtype not in (np.float32, np.float64):
        g = g.astype(np.float64)
    if g.ndim == 2:
        g = g[:, :, None]
    if g.shape[:2] != f.shape[:2]:
        raise ValueError(f"guide is {g.shape[:2]}, image is {f.shape[:2]}")
    pen = None if penalty is None else np.asarray(penalty, dtype=np.float64)
    ratio = sigma_s / sigma_r
    dx = _distances(g, ratio, pen, axis=1).T  # (W, H): rows of the transposed image
    dy = _distances(g, ratio, pen, axis=0)  # (H, W)
    for i in range(1, n_iter + 1):
        sigma_i = sigma_s * np.sqrt(3.0) * 2.0 ** (n_iter - i) / np.sqrt(4.0**n_iter - 1)
        a = np.exp(-np.sqrt(2.0) / sigma_i)
        ft = np.ascontiguousarray(f.transpose(1, 0, 2))
        _recursive_pass(ft, a**dx)
        f = np.ascontiguousarray(ft.transpose(1, 0, 2))
        _recursive_pass(f, a**dy)
    return f[:, :, 0] if squeeze else f


def simplify(image: np.ndarray) -> np.ndarray:
    """Edge-preserving smoothing of an RGB image in [0, 1] with itself as guide
    (sigma_s = 7 px, sigma_r = 0.5, 5 iterations): the guide for propagation.

    This step has no penalty, so it is OpenCV-contrib's compiled
    ``cv2.ximgproc.dtFilter(mode=DTF_RF)``, which equals :func:`domain_transform`
    here to about 1e-7 (tested) and runs ~10x faster.
    """
    import cv2

    img = np.ascontiguousarray(image, dtype=np.float32)
    return cv2.ximgproc.dtFilter(img, img, SIMPLIFY_SIGMA_S, SIMPLIFY_SIGMA_R, mode=cv2.ximgproc.DTF_RF, numIters=N_ITER)


def propagate(
    image: np.ndarray,
    sparse_blur: np.ndarray,
    pattern: np.ndarray,
    depth: np.ndarray | None = None,
    psi: float = 100.0,
    fill: float = 0.0,
) -> np.ndarray:
    """Spread blur values known at pattern edges to every pixel.

    ``B = F(sparse_blur * pattern) / F(pattern)``, both filtered with the
    simplified image as guide, sigma_s = min(H, W) / 8 px, sigma_r = 3.75 and
    the penalty ``psi`` at depth-edge pixels. Depth-edge pixels carry no blur
    value; they only lengthen distances.

    Parameters
    ----------
    image : ndarray, (H, W, 3), RGB in [0, 1]
    sparse_blur : ndarray, (H, W)
        Blur radius in px at pattern-edge pixels (other pixels are ignored).
    pattern : ndarray, (H, W) bool
        Pattern-edge pixels, where ``sparse_blur`` is known.
    depth : ndarray, (H, W) bool, optional
        Depth-edge pixels.
    psi : float
        Depth-edge penalty (paper: 100; the published code: 20; 0 disables it).
    fill : float
        Value of the whole map when the image has no pattern edge at all, px.

    Returns
    -------
    blur : ndarray, (H, W) float32, disk radius in px
        Always finite. Every value lies between the smallest and the largest
        pattern-edge value. Pixels that no pattern edge reaches numerically
        (normaliser <= 1e-30, e.g. a region sealed off by depth edges under a
        huge ``psi``) get the mean of the pattern-edge values; with no pattern
        edge at all the map is ``fill`` everywhere.
    """
    pattern = np.asarray(pattern, dtype=bool)
    h, w = pattern.shape
    if not pattern.any():
        return np.full((h, w), fill, dtype=np.float32)
    values = np.asarray(sparse_blur, dtype=np.float64)[pattern]
    lo, hi = float(values.min()), float(values.max())
    penalty = None
    if depth is not None and psi != 0 and np.any(depth):
        penalty = psi * np.asarray(depth, dtype=np.float64)
    stack = np.zeros((h, w, 2))
    stack[pattern, 0] = values
    stack[pattern, 1] = 1.0
    guide = simplify(image)  # float32, (H, W, 3)
    f = domain_transform(stack, guide, min(h, w) / 8.0, PROPAGATE_SIGMA_R, N_ITER, penalty)
    num, den = f[:, :, 0], f[:, :, 1]
    reached = den > REACH_EPS
    out = np.full((h, w), values.mean())
    np.divide(num, den, out=out, where=reached)
    return np.clip(out, lo, hi).astype(np.float32)
