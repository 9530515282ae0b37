import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.feature import canny

from defocus.edges import CANNY_HIGH, CANNY_LOW, CANNY_SIGMA, detect_edges
from defocus.images import load_image


def _skimage(img):
    return canny(rgb2gray(img.astype(np.float64)), sigma=CANNY_SIGMA, low_threshold=CANNY_LOW,
                 high_threshold=CANNY_HIGH)


def test_slabs_give_the_edges_of_one_canny_call(rtf_dir):
    """Large photos are processed in slabs (bounded memory); the edges are exactly scikit-image's,
    also for slabs much thinner than the smoothing margin and edges that cross many slabs."""
    for path in sorted(rtf_dir.glob("image_*.png")):
        img = load_image(path)
        whole = _skimage(img)
        assert 10_000 < whole.sum() < 20_000
        np.testing.assert_array_equal(detect_edges(img), whole)
        for rows in (7, 37, 100):
            np.testing.assert_array_equal(detect_edges(img, slab_rows=rows), whole)


def test_hysteresis_joins_weak_edges_across_slabs():
    # a vertical step whose contrast rises down the image: its gradient passes the high threshold
    # only below row ~138, the low one everywhere; the whole edge is kept, so the weak part is
    # joined through slabs (of 20 rows) that hold no strong pixel (per-slab hysteresis drops it)
    h, w = 240, 80
    step = np.zeros((h, w), np.float32)
    step[:, w // 2 :] = np.linspace(0.035, 0.09, h)[:, None]
    img = np.repeat(step[:, :, None], 3, axis=2)
    whole = _skimage(img)
    slabs = detect_edges(img, slab_rows=20)
    np.testing.assert_array_equal(slabs, whole)
    rows_with_edge = np.flatnonzero(whole.any(axis=1))
    assert rows_with_edge.min() < 5 and rows_with_edge.max() > 230
    strong = canny(rgb2gray(img.astype(np.float64)), sigma=CANNY_SIGMA, low_threshold=CANNY_HIGH,
                   high_threshold=CANNY_HIGH)
    assert np.flatnonzero(strong.any(axis=1)).min() > 100


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="low <= high"):
        detect_edges(np.zeros((50, 50, 3), np.float32), low=0.2, high=0.1)
