"""Import TensorFlow/Keras once, quietly.

TensorFlow's C++ runtime prints start-up notices (oneDNN, absl) on file
descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says; they are hidden while the
import runs. Python exceptions from the import still propagate.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _quiet_import():
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow

        return tensorflow, keras
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
