"""The Keras backend, chosen once per process, and everything that differs between backends.

The rest of the package writes its computations in ``keras.ops`` and numpy and
imports Keras from here (``from defocus.backend import keras``). What cannot be
written that way lives in one module per backend, with the same functions:
:mod:`defocus.backend.tensorflow` (the default) and :mod:`defocus.backend.jax`:

* ``conv(x, w, dilation)``: the fastest VALID convolution for inference;
* ``trainable_conv()``: the convolution to train through (its gradient exists);
* ``compile_fn(fn)``: a compiled version of a function of tensors;
* ``forward(net)``: a compiled inference call of a network that follows its weights;
* ``training_scope()``: where a model to train is built: all local devices
  (TensorFlow: a ``tf.distribute`` strategy; JAX: ``keras.distribution.DataParallel``);
* ``determinism()``: run-to-run identical results for the same inputs;
* ``STATIC_SHAPES``, ``bucket(n)``: whether compiled functions are specialised to their
  input shapes, and then the size to pad ``n`` rows to (else ``n``);
* ``gpu_capabilities()``, ``device_count()``, ``onednn_enabled()``, ``versions()``.

The backend is ``KERAS_BACKEND`` if set, else TensorFlow; stages set it from
``params.yaml``'s ``backend`` with :func:`use_params` before Keras loads.
"""

from __future__ import annotations

import importlib
import os
import sys

from .. import hardware

NAMES = ("tensorflow", "jax")


def use(name: str) -> None:
    """Run this process under backend ``name`` ("tensorflow" or "jax").

    Call before Keras loads; once it has, asking for another backend raises.
    """
    if name not in NAMES:
        raise ValueError(f"backend must be one of {', '.join(NAMES)}; got {name!r}")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != name:
            raise RuntimeError(f"Keras already runs on {loaded}; cannot switch to {name} in this process")
        return
    os.environ["KERAS_BACKEND"] = name


def use_params(path="params.yaml") -> str:
    """:func:`use` the ``backend`` of ``params.yaml`` (``tensorflow`` when the file has none)."""
    from ..params import load_params

    name = load_params(path).get("backend") or "tensorflow"
    use(name)
    return name


def _load():
    """Import Keras (and its backend) quietly and return (keras, backend module)."""
    name = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if name not in NAMES:
        raise ValueError(f"KERAS_BACKEND={name!r}: defocus runs on {' or '.join(NAMES)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    chosen_here = name == "tensorflow" and "tensorflow" not in sys.modules and hardware.apply_kernel_choice()
    if name == "jax" and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        # deterministic GPU reductions (read when JAX starts its GPU backend; no effect on a CPU)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
    if "keras" not in sys.modules:
        # TensorFlow's TFLite helpers import JAX whenever it is installed (as here: both backends
        # are), which nothing does under TensorFlow: 107 MiB of resident memory in every process
        # (measured: 680 -> 574 MiB after `import tensorflow`). JAX stays importable afterwards.
        hide_jax = name == "tensorflow" and "jax" not in sys.modules
        if hide_jax:
            sys.modules["jax"] = None  # `import jax` raises ImportError, which TensorFlow expects
        # TensorFlow's C++ runtime prints start-up notices on fd 2 whatever the log level says
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                import keras  # noqa: F401
                if name == "tensorflow":
                    import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if hide_jax and sys.modules.get("jax", False) is None:
                del sys.modules["jax"]
    if chosen_here:
        # TensorFlow reads the variable once, on the first query; after that it is ours to remove
        importlib.import_module(".tensorflow", __name__).onednn_enabled()
        del os.environ["TF_ENABLE_ONEDNN_OPTS"]
    import keras

    return keras, importlib.import_module(f".{keras.backend.backend()}", __name__)


_FUNCTIONS = ("conv", "trainable_conv", "compile_fn", "forward", "training_scope", "determinism",
              "gpu_capabilities", "device_count", "onednn_enabled", "versions", "threads", "STATIC_SHAPES",
              "bucket")


def __getattr__(attr):
    """Keras and the backend's functions, loaded on first use (so :func:`use` can come first)."""
    if attr in ("keras", "_impl") + _FUNCTIONS:
        keras, impl = _load()
        globals().update(keras=keras, _impl=impl, **{f: getattr(impl, f) for f in _FUNCTIONS})
        return globals()[attr]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def name() -> str:
    """The backend this process runs on, or will once Keras loads ("tensorflow" or "jax")."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")
