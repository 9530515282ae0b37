"""The dense evaluation gives the per-patch path's class probabilities."""

import numpy as np
import pytest

from defocus.dense import DenseModel
from defocus.estimate import classify, estimate_blur
from defocus.images import load_image
from defocus.weights import load_model

from .conftest import gradients, textured_image

pytestmark = pytest.mark.backends  # run under TensorFlow and JAX (test.sh)


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


def test_bfloat16_option_stays_close_to_float32(random_model_dir):
    """precision="bfloat16" computes in bfloat16 (not float32's probabilities to the bit) and gives
    float32 probabilities that sum to 1, within bfloat16's rounding of float32's."""
    model = load_model(random_model_dir)
    img = textured_image(150, 170, seed=11)
    ys, xs = _sample(150, 170, 300, np.random.default_rng(0))
    every = np.ones(len(ys), bool)
    pe, _, pb = DenseModel(model, tile=64).classify(img, ys, xs, blur_at=every)
    dm = DenseModel(model, tile=64, precision="bfloat16")
    qe, bi, qb = dm.classify(img, ys, xs, blur_at=every)
    assert np.array_equal(bi, np.arange(len(ys)))
    for ref, got in ((pe, qe), (pb, qb)):
        assert got.dtype == np.float32 and np.allclose(got.sum(axis=1), 1, atol=1e-5)
        assert 0 < np.abs(got - ref).max() < 0.05
    with pytest.raises(ValueError, match="precision"):
        DenseModel(model, tile=64, precision="float16")
    with pytest.raises(ValueError, match="float32 only"):
        estimate_blur(img, model, method="patch", precision="bfloat16")


@pytest.mark.parametrize("scene", ["01", "05", "22"])
def test_dense_equals_patches_published(published_model, rtf_dir, scene):
    img = load_image(rtf_dir / f"image_{scene}.png")
    ys, xs = _sample(360, 360, 600, np.random.default_rng(int(scene)))
    de, db, dm = _compare(published_model, img, ys, xs, tile=128)
    assert dm.shared_f1  # the published f1 weights of B-NET and E-NET are identical
    assert de <= 1e-4 and db <= 1e-4, (de, db)
    if scene == "05":  # decide (what estimate_blur uses) keeps only the argmaxes of classify's probabilities
        pe, bi, pb = dm.classify(img, ys, xs)
        is_depth, bi2, levels = dm.decide(img, ys, xs)
        assert 0 < is_depth.sum() < len(ys)  # both kinds of edge occur, so the split is tested
        np.testing.assert_array_equal(is_depth, pe.argmax(axis=1) == 1)
        np.testing.assert_array_equal(bi2, bi)
        np.testing.assert_array_equal(levels, pb.argmax(axis=1))


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


def test_one_tile_for_a_small_image_where_it_pays(random_model_dir, monkeypatch):
    """choose_tile: one tile of SINGLE_TILE px for an image whose longer side is between the
    default tile and SINGLE_TILE, only where single_tile_pays; estimate_blur uses it by default,
    with the map of the default tiling."""
    from defocus import estimate as est

    monkeypatch.setattr(est, "single_tile_pays", lambda: True)
    assert est.choose_tile((300, 260, 3)) == est.choose_tile((est.SINGLE_TILE, 10)) == est.SINGLE_TILE
    for shape in ((est.DEFAULT_TILE, est.DEFAULT_TILE), (200, 90), (est.SINGLE_TILE + 1, 300), (3000, 4000)):
        assert est.choose_tile(shape) == est.DEFAULT_TILE, shape
    model = load_model(random_model_dir)
    img = textured_image(300, 260, seed=5)
    auto = estimate_blur(img, model)
    assert set(vars(model)["_dense"]) == {"weights", (est.SINGLE_TILE, "float32")}
    tiled = estimate_blur(img, model, tile=est.DEFAULT_TILE)
    assert np.array_equal(auto.pattern, tiled.pattern) and np.array_equal(auto.depth, tiled.depth)
    np.testing.assert_allclose(auto.blur, tiled.blur, atol=1e-6)
    monkeypatch.setattr(est, "single_tile_pays", lambda: False)
    assert est.choose_tile((300, 260, 3)) == est.DEFAULT_TILE


