"""Edge detection: Canny on the luminance."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2gray
from skimage.feature import canny

#: Default Canny parameters: Gaussian sigma in px and hysteresis thresholds on
#: the gradient magnitude of the luminance in [0, 1]. On the three RTF scenes
#: these give about as many edge pixels as the authors' published edge maps.
CANNY_SIGMA = 2.0
CANNY_LOW = 0.05
CANNY_HIGH = 0.10


#: Rows per slab of :func:`detect_edges` on large images: Canny's float64 temporaries
#: (about 7 image planes) then cover a slab, not the whole image.
SLAB_ROWS = 512


def detect_edges(
    image: np.ndarray,
    sigma: float = CANNY_SIGMA,
    low: float = CANNY_LOW,
    high: float = CANNY_HIGH,
    slab_rows: int = SLAB_ROWS,
) -> np.ndarray:
    """Canny edges of an RGB image's luminance (scikit-image).

    Parameters
    ----------
    image : ndarray, (H, W, 3) float in [0, 1]
    sigma : float
        Standard deviation of the Gaussian smoothing, px.
    low, high : float
        Hysteresis thresholds on the gradient magnitude (luminance in [0, 1]).
    slab_rows : int
        Images taller than this are processed in slabs of this many rows (plus a
        margin that covers the smoothing, the gradient and the non-maximum
        suppression), and the hysteresis is done on the whole image: the same edges
        as one call of scikit-image's ``canny``, with temporaries the size of a slab.

    Returns
    -------
    edges : ndarray, (H, W) bool
    """
    if not 0 <= low <= high:
        raise ValueError(f"Canny thresholds must satisfy 0 <= low <= high, got {low}, {high}")
    h = image.shape[0]
    if h <= slab_rows:
        return canny(_gray(image), sigma=sigma, low_threshold=low, high_threshold=high)
    # Canny = candidate pixels (local maxima of the gradient magnitude >= a threshold: local,
    # so computed slab by slab) + hysteresis (global: 8-connected candidate components that hold
    # a pixel >= high). canny(., t, t) gives the candidates of threshold t: no hysteresis then.
    margin = int(4 * sigma + 0.5) + 4  # the Gaussian's radius (truncate=4), Sobel and NMS
    weak = np.zeros(image.shape[:2], bool)
    strong = np.zeros(image.shape[:2], bool)
    for r0 in range(0, h, slab_rows):
        r1 = min(r0 + slab_rows, h)
        a, b = max(r0 - margin, 0), min(r1 + margin, h)
        gray = _gray(image[a:b])
        weak[r0:r1] = canny(gray, sigma=sigma, low_threshold=low, high_threshold=low)[r0 - a : r1 - a]
        strong[r0:r1] = canny(gray, sigma=sigma, low_threshold=high, high_threshold=high)[r0 - a : r1 - a]
    labels, count = ndi.label(weak, np.ones((3, 3), bool))
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


def _gray(image: np.ndarray) -> np.ndarray:
    return rgb2gray(np.asarray(image, dtype=np.float64))
