"""TensorFlow: what the rest of the package cannot write in ``keras.ops`` (see :mod:`defocus.backend`)."""

from __future__ import annotations

import json
import os
import weakref

import keras
import tensorflow as tf

#: shapes of compiled functions may vary (traced once for any size)
STATIC_SHAPES = False


def bucket(n: int) -> int:
    """The size to pad ``n`` rows to: ``n`` (compiled functions take any size)."""
    return int(n)


def conv(x, w, dilation=1):
    """VALID 2-D convolution, stride 1. conv2d's own dilation (oneDNN) is about 1.5x
    faster on a CPU than ``tf.nn.convolution``'s space-to-batch."""
    return tf.nn.conv2d(x, w, 1, "VALID", dilations=dilation)


def _conv_s2b(x, w, dilation=1):
    """The same convolution, dilation by space-to-batch: its gradient exists on every
    device (TensorFlow's CPU kernels without oneDNN have none for conv2d's own dilation)."""
    if dilation == 1:
        return conv(x, w)
    return tf.nn.convolution(x, w, padding="VALID", dilations=dilation)


def trainable_conv():
    """The convolution to train through: conv2d's own dilation where its gradient
    exists (oneDNN on), else space-to-batch."""
    return conv if onednn_enabled() else _conv_s2b


def compile_fn(fn, signature):
    """``fn`` traced once for the shapes in ``signature`` (a list of (shape, dtype),
    None for a size that may vary)."""
    return tf.function(fn, input_signature=[tf.TensorSpec(s, d) for s, d in signature])


def forward(net, patch: int = 41):
    """Compiled ``net(x, training=False)`` for any batch of (patch, patch, 3) float32
    inputs; it reads the network's variables, so it follows its weights. It does not
    keep the network alive."""
    ref = weakref.ref(net)
    spec = tf.TensorSpec((None, patch, patch, 3), tf.float32)
    return tf.function(lambda x: ref()(x, training=False), input_signature=[spec])


def strategy() -> tf.distribute.Strategy:
    """Multi-worker if ``TF_CONFIG`` names several workers, else mirrored over the
    local GPUs (or over several logical CPU devices where they were configured), else
    the default."""
    if "TF_CONFIG" in os.environ and len(json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def training_scope():
    """Context in which to build, compile and fit a model: :func:`strategy`'s scope."""
    return strategy().scope()


def split_cpu(n: int) -> None:
    """Show this process ``n`` logical CPU devices (before TensorFlow initialises its
    devices; used to test training on several devices without GPUs)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def determinism() -> None:
    """Deterministic kernels (same inputs, same bytes)."""
    tf.config.experimental.enable_op_determinism()


def onednn_enabled() -> bool:
    """Whether this TensorFlow runs its oneDNN kernels (decided once, when it loaded)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability (major, minor) of each GPU TensorFlow sees (empty on a CPU)."""
    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        caps.append(tuple(cc) if cc else (0, 0))
    return caps


def device_count() -> int:
    """Devices a training step is spread over."""
    return strategy().num_replicas_in_sync


def versions() -> dict:
    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def threads() -> list[int]:
    """TensorFlow's intra- and inter-op thread settings (0: its default)."""
    return [tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads()]