def test_large_tiles_on_a_gpu(random_model_dir, monkeypatch):
    """choose_tile: GPU_TILE px tiles for images above SINGLE_TILE px where the backend has a GPU
    (small images as on a CPU); the map is the default tiling's."""
    from defocus import backend
    from defocus import estimate as est

    monkeypatch.setattr(est, "single_tile_pays", lambda: True)
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [])  # a CPU, also where tests run beside a GPU
    assert est.choose_tile((3000, 4000)) == est.DEFAULT_TILE
    monkeypatch.setattr(backend, "gpu_capabilities", lambda: [(9, 0)])
    assert est.choose_tile((3000, 4000, 3)) == est.choose_tile((est.SINGLE_TILE + 1, 20)) == est.GPU_TILE
    assert est.choose_tile((300, 260)) == est.SINGLE_TILE and est.choose_tile((200, 90)) == est.DEFAULT_TILE
    monkeypatch.setattr(est, "GPU_TILE", 160)  # a small one, so that this image has several
    model = load_model(random_model_dir)
    img = textured_image(est.SINGLE_TILE + 20, 250, seed=6)
    auto = estimate_blur(img, model)
    assert (160, "float32") in vars(model)["_dense"]
    tiled = estimate_blur(img, model, tile=est.DEFAULT_TILE)
    assert np.array_equal(auto.pattern, tiled.pattern) and np.array_equal(auto.depth, tiled.depth)
    np.testing.assert_allclose(auto.blur, tiled.blur, atol=1e-6)


def test_inference_traces_in_full_float32():
    """Under JAX the inference functions (compile_fn, forward) trace with float32 products, not
    JAX's default, which lets GPUs multiply in TensorFloat-32 (tile-dependent maps, seen on an H200)."""
    from defocus import backend

    if backend.name() != "jax":
        pytest.skip("JAX's matmul-precision setting; TensorFlow's inference is left as it is")
    import jax

    seen = []

    def fn(x):
        seen.append(str(jax.config.jax_default_matmul_precision))
        return x * 2

    assert float(backend.compile_fn(fn)(np.float32(1.5))) == 3.0
    assert seen == ["float32"]
    net = backend.keras.Sequential([backend.keras.Input((3,)), backend.keras.layers.Lambda(fn)])
    seen.clear()  # building the network called fn once, outside
    assert np.allclose(backend.forward(net)(np.ones((2, 3), np.float32)), 2.0)
    assert seen == ["float32"]
    assert str(jax.config.jax_default_matmul_precision) != "float32"  # only inside them


# ---------------------------------------------------------------- dense training
def _trainer_case(build, seed, tile=33, k=12):
    from defocus.backend import keras
    from defocus.dense import DenseTrainer

    keras.utils.set_random_seed(seed)
    net = build()
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, tile + 40, tile + 40, 3)).astype(np.uint8)
    pos = rng.integers(0, tile, (2, k, 2)).astype(np.int16)
    patches = np.stack([np.stack([x[b, i : i + 41, j : j + 41] for i, j in pos[b]]) for b in range(2)])
    return net, DenseTrainer(net), x, pos, patches.astype(np.float32) / 255


@pytest.mark.parametrize("which", ["bnet", "enet"])
def test_dense_trainer_equals_the_patch_network(which):
    """Output and gradients of the dense pass at K pixels of a tile are the patch network's."""
    from defocus import nets
    from defocus.backend import keras

    build = nets.build_bnet if which == "bnet" else nets.build_enet
    net, trainer, x, pos, patches = _trainer_case(build, seed=3)
    n_cls = 23 if which == "bnet" else 2
    out = np.asarray(trainer((x, pos)))
    assert out.shape == (2, 12, n_cls)
    ref = np.asarray(net(patches.reshape(-1, 41, 41, 3))).reshape(2, 12, n_cls)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # a 41 x 41 patch is a tile of side 1
    one = np.asarray(trainer((x[:, :41, :41], np.zeros((2, 1, 2), np.int16))))[:, 0]
    np.testing.assert_allclose(one, np.asarray(net(x[:, :41, :41].astype(np.float32) / 255)), atol=1e-6)
    y = np.random.default_rng(0).integers(0, n_cls, (2, 12))
    loss = keras.losses.SparseCategoricalCrossentropy()
    ga = gradients(net, lambda: loss(y, trainer((x, pos), training=False)))
    gb = gradients(net, lambda: loss(y.reshape(-1), net(patches.reshape(-1, 41, 41, 3), training=False)))
    assert len(ga) == len(gb) == len(net.trainable_variables) and all(g is not None for g in ga)
    for u, v in zip(ga, gb):
        np.testing.assert_allclose(u, v, atol=1e-5 * max(1.0, float(np.abs(v).max())))


