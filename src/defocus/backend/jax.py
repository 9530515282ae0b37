"""JAX: what the rest of the package cannot write in ``keras.ops`` (see :mod:`defocus.backend`).

Compiled functions are specialised to their input shapes, so callers pad inputs to
a few fixed sizes (:data:`STATIC_SHAPES`).
"""

from __future__ import annotations

import contextlib
import weakref

import jax
import keras
import numpy as np

#: compiled functions are specialised per input shape: pad inputs to a few sizes
STATIC_SHAPES = True


def conv(x, w, dilation=1):
    """VALID 2-D convolution, stride 1 (XLA's; differentiable with any dilation)."""
    return keras.ops.conv(x, w, strides=1, padding="valid", dilation_rate=dilation)


def trainable_conv():
    """The convolution to train through (the same: XLA has gradients for dilation)."""
    return conv


#: matrix-product and convolution precision of the inference functions (:func:`compile_fn`,
#: :func:`forward`): full float32. JAX's default lets GPUs of compute capability 8.0 and up
#: multiply float32 in TensorFloat-32 (10-bit mantissa); measured under that default on one
#: H200, the 12 MP photo's maps differed between tile sides by up to 0.05 px and RTF images' by up
#: to 0.09 px, where the float32 CPUs give identical maps. CPUs compute float32 either way.
INFERENCE_PRECISION = "float32"


def _exact(jitted):
    """``jitted`` traced and run under :data:`INFERENCE_PRECISION` (JAX keys its compiled
    functions by that setting, so training's own default is untouched)."""

    def call(*args):
        with jax.default_matmul_precision(INFERENCE_PRECISION):
            return jitted(*args)

    return call


def compile_fn(fn, signature=None):
    """``fn`` compiled by XLA (once per distinct input shape; ``signature`` is ignored), its
    products in full float32 (:data:`INFERENCE_PRECISION`)."""
    return _exact(jax.jit(fn))


def bucket(n: int, least: int = 16) -> int:
    """The padded size for ``n`` rows: the next power of two, at least ``least``."""
    return max(least, 1 << max(0, int(n) - 1).bit_length())


def forward(net, patch: int = 41):
    """Compiled ``net(x, training=False)``: the network's current variables are
    arguments, so it follows its weights; batches are padded to a power of two so
    that a few compilations serve every size; products in full float32
    (:data:`INFERENCE_PRECISION`). It does not keep the network alive."""
    ref = weakref.ref(net)

    @_exact
    @jax.jit
    def run(trainable, non_trainable, x):
        out, _ = ref().stateless_call(trainable, non_trainable, x, training=False)
        return out

    def call(x):
        n = ref()
        x = np.asarray(x, np.float32)
        rows = len(x)
        padded = np.zeros((bucket(rows),) + x.shape[1:], np.float32)
        padded[:rows] = x
        out = run([v.value for v in n.trainable_variables], [v.value for v in n.non_trainable_variables], padded)
        return out[:rows]

    return call


@contextlib.contextmanager
def training_scope():
    """Context in which to build, compile and fit a model: data parallel over all
    local devices when there are several (``keras.distribution.DataParallel``)."""
    devices = jax.local_devices()
    if len(devices) < 2:
        yield
        return
    before = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield
    finally:
        keras.distribution.set_distribution(before)


def determinism() -> None:
    """Nothing to do: XLA on a CPU is deterministic, and on a GPU
    ``--xla_gpu_deterministic_ops`` is set before JAX starts (:mod:`defocus.backend`)."""


def onednn_enabled() -> bool:
    return False


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability (major, minor) of each GPU JAX sees (empty on a CPU)."""
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        return []
    caps = []
    for d in gpus:
        cc = getattr(d, "compute_capability", "0.0")
        caps.append(tuple(int(p) for p in str(cc).split(".")[:2]))
    return caps


def device_count() -> int:
    """Devices a training step is spread over."""
    return len(jax.local_devices())


def versions() -> dict:
    import jaxlib

    return {"keras": keras.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__}


def threads() -> list[int]:
    return []
