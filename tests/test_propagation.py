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


def _reference_domain_transform(image, guide, sigma_s, sigma_r, n_iter, penalty):
    """Straightforward float64 domain-transform RF filter (whole-image arrays)."""
    f = np.array(image, dtype=np.float64)
    g = np.asarray(guide, dtype=np.float64)
    ratio = sigma_s / sigma_r
    dx = np.ones(f.shape[:2])
    dx[:, 1:] += ratio * np.abs(np.diff(g, axis=1)).sum(axis=2)
    dy = np.ones(f.shape[:2])
    dy[1:, :] += ratio * np.abs(np.diff(g, axis=0)).sum(axis=2)
    dx += penalty
    dy += penalty
    h, w = f.shape[:2]
    for i in range(1, n_iter + 1):
        sigma_i = sigma_s * np.sqrt(3.0) * 2.0 ** (n_iter - i) / np.sqrt(4.0**n_iter - 1)
        a = np.exp(-np.sqrt(2.0) / sigma_i)
        vx, vy = (a**dx)[:, :, None], (a**dy)[:, :, None]
        for x in range(1, w):
            f[:, x] += vx[:, x] * (f[:, x - 1] - f[:, x])
        for x in range(w - 2, -1, -1):
            f[:, x] += vx[:, x + 1] * (f[:, x + 1] - f[:, x])
        for y in range(1, h):
            f[y] += vy[y] * (f[y - 1] - f[y])
        for y in range(h - 2, -1, -1):
            f[y] += vy[y + 1] * (f[y + 1] - f[y])
    return f


@pytest.mark.parametrize("block", [None, 700])  # one block; blocks of 7 rows, a short last one
def test_float32_blocked_filter_matches_float64_reference(block, monkeypatch):
    """The float32, blocked, in-place filter (and propagate built on it) equals a
    plain float64 implementation to 1e-4 px, with a depth-edge penalty."""
    from defocus import propagation

    if block is not None:
        monkeypatch.setattr(propagation, "BLOCK_PIXELS", block)
    h, w = 72, 90
    img = textured_image(h, w, seed=11)
    rng = np.random.default_rng(12)
    pattern = rng.random((h, w)) < 0.04
    sparse = np.where(pattern, rng.uniform(0.5, 6.0, (h, w)), 0.0).astype(np.float32)
    depth = (rng.random((h, w)) < 0.03) & ~pattern
    depth[:, 45] = True
    psi = 20.0
    guide = simplify(img)
    sigma_s = min(h, w) / 8.0
    stack = np.stack([np.where(pattern, sparse, 0.0), pattern.astype(np.float64)], axis=2)
    ref = _reference_domain_transform(stack, guide, sigma_s, 3.75, 5, psi * depth)
    ours = domain_transform(stack, guide, sigma_s, 3.75, 5, psi * depth)
    assert ours.dtype == np.float32 and ours.shape == stack.shape
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()
    expected = np.clip(ref[:, :, 0] / ref[:, :, 1], sparse[pattern].min(), sparse[pattern].max())
    blur = propagate(img, sparse, pattern, depth, psi=psi)
    assert np.abs(blur - expected).max() <= 1e-4
    # the block size changes the work split, not the arithmetic
    monkeypatch.setattr(propagation, "BLOCK_PIXELS", 1 << 21)
    np.testing.assert_array_equal(propagate(img, sparse, pattern, depth, psi=psi), blur)


def test_propagate_memory_is_a_few_planes(monkeypatch):
    """Peak traced memory of propagate stays near 5 float32 H x W planes (guide +
    distance maps; then channels + distances) plus the block scratch, whatever
    n_iter (the former float64 whole-image filter peaked at 25 planes)."""
    import tracemalloc

    from defocus import propagation

    h, w = 240, 320
    monkeypatch.setattr(propagation, "BLOCK_PIXELS", 4096)  # blocks of 12 rows: scratch ~0.2 plane
    img = textured_image(h, w, seed=13)
    rng = np.random.default_rng(14)
    pattern = rng.random((h, w)) < 0.05
    sparse = np.where(pattern, rng.uniform(0.5, 6.0, (h, w)), 0.0).astype(np.float32)
    depth = (rng.random((h, w)) < 0.01) & ~pattern
    propagate(img, sparse, pattern, depth, psi=20)  # warm-up (imports, caches)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        propagate(img, sparse, pattern, depth, psi=20)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= 6.5 * h * w * 4
