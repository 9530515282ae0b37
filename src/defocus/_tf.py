"""Import TensorFlow/Keras once, quietly.

TensorFlow's C++ runtime prints start-up notices (oneDNN, absl) on file
descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says; they are hidden while the
import runs. Python exceptions from the import still propagate. Before the import, the
kernel choice of :mod:`defocus.hardware` (oneDNN on or off for the task at hand)
is applied.
"""

from __future__ import annotations

import os
import sys

from . import hardware

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _quiet_import():
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow

        return tensorflow, keras
    hardware.apply_kernel_choice()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow, keras


tf, keras = _quiet_import()


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
