"""The dense evaluation gives the per-patch path's class probabilities."""

import numpy as np
import pytest

from defocus.dense import DenseModel
from defocus.estimate import classify, estimate_blur
from defocus.images import load_image
from defocus.weights import load_model

from .conftest import textured_image


def _compare(model, image, ys, xs, tile):
    dm = DenseModel(model, tile=tile)
    pe, bi, pb = dm.classify(image, ys, xs, blur_at=np.ones(len(ys), bool))
    assert np.array_equal(bi, np.arange(len(ys)))
    ref_e = classify(model.enet, image, ys, xs)
    ref_b = classify(model.bnet, image, ys, xs)
    return np.abs(pe - ref_e).max(), np.abs(pb - ref_b).max(), dm


def _sample(h, w, n, rng):
    """Random pixels plus the corners and pixels on both sides of tile borders."""
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    extra = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (127, 127), (128, 128), (127, 128), (255, 256)]
    extra = [(y, x) for y, x in extra if y < h and x < w]
    return np.r_[ys, [e[0] for e in extra]], np.r_[xs, [e[1] for e in extra]]


def test_dense_equals_patches_random_weights(random_model_dir):
    """Random B-NET and E-NET with different f1 weights (the unshared code path)."""
    model = load_model(random_model_dir)
    img = textured_image(150, 170, seed=11)
    ys, xs = _sample(150, 170, 300, np.random.default_rng(0))
    de, db, dm = _compare(model, img, ys, xs, tile=64)
    assert not dm.shared_f1
    assert de <= 1e-4 and db <= 1e-4


@pytest.mark.parametrize("scene", ["01", "05", "22"])
def test_dense_equals_patches_published(published_model, rtf_dir, scene):
    img = load_image(rtf_dir / f"image_{scene}.png")
    ys, xs = _sample(360, 360, 600, np.random.default_rng(int(scene)))
    de, db, dm = _compare(published_model, img, ys, xs, tile=128)
    assert dm.shared_f1  # the published f1 weights of B-NET and E-NET are identical
    assert de <= 1e-4 and db <= 1e-4, (de, db)


def test_dense_and_patch_estimates_agree(random_model_dir):
    model = load_model(random_model_dir)
    img = textured_image(90, 100, seed=12)
    a = estimate_blur(img, model, method="dense", tile=48)
    b = estimate_blur(img, model, method="patch", batch_size=97)
    assert np.array_equal(a.pattern, b.pattern) and np.array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.sparse, b.sparse)
    np.testing.assert_allclose(a.blur, b.blur, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        estimate_blur(img, model, method="fast")