def test_dense_training_keeps_a_frozen_f1():
    from defocus import nets
    from defocus.train import compile_net, freeze_f1_from

    bnet = nets.build_bnet()
    net, trainer, x, pos, _ = _trainer_case(nets.build_enet, seed=4)
    freeze_f1_from(net, bnet)
    f1 = [w.copy() for w in nets.f1_of(net).get_weights()]
    head = [w.copy() for w in nets.find_layer(net, "e_out").get_weights()]
    compile_net(trainer, 1e-3, tolerance=False)
    y = np.ones((2, 12), np.int32)
    w = np.ones((2, 12), np.float32)
    trainer.fit((x, pos), y, sample_weight=w, batch_size=2, epochs=2, verbose=0)
    for a, b in zip(f1, nets.f1_of(net).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(head, nets.find_layer(net, "e_out").get_weights()))


def test_tolerance_accuracy_is_per_sample_and_weighted():
    from defocus.backend import keras
    from defocus.train import tolerance_accuracy

    y = np.array([[3, 3, 10], [0, 22, 5]])
    pred = np.zeros((2, 3, 23), np.float32)
    for (b, k), c in np.ndenumerate(np.array([[4, 1, 10], [1, 0, 5]])):
        pred[b, k, c] = 1
    np.testing.assert_array_equal(np.asarray(tolerance_accuracy(y, pred)), [[1, 0, 1], [1, 0, 1]])
    m = keras.metrics.MeanMetricWrapper(tolerance_accuracy)
    m.update_state(y, pred, sample_weight=np.array([[1, 1, 0], [1, 0, 0]], np.float32))
    assert float(m.result()) == pytest.approx(2 / 3)


def test_cached_inference_follows_each_models_weights(random_model_dir):
    """Compiled functions and dense models are cached per model: loading models in turn (ids of
    freed models get reused) or changing a model's weights never serves another's outputs."""
    import gc

    from defocus.estimate import dense_model
    from defocus.patches import extract_patches, pad_image

    img = textured_image(60, 70, seed=3)
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, 60, 40), rng.integers(0, 70, 40)
    patches = extract_patches(pad_image(img.astype(np.float32)), ys, xs)
    seen = []
    for i in range(4):
        model = load_model(random_model_dir)
        for net in (model.bnet, model.enet):
            net.set_weights([w * (1 + 0.3 * i) for w in net.get_weights()])
        direct = np.asarray(model.bnet(patches, training=False))
        np.testing.assert_allclose(classify(model.bnet, img, ys, xs), direct, atol=1e-5)
        dense_b = dense_model(model, 64).classify(img, ys, xs, blur_at=np.ones(len(ys), bool))[2]
        np.testing.assert_allclose(dense_b, direct, atol=1e-4)
        seen.append(direct)
        del model
        gc.collect()
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(seen, seen[1:]))  # the models do differ
    model = load_model(random_model_dir)
    first = dense_model(model, 64)
    assert dense_model(model, 64) is first  # cached on the model
    other = dense_model(model, 64, "bfloat16")
    assert other is not first and other.precision == "bfloat16"
    assert dense_model(model, 64) is first and dense_model(model, 64, "bfloat16") is other  # one per precision
    model.bnet.set_weights([w * 0.5 for w in model.bnet.get_weights()])  # changed in place: rebuilt
    again = dense_model(model, 64)
    assert again is not first
    np.testing.assert_allclose(again.classify(img, ys, xs, blur_at=np.ones(len(ys), bool))[2],
                               np.asarray(model.bnet(patches, training=False)), atol=1e-4)


@pytest.mark.parametrize("shared", [False, True])
def test_tile_macs_counts_every_convolution(random_model_dir, monkeypatch, shared):
    """tile_macs (the arithmetic `defocus bench` reports) equals the multiply-adds of the
    convolutions the dense path actually runs on a tile, counted as they run."""
    from defocus import backend
    from defocus.dense import tile_macs

    dm = DenseModel(load_model(random_model_dir), tile=20)
    dm.shared_f1 = shared  # the random model's f1 weights differ; the count does not depend on them
    real, counted = backend.conv, []

    def counting(x, w, dilation=1):
        y = real(x, w, dilation)
        if x.shape[0] == 1:  # a tile's map (the heads run on a batch of the 2 edge pixels' gathers)
            counted.append(int(np.prod(y.shape[1:3])) * int(np.prod(w.shape)))
        return y

    monkeypatch.setattr(backend, "conv", counting)
    x = np.zeros((1, 20 + 40, 17 + 40, 3), np.float32)
    yx = np.array([[0, 0], [19, 16]], np.int32)
    _, maps = dm._enet_tile(x, yx)
    dm._bnet_tile(*maps, yx)
    assert len(counted) == (12 if shared else 24) + 4 + 4 + 3  # f1 (once or twice), f2, both trunks' conv1
    assert sum(counted) == tile_macs(20, 17, shared)
