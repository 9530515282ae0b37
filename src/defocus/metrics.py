"""Evaluation of blur maps and of deblurred images.

* Blur-map error: :func:`raw_mae` (disk radius, px) and :func:`relative_mae`
  (the DMENet protocol on RTF: Gaussian sigma normalised by its largest value),
  with the RTF radius <-> sigma conversion table (:func:`load_conversion`).
* Blur detection (the paper's Fig. 9): each image's blur map is thresholded at
  ``tau = alpha * max + (1 - alpha) * min`` for a sweep of ``alpha``;
  :func:`detection_counts` counts TP / FP / FN / TN per ``alpha`` for one image,
  :func:`pr_curve` aggregates images and :func:`best_accuracy` picks the best
  ``alpha``. The positive class is *blurred* (out-of-focus) pixels.
* Image quality: :func:`psnr`, :func:`ssim` for RGB float images in [0, 1].

Blur maps hold the disk radius in px per pixel (0 = sharp); images are RGB float
in [0, 1].
"""

from __future__ import annotations

import os

import numpy as np

#: Keys of a :func:`detection_counts` record besides ``alpha``.
COUNT_KEYS = ("tp", "fp", "fn", "tn")


# --------------------------------------------------------------------------- blur-map error


def _pair(est, gt, crop_right: int) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if est.shape != gt.shape:
        raise ValueError(f"estimate {est.shape} and ground truth {gt.shape} differ in shape")
    if est.ndim != 2:
        raise ValueError(f"blur maps must be 2-D (H, W), got shape {est.shape}")
    crop_right = int(crop_right)
    if not 0 <= crop_right < est.shape[1]:
        raise ValueError(f"crop_right must be in [0, {est.shape[1]}), got {crop_right}")
    if crop_right:
        est, gt = est[:, :-crop_right], gt[:, :-crop_right]
    return est, gt


def raw_mae(est: np.ndarray, gt: np.ndarray, crop_right: int = 0) -> float:
    """Mean absolute error between two blur maps, in px of disk radius.

    Parameters
    ----------
    est, gt : ndarray, (H, W)
        Estimated and ground-truth disk radius per pixel, px.
    crop_right : int
        Number of rightmost columns left out of both maps (0 = none), e.g. a
        border the ground truth does not cover.

    Returns
    -------
    mae : float
        ``mean(|est - gt|)`` over the kept pixels, px.
    """
    est, gt = _pair(est, gt, crop_right)
    return float(np.mean(np.abs(est - gt)))


def _table(table) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, radius) of a conversion table given as that pair or as an (n, 2) array."""
    if isinstance(table, tuple) and len(table) == 2:
        sigma, radius = (np.asarray(t, dtype=np.float64).ravel() for t in table)
    else:
        arr = np.asarray(table, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"conversion table must be (sigma, radius) or an (n, 2) array, got shape {arr.shape}")
        sigma, radius = arr[:, 0], arr[:, 1]
    if sigma.shape != radius.shape or sigma.size < 2:
        raise ValueError("conversion table needs at least 2 (sigma, radius) pairs of equal length")
    if not ((np.diff(sigma) > 0).all() and (np.diff(radius) > 0).all()):
        raise ValueError("conversion table must be strictly increasing in sigma and in radius")
    return sigma, radius


def load_conversion(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read the RTF radius <-> sigma table (``convertion.mat``, key ``'convertion'``).

    The file holds a 23 x 2 matrix: column 1 the Gaussian sigma (0.3 .. 3.275 px),
    column 2 the matching disk radius (0.5 .. 6.0 px, step 0.25).

    Returns
    -------
    sigma, radius : ndarray, (n,) float64
        Both strictly increasing, px; pass the pair as ``table`` to the
        conversion functions and :func:`relative_mae`.
    """
    from scipy.io import loadmat

    data = loadmat(os.fspath(path))
    if "convertion" not in data:
        raise ValueError(f"{path}: no 'convertion' matrix (keys: {sorted(k for k in data if not k.startswith('__'))})")
    return _table(np.asarray(data["convertion"]))


def radius_to_sigma(radius, table):
    """Gaussian sigma (px) of a disk radius (px), by linear interpolation in ``table``.

    ``table`` is ``(sigma, radius)`` from :func:`load_conversion` (or the (n, 2)
    matrix). Radii outside the table are clamped to its ends: below 0.5 px gives
    the first sigma (0.3 px on RTF), above 6.0 px the last (3.275 px).
    Returns an array of the shape of ``radius`` (a float for a scalar).
    """
    sigma, rad = _table(table)
    return np.interp(radius, rad, sigma)


