import numpy as np
import pytest

from defocus import nets
from defocus.backend import keras
from defocus.patches import extract_patches, pad_image
from defocus.weights import ModelError, load_model, save_model

pytestmark = pytest.mark.backends  # run under TensorFlow and JAX (test.sh)


@pytest.fixture(scope="module")
def pair():
    keras.utils.set_random_seed(1)
    return nets.build_bnet(), nets.build_enet()


def test_parameter_counts(pair):
    bnet, enet = pair
    assert bnet.count_params() == 560_731
    assert enet.count_params() == 706_744
    assert bnet.output_shape == (None, 23)
    assert enet.output_shape == (None, 2)


def test_convs_bias_free_valid_relu_and_pools(pair):
    for net in pair:
        convs = nets.conv_layers(net, "")
        assert len(convs) == (16 if net.name == "bnet" else 20)
        for c in convs:
            assert not c.use_bias and c.padding == "valid" and c.strides == (1, 1)
            assert c.activation.__name__ == "relu" and c.filters == 64
        pools = [la for la in net.get_layer("f1_net").layers if isinstance(la, keras.layers.MaxPooling2D)]
        assert [(p.pool_size, p.strides, p.padding) for p in pools] == [((3, 3), (3, 3), "same")] * 2


def test_branch_shapes_and_merge_order(pair):
    bnet, enet = pair
    f1 = nets.f1_of(bnet)
    assert [tuple(o.shape) for o in f1.outputs] == [(None, 7, 7, 64)] * 3
    # spatial sizes along the 41 branch: 39 | 13 | 11 | 9 | 7
    sizes = [f1.get_layer(n).output.shape[1] for n in
             ("f1_41_conv1", "f1_41_pool", "f1_41_conv2", "f1_41_conv3", "f1_41_conv4")]
    assert sizes == [39, 13, 11, 9, 7]
    sizes27 = [f1.get_layer(n).output.shape[1] for n in
               ("f1_27_conv1", "f1_27_conv2", "f1_27_conv3", "f1_27_pool", "f1_27_conv4")]
    assert sizes27 == [25, 23, 21, 7, 7]
    assert f1.get_layer("f1_27_conv4").kernel_size == (1, 1)
    # f1 outputs in the order [41, 27, 15]
    assert [o._keras_history.operation.name for o in f1.outputs] == ["f1_41_conv4", "f1_27_conv4", "f1_15_conv4"]

    def sources(net):
        return [(t._keras_history.operation.name, t._keras_history.tensor_index) for t in net.get_layer("merge").input]

    assert sources(bnet) == [("f1_net", 0), ("f1_net", 1), ("f1_net", 2)]
    # E-NET: its own f2-41 first, then f1's three maps
    assert sources(enet) == [("f2_41_conv4", 0), ("f1_net", 0), ("f1_net", 1), ("f1_net", 2)]
    assert enet.get_layer("e_conv1").get_weights()[0].shape == (3, 3, 256, 64)


def test_crops_are_the_published_ones():
    """P27 = P41[8:35, 8:35] and P15 = P41[14:29, 14:29]."""
    f1 = nets.build_f1()
    sub = keras.Model(f1.input, [f1.get_layer("crop27").output, f1.get_layer("crop15").output])
    p = np.random.default_rng(0).random((2, 41, 41, 3)).astype(np.float32)
    c27, c15 = (np.asarray(t) for t in sub(p))
    np.testing.assert_array_equal(c27, p[:, 8:35, 8:35])
    np.testing.assert_array_equal(c15, p[:, 14:29, 14:29])


def test_shared_f1_is_one_object():
    f1 = nets.build_f1()
    b, e = nets.build_bnet(f1), nets.build_enet(f1)
    assert nets.f1_of(b) is nets.f1_of(e)
    assert e.count_params() == 706_744


def test_inference_ignores_dropout(pair):
    bnet, _ = pair
    x = np.random.default_rng(2).random((4, 41, 41, 3)).astype(np.float32)
    a, b = np.asarray(bnet(x, training=False)), np.asarray(bnet(x, training=False))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)


def test_save_load_roundtrip(pair, tmp_path):
    bnet, enet = pair
    save_model(tmp_path / "m", bnet, enet, {"seed": 1})
    m = load_model(tmp_path / "m")
    assert m.kind == "defocus" and m.meta["seed"] == 1 and m.meta["format"] == "defocus-model"
    img = np.random.default_rng(3).random((50, 50, 3)).astype(np.float32)
    x = extract_patches(pad_image(img), np.array([0, 10, 49]), np.array([5, 20, 49]))
    for a, b in ((bnet, m.bnet), (enet, m.enet)):
        np.testing.assert_array_equal(np.asarray(a(x, training=False)), np.asarray(b(x, training=False)))
    # overwrite in place is atomic and leaves no temporary folders
    save_model(tmp_path / "m", bnet, enet, {"seed": 2})
    assert load_model(tmp_path / "m").meta["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_model_folders(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "bnet.weights.h5").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="bnet.weights.h5"):
        load_model(tmp_path)
