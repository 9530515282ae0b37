"""Both Keras backends: the same networks, the same weights, the same training on several devices.

Keras picks its backend once per process, so the other backend runs in a subprocess
(tests/backend_job.py). The rest of the suite runs under TensorFlow, and again under JAX
for the modules marked ``backends`` (test.sh).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defocus import backend
from defocus.weights import load_model

JOB = Path(__file__).with_name("backend_job.py")
OTHER = "jax" if backend.name() == "tensorflow" else "tensorflow"


def _job(backend_name: str, *args, env=None) -> None:
    e = dict(os.environ, KERAS_BACKEND=backend_name, **(env or {}))
    r = subprocess.run([sys.executable, str(JOB), *map(str, args)], env=e, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _patches(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 41, 41, 3), np.float32)


def test_backend_is_chosen_once():
    assert backend.name() in backend.NAMES
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.use("torch")
    with pytest.raises(RuntimeError, match="cannot switch"):
        backend.use(OTHER)
    backend.use(backend.name())  # the running one: fine


def test_tensorflow_loads_without_jax():
    """Under TensorFlow the package keeps JAX out of the process (TensorFlow's TFLite helpers would
    import it: 107 MiB), and JAX can still be imported after."""
    code = ("import sys\n"
            "from defocus import backend\n"
            "backend.keras\n"
            "assert backend.name() == 'tensorflow' and 'tensorflow' in sys.modules\n"
            "assert 'jax' not in sys.modules, 'JAX was imported'\n"
            "import jax\n"
            "assert jax.numpy.add(1, 2) == 3\n")
    e = dict(os.environ, KERAS_BACKEND="tensorflow")
    e.pop("DEFOCUS_BLOCK_TENSORFLOW", None)
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_weights_load_under_the_other_backend(random_model_dir, tmp_path):
    """Weights saved under this backend give the same outputs under the other (1e-5), and back."""
    x = _patches()
    np.save(tmp_path / "x.npy", x)
    here = load_model(random_model_dir)
    ours = np.concatenate([np.asarray(here.bnet(x, training=False)), np.asarray(here.enet(x, training=False))], 1)
    # there: this model's outputs, and a model made and saved there (seed 7) with its outputs
    _job(OTHER, "outputs", tmp_path / "x.npy", tmp_path / "theirs.npy", random_model_dir, 7, tmp_path / "made_there")
    theirs = np.load(tmp_path / "theirs.npy")
    np.testing.assert_allclose(theirs[0], ours, atol=1e-5)
    m = load_model(tmp_path / "made_there")  # saved there, loaded here
    here = np.concatenate([np.asarray(m.bnet(x, training=False)), np.asarray(m.enet(x, training=False))], 1)
    np.testing.assert_allclose(here, theirs[1], atol=1e-5)
    assert np.abs(here - ours).max() > 1e-3  # another model indeed


@pytest.mark.parametrize("name", ["tensorflow", "jax"])
def test_training_on_two_devices_matches_one(name, tmp_path):
    """Data-parallel training over 2 logical CPU devices (TensorFlow: MirroredStrategy; JAX:
    keras.distribution.DataParallel) gives one device's losses over 20 steps (1e-4 relative)."""
    _job(name, "steps", 2, tmp_path / "steps.json")  # one process, 2 devices: one, then both
    run = json.loads((tmp_path / "steps.json").read_text())
    assert run["backend"] == name and run["devices"] == 2
    a, b = np.array(run["one"]), np.array(run["all"])
    assert len(a) == 20 and np.all(np.isfinite(a))
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert abs(a[-1] - a[0]) > 1e-4  # it did train