def sigma_to_radius(sigma, table):
    """Disk radius (px) of a Gaussian sigma (px): the inverse of :func:`radius_to_sigma`, clamped likewise."""
    sig, rad = _table(table)
    return np.interp(sigma, sig, rad)


def relative_mae(est: np.ndarray, gt: np.ndarray, table, crop_right: int = 0) -> float:
    """Relative MAE of two radius maps, the DMENet protocol on RTF.

    Both maps are converted to Gaussian sigma with :func:`radius_to_sigma`,
    clipped to ``[0, s_max]`` and divided by ``s_max``, ``s_max`` being the
    table's largest sigma (3.275 px on RTF); the result is the mean absolute
    difference of the normalised maps (unitless, in [0, 1]).

    Parameters
    ----------
    est, gt : ndarray, (H, W)
        Estimated and ground-truth disk radius per pixel, px.
    table : (sigma, radius) from :func:`load_conversion`
    crop_right : int
        Number of rightmost columns left out, as in :func:`raw_mae`.
    """
    est, gt = _pair(est, gt, crop_right)
    sigma, _ = _table(table)
    s_max = float(sigma[-1])
    e = np.clip(radius_to_sigma(est, table), 0.0, s_max) / s_max
    g = np.clip(radius_to_sigma(gt, table), 0.0, s_max) / s_max
    return float(np.mean(np.abs(e - g)))


# --------------------------------------------------------------------------- blur detection


def _check_map(blur) -> np.ndarray:
    blur = np.asarray(blur, dtype=np.float64)
    if blur.ndim != 2:
        raise ValueError(f"blur map must be 2-D (H, W), got shape {blur.shape}")
    if blur.size == 0 or not np.isfinite(blur).all():
        raise ValueError("blur map must be non-empty and finite")
    return blur


def thresholds(blur: np.ndarray, alphas) -> np.ndarray:
    """Thresholds ``tau = alpha * vmax + (1 - alpha) * vmin`` of one blur map, one per alpha.

    ``vmin``, ``vmax`` are the map's own minimum and maximum, so ``alpha = 0``
    gives ``vmin`` and ``alpha = 1`` gives ``vmax`` exactly.
    """
    blur = _check_map(blur)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    vmin, vmax = blur.min(), blur.max()
    return alphas * vmax + (1.0 - alphas) * vmin


def threshold_sweep(blur: np.ndarray, alphas) -> np.ndarray:
    """Blurred-pixel masks of a blur map, one per threshold level ``alpha``.

    A pixel is predicted blurred when ``blur > tau`` (strictly), with ``tau``
    from :func:`thresholds`. Tie rule: a pixel equal to ``tau`` is predicted
    sharp; hence ``alpha = 1`` (``tau = vmax``) predicts no pixel blurred,
    ``alpha = 0`` every pixel but those at the minimum, and a constant map
    (``vmin = vmax = tau``) predicts every pixel sharp for every ``alpha``.

    Parameters
    ----------
    blur : ndarray, (H, W)
        Blur map of one image (any monotone blur measure, e.g. disk radius, px).
    alphas : sequence of float
        Threshold levels, usually in [0, 1].

    Returns
    -------
    masks : ndarray, (len(alphas), H, W) bool, True = predicted blurred
    """
    blur = _check_map(blur)
    tau = thresholds(blur, alphas)
    return blur[None] > tau[:, None, None]


def _check_gt(blurred_gt, shape) -> np.ndarray:
    gt = np.asarray(blurred_gt)
    if gt.shape != shape:
        raise ValueError(f"ground-truth mask {gt.shape} does not match blur map {shape}")
    return gt if gt.dtype == bool else gt > 0.5


def detection_counts(blur: np.ndarray, blurred_gt: np.ndarray, alphas) -> dict:
    """Confusion counts of blur detection on one image, for each threshold level.

    Pixels are predicted blurred as in :func:`threshold_sweep` (``blur > tau``,
    ``tau = alpha * vmax + (1 - alpha) * vmin`` of this image's map; ties and a
    constant map predict sharp); the positive class is blurred pixels.

    Parameters
    ----------
    blur : ndarray, (H, W)
        Blur map of the image (e.g. disk radius, px).
    blurred_gt : ndarray, (H, W)
        Ground truth, True (or > 0.5 for a numeric mask, so 0/1 and 0/255 masks
        both work) where the pixel is out of focus.
    alphas : sequence of float

    Returns
    -------
    counts : dict
        ``alpha`` (float64 array) and ``tp``, ``fp``, ``fn``, ``tn`` (int64
        arrays, one entry per alpha): blurred predicted blurred, sharp predicted
        blurred, blurred predicted sharp, sharp predicted sharp.
    """
    blur = _check_map(blur)
    gt = _check_gt(blurred_gt, blur.shape)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    tau = thresholds(blur, alphas)
    pos = np.sort(blur[gt])
    neg = np.sort(blur[~gt])
    # number of values > tau = n - number of values <= tau
    tp = pos.size - np.searchsorted(pos, tau, side="right")
    fp = neg.size - np.searchsorted(neg, tau, side="right")
    return {
        "alpha": alphas,
        "tp": tp.astype(np.int64),
        "fp": fp.astype(np.int64),
        "fn": (pos.size - tp).astype(np.int64),
        "tn": (neg.size - fp).astype(np.int64),
    }


