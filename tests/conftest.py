"""Shared fixtures. Tests that need ../shared (dataset mirror, published weights)
skip with a reason when it is absent; CI has it beside the clone."""

from __future__ import annotations

import os
import sys

if os.environ.get("DEFOCUS_BLOCK_TENSORFLOW"):  # test.sh's JAX pass: as on a machine without TensorFlow
    sys.modules["tensorflow"] = None

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from defocus import config  # noqa: E402


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not found: set DEFOCUS_SHARED to the folder with data/ and reference/")
    return path


@pytest.fixture(scope="session")
def reference_dir():
    return _need(config.reference_dir())


@pytest.fixture(scope="session")
def rtf_dir():
    return _need(config.shared_dir() / "data" / "rtf")


@pytest.fixture(scope="session")
def published_model(reference_dir):
    from defocus.weights import load_published

    return load_published(reference_dir)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory):
    """A model folder in the defocus format with seeded random weights (no data needed)."""
    from defocus import nets
    from defocus.backend import keras
    from defocus.weights import save_model

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("models") / "random"
    save_model(folder, nets.build_bnet(), nets.build_enet(), {"note": "random weights for tests"})
    return folder


def textured_image(h=96, w=96, seed=0):
    """RGB float image in [0, 1] with a sharp left half and a smooth right half."""
    rng = np.random.default_rng(seed)
    base = (rng.random((h // 8 + 1, w // 8 + 1, 3)) > 0.5).astype(np.float32)
    img = np.kron(base, np.ones((8, 8, 1), dtype=np.float32))[:h, :w]
    import cv2

    img[:, w // 2 :] = cv2.GaussianBlur(img, (0, 0), 3)[:, w // 2 :]
    return np.clip(img, 0, 1)


def gradients(net, loss_fn) -> list[np.ndarray]:
    """Gradients of ``loss_fn()`` (a scalar computed from ``net``'s variables) with respect to
    ``net``'s trainable variables, as numpy arrays, under the running Keras backend."""
    from defocus import backend
    from defocus.backend import keras

    if backend.name() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss_fn()
        return [np.asarray(g) for g in tape.gradient(value, net.trainable_variables)]
    import jax

    fixed = [(v, v.value) for v in net.non_trainable_variables]

    def f(values):
        with keras.StatelessScope(state_mapping=list(zip(net.trainable_variables, values)) + fixed):
            return loss_fn()

    return [np.asarray(g) for g in jax.grad(f)([v.value for v in net.trainable_variables])]
