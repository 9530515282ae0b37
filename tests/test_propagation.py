import cv2
import numpy as np
import pytest

from defocus.propagation import domain_transform, propagate, simplify

from .conftest import textured_image


@pytest.mark.parametrize("sigma_s,sigma_r", [(7.0, 0.5), (12.0, 3.75)])
def test_matches_opencv_dtfilter_without_penalty(sigma_s, sigma_r):
    guide = textured_image(64, 80, seed=3)
    src = np.random.default_rng(4).random((64, 80, 2)).astype(np.float32)
    ours = domain_transform(src, guide, sigma_s, sigma_r, 5)
    ref = cv2.ximgproc.dtFilter(guide, src, sigma_s, sigma_r, mode=cv2.ximgproc.DTF_RF, numIters=5)
    assert np.abs(ours - ref).max() < 1e-5
    # a zero penalty is the same filter
    np.testing.assert_allclose(domain_transform(src, guide, sigma_s, sigma_r, 5, np.zeros((64, 80))), ours)


def test_matches_opencv_on_a_real_image(rtf_dir):
    from defocus.images import load_image

    img = load_image(rtf_dir / "image_01.png")
    ours = domain_transform(img, img, 7, 0.5, 5)
    ref = cv2.ximgproc.dtFilter(img, img, 7, 0.5, mode=cv2.ximgproc.DTF_RF, numIters=5)
    assert np.abs(ours - ref).max() < 1e-5
    # the simplification step (compiled OpenCV) is our filter with those parameters
    assert np.abs(simplify(img) - ours).max() < 1e-5


def _two_sides(psi):
    """Flat image; pattern edges of blur 1 px left of column 40, 5 px right of it;
    a vertical depth-edge line at column 40."""
    h, w = 60, 100
    img = np.full((h, w, 3), 0.5, np.float32)
    sparse = np.zeros((h, w), np.float32)
    pattern = np.zeros((h, w), bool)
    pattern[::4, 5:38:4] = True
    sparse[pattern] = 1.0
    right = np.zeros((h, w), bool)
    right[::4, 44:98:4] = True
    pattern |= right
    sparse[right] = 5.0
    depth = np.zeros((h, w), bool)
    depth[:, 40] = True
    return propagate(img, sparse, pattern, depth, psi=psi)


def test_large_psi_stops_propagation_at_depth_edge():
    free, stopped = _two_sides(0.0), _two_sides(1e4)
    # without penalty the values mix across the line
    assert free[:, 39].mean() > 1.5 and free[:, 40].mean() < 4.5
    # with a large penalty the line holds: 1 px on its left, 5 px from it on
    assert np.abs(stopped[:, :40] - 1.0).max() < 1e-3
    assert np.abs(stopped[:, 40:] - 5.0).max() < 1e-3


def test_constant_values_stay_constant_and_bounded():
    img = textured_image(70, 90, seed=5)
    pattern = np.random.default_rng(6).random((70, 90)) > 0.97
    out = propagate(img, np.full((70, 90), 2.25, np.float32), pattern, None, psi=100)
    np.testing.assert_allclose(out, 2.25, atol=1e-5)
    vals = np.random.default_rng(7).uniform(0.5, 6.0, (70, 90)).astype(np.float32)
    out = propagate(img, vals, pattern, pattern & (np.arange(90) % 7 == 0), psi=100)
    assert out.dtype == np.float32 and out.shape == (70, 90)
    assert vals[pattern].min() - 1e-6 <= out.min() and out.max() <= vals[pattern].max() + 1e-6


def test_always_finite():
    img = textured_image(64, 64, seed=8)
    none = np.zeros((64, 64), bool)
    # no edges at all -> fill value everywhere
    np.testing.assert_array_equal(propagate(img, np.zeros((64, 64)), none, None, fill=0.0), 0.0)
    # no depth edges (the published code divides by zero here)
    p = none.copy()
    p[10, 10] = p[50, 50] = True
    s = np.where(p, 3.0, 0.0)
    assert np.isfinite(propagate(img, s, p, none, psi=20)).all()
    # a region sealed off by depth edges under a huge penalty: finite, gets the mean of the edge values
    depth = none.copy()
    depth[20:44, 20] = depth[20:44, 43] = depth[20, 20:44] = depth[43, 20:44] = True
    s = np.where(p, np.where(np.arange(64)[None, :] < 30, 1.0, 5.0), 0.0)
    out = propagate(img, s, p, depth, psi=1e300)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[30, 30], 3.0, atol=1e-6)