def pr_curve(counts_list) -> dict:
    """Precision, recall and accuracy per threshold level over a set of images.

    Parameters
    ----------
    counts_list : sequence of dict
        One :func:`detection_counts` record per image, all with the same alphas.

    Returns
    -------
    curve : dict of ndarray, one entry per alpha
        ``alpha``;
        ``precision = TP / (TP + FP)`` and ``recall = TP / (TP + FN)`` from the
        counts summed over all images (pixel-weighted, so large images weigh
        more). Precision is 1.0 where no pixel of any image is predicted blurred
        (TP + FP = 0; the usual start of a PR curve), recall is 1.0 where no
        ground-truth pixel is blurred (TP + FN = 0; nothing to miss);
        ``accuracy``: the mean over images of each image's pixel accuracy
        ``(TP + TN) / (TP + FP + FN + TN)`` (each image weighs the same);
        ``tp``, ``fp``, ``fn``, ``tn``: the summed counts.
    """
    counts_list = list(counts_list)
    if not counts_list:
        raise ValueError("no images to aggregate")
    alpha = np.asarray(counts_list[0]["alpha"], dtype=np.float64)
    for c in counts_list[1:]:
        if not np.array_equal(np.asarray(c["alpha"], dtype=np.float64), alpha):
            raise ValueError("all images must be swept over the same alphas")
    stack = {k: np.stack([np.asarray(c[k], dtype=np.int64) for c in counts_list]) for k in COUNT_KEYS}
    tp, fp, fn, tn = (stack[k].sum(axis=0) for k in COUNT_KEYS)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 1.0)
    n_pix = sum(stack[k] for k in COUNT_KEYS)
    accuracy = ((stack["tp"] + stack["tn"]) / n_pix).mean(axis=0)
    return {
        "alpha": alpha,
        "precision": precision.astype(np.float64),
        "recall": recall.astype(np.float64),
        "accuracy": accuracy.astype(np.float64),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def best_accuracy(curve) -> tuple[float, float]:
    """The best mean accuracy of a sweep and its alpha.

    Parameters
    ----------
    curve : dict from :func:`pr_curve`, or a list of :func:`detection_counts`
        records (aggregated with :func:`pr_curve` first).

    Returns
    -------
    accuracy, alpha : float, float
        The largest ``curve["accuracy"]`` and its alpha; on a tie, the first in
        the order of the alphas given.
    """
    if not isinstance(curve, dict):
        curve = pr_curve(curve)
    k = int(np.argmax(curve["accuracy"]))
    return float(curve["accuracy"][k]), float(curve["alpha"][k])


# --------------------------------------------------------------------------- image quality


def _images(ref, img) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    img = np.asarray(img, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"images differ in shape: {ref.shape} and {img.shape}")
    return ref, img


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``img`` against ``ref``.

    Both (H, W, 3) (or (H, W)) float in [0, 1]; peak 1
    (:func:`skimage.metrics.peak_signal_noise_ratio`, ``data_range=1``), the
    mean squared error being over all pixels and channels. ``inf`` for equal images.
    """
    from skimage.metrics import peak_signal_noise_ratio

    ref, img = _images(ref, img)
    with np.errstate(divide="ignore"):  # equal images: MSE 0
        return float(peak_signal_noise_ratio(ref, img, data_range=1.0))


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """Structural similarity of ``img`` to ``ref`` (:func:`skimage.metrics.structural_similarity`).

    Both (H, W, 3) (or (H, W)) float in [0, 1], at least 7 x 7 px;
    ``data_range=1``, colour channels on the last axis (mean of the per-channel
    SSIM), skimage's default 7 x 7 uniform window. 1.0 for equal images.
    """
    from skimage.metrics import structural_similarity

    ref, img = _images(ref, img)
    return float(structural_similarity(ref, img, data_range=1.0, channel_axis=-1 if ref.ndim == 3 else None))
