"""Propagation of sparse values with the closed-form matting Laplacian.

The matting Laplacian of Levin, Lischinski & Weiss ("A closed-form solution to
natural image matting", TPAMI 30(2), 2008, Eq. 12) is, for every window ``w_k``
of ``n = (2r + 1)**2`` pixels (``r`` = ``radius``) that lies inside the image::

    L_ij = sum_{k : i, j in w_k} ( delta_ij
           - (1 + (I_i - mu_k)^T (Sigma_k + eps / n * Id)^-1 (I_j - mu_k)) / n )

with ``mu_k`` and ``Sigma_k`` the mean colour and the colour covariance of the
window. Zhuo & Sim (Pattern Recognition 2011) and Park et al. (CVPR 2017)
spread a sparse defocus map ``s``, known on a mask ``D``, to every pixel by
minimising ``x^T L x + lam (x - s)^T D (x - s)``, i.e. by solving::

    (L + lam * D) x = lam * D * s

Solver. Measured on the 360 x 360 RTF ``image_01.png`` (N = 129,600,
3.2 M non-zeros, Zhuo & Sim's sparse map with 16.8 k known pixels, lam = 0.005,
eps = 1e-5) on 2 CPU cores shared with other jobs; errors are max |x - x_ref| in
px against ``spsolve``:

=========================================================  ========  =========
method                                                     time, s   max error
=========================================================  ========  =========
``spsolve`` (SuperLU, COLAMD order)                        9 - 11    reference
``splu``, MMD(A^T + A) order, symmetric mode               3.1 - 4   1e-11
CG + Jacobi, rtol 1e-6 (1411 iterations)                   > 7 (40)  1.6e-6
CG + ``spilu`` (drop 1e-3, fill 5)                         no convergence in 2000 it.
CG + ``spilu`` (drop 1e-4, fill 10), rtol 1e-6             3.0       1.3e-7
``splu``, geometric nested-dissection order (float64)      1.9       1e-11
same order, float32 factor preconditioning CG, rtol 1e-6   1.4       8.8e-7
=========================================================  ========  =========

The last one is used (:func:`solve_spd`): the float32 factor alone is off by
1.8e-3 px, one CG iteration brings it to 9e-7 px. Building the Laplacian takes
another 0.35-0.5 s, so :func:`propagate_matting` needs about 2 s at 360 x 360.
The factor of a nested-dissection order grows like N log N (37 M entries here,
about 300 MB in float32 with its indices), so memory, not time, limits the
image size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

#: Regulariser of the window covariances (the project's setting; Levin et al.'s
#: released ``getLaplacian1.m`` defaults to 1e-7). Larger = smoother maps.
EPS = 1e-5
#: Window radius, px (3 x 3 windows, as in Levin et al. and Zhuo & Sim).
RADIUS = 1
#: Weight of the data term (Zhuo & Sim 2011: lambda = 0.005; the demo script of
#: their released code uses 0.001).
LAM = 0.005
#: Relative residual at which the preconditioned CG stops (see :func:`solve_spd`).
RTOL = 1e-6
#: CG iterations before falling back to a float64 direct solve.
MAX_CG = 50
#: Largest block of the nested-dissection order taken in row-major order, px.
LEAF = 64


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {np.shape(image)}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image has non-finite values")
    return img


def matting_laplacian(image: np.ndarray, eps: float = EPS, radius: int = RADIUS) -> sp.csr_matrix:
    """Closed-form matting Laplacian of an image (Levin et al. 2008, Eq. 12).

    Parameters
    ----------
    image : ndarray, (H, W, C) or (H, W), float in [0, 1]
        Usually RGB. Colour covariances are taken over all C channels.
    eps : float
        Regulariser added to each window covariance as ``eps / n * Id`` with ``n``
        the number of pixels in a window (as in Levin et al.'s code). > 0.
    radius : int
        Window radius in px; windows are ``(2 radius + 1)`` square and only those
        entirely inside the image are used. >= 1.

    Returns
    -------
    L : scipy.sparse.csr_matrix, (N, N) float64, N = H * W
        Pixels in row-major order (index ``y * W + x``). Symmetric, positive
        semi-definite, rows sum to zero. Each pixel is linked to the pixels at
        most ``2 radius`` away in x and y.

    Raises
    ------
    ValueError
        For a bad shape, non-finite values, ``eps <= 0``, ``radius < 1`` or an
        image smaller than one window.
    """
    img = _as_image(image)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if int(radius) != radius or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius}")
    r = int(radius)
    h, w, c = img.shape
    size = 2 * r + 1
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than one {size}x{size} window")
    n = size * size
    hw, ww = h - 2 * r, w - 2 * r  # window centres (y, x) in [r, h - r) x [r, w - r)

    def win(ay: int, ax: int) -> np.ndarray:
        """Pixel at local position (ay, ax) of every window, (hw, ww, c)."""
        return img[ay : ay + hw, ax : ax + ww]

    offsets = [(ay, ax) for ay in range(size) for ax in range(size)]
    mu = np.zeros((hw, ww, c))
    second = np.zeros((hw, ww, c, c))
    for ay, ax in offsets:
        p = win(ay, ax)
        mu += p
        second += p[:, :, :, None] * p[:, :, None, :]
    mu /= n
    cov = second / n - mu[:, :, :, None] * mu[:, :, None, :]
    cov += (eps / n) * np.eye(c)
    inv = np.linalg.inv(cov)  # (hw, ww, c, c), symmetric

    centred = [win(ay, ax) - mu for ay, ax in offsets]
    projected = [np.einsum("yxij,yxj->yxi", inv, d) for d in centred]

    # band[(dy, dx)][y, x] accumulates L[(y, x), (y + dy, x + dx)].
    span = 2 * size - 1
    band = np.zeros((span, span, h, w))
    for a, (ay, ax) in enumerate(offsets):
        pa = projected[a]
        for b, (by, bx) in enumerate(offsets):
            val = -(1.0 + np.einsum("yxi,yxi->yx", pa, centred[b])) / n
            if a == b:
                val += 1.0
            band[by - ay + size - 1, bx - ax + size - 1, ay : ay + hw, ax : ax + ww] += val

    # Row p of L holds band[:, p] at columns p + dy * w + dx, which increase with
    # (dy, dx) in lexicographic order: the CSR arrays come out sorted, row by row.
    dys, dxs = np.meshgrid(np.arange(span) - (size - 1), np.arange(span) - (size - 1), indexing="ij")
    dys, dxs = dys.ravel(), dxs.ravel()
    ys = np.arange(h)[:, None, None]
    xs = np.arange(w)[None, :, None]
    inside = (ys + dys >= 0) & (ys + dys < h) & (xs + dxs >= 0) & (xs + dxs < w)  # (h, w, span**2)
    cols = (ys * w + xs) + (dys * w + dxs)
    vals = band.reshape(span * span, h, w).transpose(1, 2, 0)
    indptr = np.zeros(h * w + 1, dtype=np.int64)
    np.cumsum(inside.reshape(h * w, -1).sum(axis=1), out=indptr[1:])
    index_dtype = np.int32 if h * w * span * span < 2**31 else np.int64
    lap = sp.csr_matrix(
        (vals[inside], cols[inside].astype(index_dtype), indptr.astype(index_dtype)), shape=(h * w, h * w)
    )
    lap.has_sorted_indices = True
    lap.eliminate_zeros()
    return lap


def _dissection_order(h: int, w: int, sep: int, leaf: int = LEAF) -> np.ndarray:
    """Geometric nested-dissection order of the pixels of an h x w grid.

    A rectangle is split across its longer side by a separator ``sep`` pixels
    thick (the reach of the Laplacian's stencil, so the two halves share no
    entry); the halves are ordered first (recursively), the separator last.
    Rectangles of at most ``leaf`` pixels are taken in row-major order.
    """
    idx = np.arange(h * w).reshape(h, w)
    parts: list[np.ndarray] = []

    def split(y0: int, y1: int, x0: int, x1: int) -> None:
        hh, ww = y1 - y0, x1 - x0
        if hh * ww <= leaf or max(hh, ww) <= sep + 2:
            parts.append(idx[y0:y1, x0:x1].ravel())
        elif ww >= hh:
            m = x0 + (ww - sep) // 2
            split(y0, y1, x0, m)
            split(y0, y1, m + sep, x1)
            parts.append(idx[y0:y1, m : m + sep].ravel())
        else:
            m = y0 + (hh - sep) // 2
            split(y0, m, x0, x1)
            split(m + sep, y1, x0, x1)
            parts.append(idx[m : m + sep, x0:x1].ravel())

    split(0, h, 0, w)
    return np.concatenate(parts)


def _factor(a: sp.csc_matrix):
    """SuperLU factor without pivoting (``a`` is symmetric positive definite)."""
    return spla.splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})


def solve_spd(a: sp.spmatrix, b: np.ndarray, shape: tuple[int, int], reach: int, rtol: float = RTOL) -> np.ndarray:
    """Solve ``a x = b`` for a symmetric positive definite matrix on an image grid.

    Pixels are put in nested-dissection order (:func:`_dissection_order`), the
    matrix is factored in float32 by SuperLU without pivoting, and that factor
    preconditions conjugate gradients in float64 until the residual is below
    ``rtol * |b|`` (1 or 2 iterations in practice). Should that not converge in
    ``MAX_CG`` iterations (a float32 factor too inaccurate for a badly
    conditioned matrix), the system is factored again in float64 and solved
    directly.

    Parameters
    ----------
    a : sparse matrix, (N, N), N = H * W
        Links only pixels at most ``reach`` px apart in x and in y.
    b : ndarray, (N,)
    shape : (H, W)
    reach : int
        Half-width of the stencil, px (``2 radius`` for the matting Laplacian).
    rtol : float
        Relative residual at which CG stops.

    Returns
    -------
    x : ndarray, (N,) float64
    """
    h, w = shape
    order = _dissection_order(h, w, max(1, reach))
    ap = sp.csr_matrix(a)[order][:, order].tocsc()
    bp = np.asarray(b, dtype=np.float64)[order]
    x = np.empty_like(bp)
    try:
        lu = _factor(ap.astype(np.float32))
        precond = spla.LinearOperator(
            ap.shape, matvec=lambda r: lu.solve(np.asarray(r, dtype=np.float32)).astype(np.float64), dtype=np.float64
        )
        xp, info = spla.cg(ap, bp, x0=precond.matvec(bp), rtol=rtol, atol=0.0, maxiter=MAX_CG, M=precond)
        if info != 0 or not np.all(np.isfinite(xp)):
            raise RuntimeError("preconditioned CG did not converge")
    except RuntimeError:
        xp = _factor(ap).solve(bp)
    x[order] = xp
    return x


def propagate_matting(
    image: np.ndarray,
    sparse: np.ndarray,
    known: np.ndarray,
    lam: float = LAM,
    eps: float = EPS,
    fill: float = 0.0,
    clip: bool = True,
) -> np.ndarray:
    """Spread values known at some pixels to every pixel with the matting Laplacian.

    Solves ``(L + lam * D) x = lam * D * s`` with ``L`` = :func:`matting_laplacian`
    of ``image`` (3 x 3 windows), ``D = diag(known)`` and ``s`` = ``sparse``.

    Parameters
    ----------
    image : ndarray, (H, W, 3) RGB (or (H, W) grey, or (H, W, C)), float in [0, 1]
        The guide; H and W >= 3.
    sparse : ndarray, (H, W)
        Values at the known pixels (e.g. a blur sigma or radius in px); other
        pixels are ignored. Must be finite where known.
    known : ndarray, (H, W), bool (or 0/1)
        Where ``sparse`` holds a value.
    lam : float
        Weight of the data term, > 0 (Zhuo & Sim 2011: 0.005). Smaller trusts the
        known values less and follows the image more.
    eps : float
        Regulariser of the Laplacian's window covariances, > 0.
    fill : float
        The whole map when no pixel is known.
    clip : bool
        Clip the solution to ``[min, max]`` of the known values (default). The
        unclipped minimiser can overshoot that range a little near strong colour
        edges, which for a blur map would be meaningless (e.g. negative).

    Returns
    -------
    x : ndarray, (H, W) float32
        Same unit as ``sparse``.

    Raises
    ------
    ValueError
        For shapes that disagree, non-finite known values, ``lam <= 0`` or an
        invalid image or ``eps`` (see :func:`matting_laplacian`).
    """
    img = _as_image(image)
    h, w = img.shape[:2]
    s = np.asarray(sparse, dtype=np.float64)
    k = np.asarray(known)
    if s.shape != (h, w):
        raise ValueError(f"sparse is {s.shape}, image is {(h, w)}")
    if k.shape != (h, w):
        raise ValueError(f"known is {k.shape}, image is {(h, w)}")
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    k = k.astype(bool)
    values = s[k]
    if not np.all(np.isfinite(values)):
        raise ValueError("sparse has non-finite values at known pixels")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if min(h, w) < 2 * RADIUS + 1:
        raise ValueError(f"image {h}x{w} is smaller than one {2 * RADIUS + 1}x{2 * RADIUS + 1} window")
    if values.size == 0:
        return np.full((h, w), fill, dtype=np.float32)
    lap = matting_laplacian(img, eps=eps, radius=RADIUS)
    d = lam * k.ravel().astype(np.float64)
    a = lap + sp.diags(d, format="csr")
    x = solve_spd(a, d * np.where(k, s, 0.0).ravel(), (h, w), reach=2 * RADIUS)
    if clip:
        x = np.clip(x, values.min(), values.max())
    return x.reshape(h, w).astype(np.float32)
