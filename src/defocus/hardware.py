"""What the machine computes fast: the CPU kind, native bfloat16, the kernels to use.

Pure Python (it reads ``/proc/cpuinfo``): nothing here imports TensorFlow, so the
choice of TensorFlow's CPU kernels (oneDNN on or off, an environment variable read
once when TensorFlow loads) can be made before it loads.

Precision
    ``precision: auto`` (the default of training and ``defocus bench-train``)
    resolves to ``mixed_bfloat16`` where the device computes bfloat16 natively
    (x86 CPUs with ``avx512_bf16`` or ``amx_bf16``; GPUs of compute capability
    8.0 and up) and to ``float32`` elsewhere, where bfloat16 is emulated and
    training slows more than tenfold. An explicit value wins.

Kernels
    TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512
    class features (VNNI, BF16, AMX). Which setting is fastest was measured per
    kind of CPU and task (:data:`ONEDNN`); an unmeasured kind keeps TensorFlow's
    default, and ``TF_ENABLE_ONEDNN_OPTS`` set by the user always wins. The
    choice is fixed per kind of CPU, so re-runs on one kind give the same bytes.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

#: Dtype policies a stage may ask for, besides ``auto``.
PRECISIONS = ("float32", "mixed_bfloat16")
#: compute dtypes of the dense inference path (:class:`defocus.dense.DenseModel`): float32 (the
#: default: the per-patch path's probabilities within 1e-4) or bfloat16 (1.6-2.1x faster measured
#: where the device computes it natively: AVX512-BF16 through oneDNN; GPUs not measured yet)
DENSE_PRECISIONS = ("float32", "bfloat16")

#: CPU flags that mean bfloat16 arithmetic in hardware.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

#: CPU flags with which TensorFlow turns oneDNN on by default (tensorflow/core/util/util.cc).
TF_ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")

#: oneDNN on (True) or off (False) per (CPU kind, task), measured on 2 cores
#: (B-NET; ``defocus bench-train`` for "train", ``defocus bench`` for "infer"):
#:
#: * x86_64-avx2 (AMD EPYC Zen 3): training float32 330 samples/s with oneDNN,
#:   248 without, and only oneDNN has the gradient of dilated convolutions (dense
#:   training); inference 4.30 s per RTF image with oneDNN, 2.14 s without.
#: * x86_64-avx512_bf16 (AMD EPYC Zen 5): inference 1.24 s per RTF image with
#:   oneDNN, 2.16 s without; training: see README ("Speed per kind of CPU").
ONEDNN = {
    ("x86_64-avx2", "train"): True,
    ("x86_64-avx2", "infer"): False,
    ("x86_64-avx512_bf16", "train"): True,
    ("x86_64-avx512_bf16", "infer"): True,
}

TASKS = ("train", "infer")
_task = "infer"


def cpu_info(path: str | Path | None = None) -> tuple[str, frozenset[str]]:
    """The CPU's model name and its flags, as ``lscpu`` shows them (empty where unknown),
    from ``path`` (default :data:`CPUINFO`)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = Path(path or CPUINFO).read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_kind(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """The kind of CPU as far as our kernels care, e.g. ``x86_64-avx512_bf16``, ``x86_64-avx2``.

    Two machines of one kind run the same kernels in the same precision, so they
    give the same bytes.
    """
    machine = machine or platform.machine()
    if flags is None:
        flags = cpu_info()[1]
    if machine not in ("x86_64", "AMD64"):
        return machine
    for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2"):
        if flag in flags:
            return f"x86_64-{flag}"
    return "x86_64"


def native_bfloat16(flags: frozenset[str] | None = None, gpu_capabilities=None) -> bool:
    """Whether the device computes bfloat16 natively.

    Parameters
    ----------
    flags : CPU flags (default: this machine's)
    gpu_capabilities : list of (major, minor) compute capabilities of the GPUs
        training runs on; when there are any, they decide (all must be >= 8.0)
    """
    if gpu_capabilities:
        return all(tuple(c) >= (8, 0) for c in gpu_capabilities)
    if flags is None:
        flags = cpu_info()[1]
    return any(f in flags for f in BF16_FLAGS)


def resolve_precision(requested: str, flags: frozenset[str] | None = None, gpu_capabilities=None,
                      backend: str = "tensorflow") -> str:
    """The dtype policy to train with: ``requested``, or for ``auto`` the one the device computes fast.

    On a CPU, bfloat16 pays only through TensorFlow's oneDNN kernels: under JAX (XLA's CPU
    backend) ``auto`` is float32 (measured on a Zen 5 with avx512_bf16: 88 samples/s in
    mixed_bfloat16, 89 in float32).

    Raises ValueError for anything but ``auto`` or one of :data:`PRECISIONS`.
    """
    if requested == "auto":
        if not gpu_capabilities and backend != "tensorflow":
            return "float32"
        return "mixed_bfloat16" if native_bfloat16(flags, gpu_capabilities) else "float32"
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be auto, {' or '.join(PRECISIONS)}; got {requested!r}")
    return requested


def tf_default_onednn(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether TensorFlow turns oneDNN on by itself on this CPU."""
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return False
    if flags is None:
        flags = cpu_info()[1]
    return any(f in flags for f in TF_ONEDNN_DEFAULT_FLAGS)


#: device files a Linux GPU driver creates (NVIDIA CUDA, AMD ROCm, the WSL2 GPU bridge)
GPU_DEVICE_FILES = ("dev/nvidia[0-9]*", "dev/kfd", "dev/dxg")


def gpu_possible(root: str | Path = "/", system: str | None = None) -> bool:
    """Whether a framework could see a GPU here.

    False only on Linux without any of :data:`GPU_DEVICE_FILES`, where CUDA and ROCm
    find no device, so the GPU list is known to be empty without importing TensorFlow
    or JAX (seconds per process); True elsewhere (ask the framework).
    """
    if (system or platform.system()) != "Linux":
        return True
    return any(any(Path(root).glob(pattern)) for pattern in GPU_DEVICE_FILES)


def onednn_choice(task: str, flags: frozenset[str] | None = None, machine: str | None = None,
                  environ=None) -> bool:
    """oneDNN on or off for ``task`` ("train" or "infer") on this CPU: the user's
    ``TF_ENABLE_ONEDNN_OPTS`` if set, else the measured choice, else TensorFlow's default."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    environ = os.environ if environ is None else environ
    if "TF_ENABLE_ONEDNN_OPTS" in environ:
        return environ["TF_ENABLE_ONEDNN_OPTS"].strip().lower() in ("1", "true", "yes", "on")
    if flags is None:
        flags = cpu_info()[1]
    kind = cpu_kind(flags, machine)
    return ONEDNN.get((kind, task), tf_default_onednn(flags, machine))


def use_kernels(task: str) -> None:
    """Choose the kernels for ``task`` ("train" or "infer"; default "infer").

    Call before anything imports TensorFlow (``defocus.backend`` applies the choice
    when it loads); once TensorFlow is loaded its kernels are fixed, and this
    only records the task.
    """
    global _task
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    _task = task


def apply_kernel_choice() -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS`` for the chosen task, unless the user set it or
    TensorFlow is already loaded (called by ``defocus.backend`` before it imports TensorFlow).

    Returns True when it set the variable: the caller removes it again once TensorFlow
    has read it, so that only a value the user set is ever seen as the user's (by
    :func:`onednn_choice` and :func:`describe` in this process, and by the processes it
    starts, which choose for their own task).
    """
    if "tensorflow" in sys.modules or "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return False
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn_choice(_task) else "0"
    return True


def describe(precisions: dict[str, str] | None = None, backend: str = "tensorflow", gpus=None) -> dict:
    """What decides the bytes a stage writes on this machine: CPU kind, backend,
    kernel choice per task, GPUs and the resolved precisions (no model name, so
    every machine of one kind describes itself the same)."""
    _, flags = cpu_info()
    return {
        "cpu_kind": cpu_kind(flags),
        "backend": backend,
        "onednn": {t: onednn_choice(t, flags) for t in TASKS} if backend == "tensorflow" else None,
        "gpus": [list(c) for c in (gpus or [])],
        "precision": dict(precisions or {}),
    }
