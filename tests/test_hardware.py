"""Precision and kernel choice per kind of CPU, with faked /proc/cpuinfo flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from defocus import hardware
from defocus.params import load_params

ZEN3 = frozenset("fpu sse2 ssse3 fma avx avx2 bmi2".split())  # AVX2 only (AMD EPYC Zen 3)
ZEN5 = frozenset("fpu sse2 fma avx avx2 avx512f avx512bw avx512_vnni avx512_bf16".split())
SAPPHIRE = frozenset("avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16".split())
SKYLAKE_X = frozenset("avx2 avx512f avx512bw".split())  # AVX-512 without bfloat16 or VNNI

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 fma avx avx2 bmi2

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 fma avx avx2 bmi2
"""


def test_cpu_info_reads_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO)
    model, flags = hardware.cpu_info(f)
    assert model == "AMD EPYC 7B13" and flags == {"fpu", "sse2", "fma", "avx", "avx2", "bmi2"}
    assert hardware.cpu_info(tmp_path / "missing")[1] == frozenset()


@pytest.mark.parametrize("flags, kind, native", [
    (ZEN3, "x86_64-avx2", False), (ZEN5, "x86_64-avx512_bf16", True), (SAPPHIRE, "x86_64-amx_bf16", True),
    (SKYLAKE_X, "x86_64-avx512f", False), (frozenset({"sse2"}), "x86_64", False),
])
def test_kind_and_native_bfloat16(flags, kind, native):
    assert hardware.cpu_kind(flags, machine="x86_64") == kind
    assert hardware.native_bfloat16(flags) is native
    assert hardware.resolve_precision("auto", flags) == ("mixed_bfloat16" if native else "float32")


def test_explicit_precision_wins_and_bad_values_are_refused():
    assert hardware.resolve_precision("mixed_bfloat16", ZEN3) == "mixed_bfloat16"
    assert hardware.resolve_precision("float32", ZEN5) == "float32"
    with pytest.raises(ValueError, match="bfloat"):
        hardware.resolve_precision("bf16", ZEN5)


def test_gpus_decide_when_there_are_any():
    assert hardware.resolve_precision("auto", ZEN3, gpu_capabilities=[(9, 0)]) == "mixed_bfloat16"
    # JAX on a CPU: float32 whatever the flags (XLA's CPU backend gains nothing from bfloat16)
    assert hardware.resolve_precision("auto", ZEN5, backend="jax") == "float32"
    assert hardware.resolve_precision("auto", ZEN3, gpu_capabilities=[(9, 0)], backend="jax") == "mixed_bfloat16"
    assert hardware.resolve_precision("auto", ZEN5, gpu_capabilities=[(7, 5)]) == "float32"  # T4: emulated
    assert hardware.resolve_precision("auto", ZEN5, gpu_capabilities=[(8, 0), (7, 0)]) == "float32"


def test_kernel_choice_per_kind_and_task():
    env: dict = {}
    # AVX2 only: oneDNN (off by default there) for training, TensorFlow's own kernels for inference
    assert hardware.onednn_choice("train", ZEN3, "x86_64", env) is True
    assert hardware.onednn_choice("infer", ZEN3, "x86_64", env) is False
    assert hardware.onednn_choice("train", ZEN5, "x86_64", env) is True
    assert hardware.onednn_choice("infer", ZEN5, "x86_64", env) is True
    # unmeasured kinds keep TensorFlow's default; the user's setting always wins
    assert hardware.onednn_choice("infer", SAPPHIRE, "x86_64", env) is True
    assert hardware.onednn_choice("train", SKYLAKE_X, "x86_64", env) is False
    assert hardware.onednn_choice("train", ZEN3, "x86_64", {"TF_ENABLE_ONEDNN_OPTS": "0"}) is False
    assert hardware.onednn_choice("infer", ZEN3, "x86_64", {"TF_ENABLE_ONEDNN_OPTS": "1"}) is True
    assert hardware.onednn_choice("train", ZEN5, "aarch64", env) is False
    with pytest.raises(ValueError):
        hardware.onednn_choice("serve", ZEN5, "x86_64", env)


def test_describe_names_no_model_and_resolves(monkeypatch, tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO)
    monkeypatch.setattr(hardware, "CPUINFO", f)
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    d = hardware.describe({"bnet": hardware.resolve_precision("auto")})
    assert d == {"cpu_kind": "x86_64-avx2", "backend": "tensorflow", "onednn": {"train": True, "infer": False},
                 "gpus": [], "precision": {"bnet": "float32"}}


@pytest.mark.parametrize("task", ["train", "infer"])
def test_kernel_choice_is_applied_when_tensorflow_loads(task):
    """A process loads TensorFlow with the kernels chosen for its task, even where the choice is
    the opposite of TensorFlow's own default on this CPU (here forced so, to test the mechanism)."""
    code = ("from defocus import hardware; "
            f"hardware.ONEDNN[(hardware.cpu_kind(), {task!r})] = not hardware.tf_default_onednn(); "
            f"hardware.use_kernels({task!r}); "
            "import os; from defocus.backend import onednn_enabled; "
            f"print(onednn_enabled(), hardware.onednn_choice({task!r}), hardware.tf_default_onednn(), "
            "'TF_ENABLE_ONEDNN_OPTS' in os.environ, hardware.describe()['onednn'] == "
            "{t: hardware.onednn_choice(t, environ={}) for t in hardware.TASKS})")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    enabled, chosen, default, left_set, describes_table = out.split()
    assert enabled == chosen and chosen != default
    # the variable set for TensorFlow is gone once it is read: the process (and any process it
    # starts) describes the machine by the table, whatever the task (a training stage and the
    # machine stage agree; they did not where the two tasks' choices differ, e.g. AVX2-only CPUs)
    assert left_set == "False" and describes_table == "True"


DENSE_TRAINING_TESTS = [
    "tests/test_dense.py::test_dense_trainer_equals_the_patch_network",
    "tests/test_dense.py::test_dense_training_keeps_a_frozen_f1",
    "tests/test_train.py::test_fit_both_modes",
]


@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0", reason="this run already has oneDNN off")
def test_dense_training_without_onednn():
    """TensorFlow's fallback kernels (those of AVX2-only CPUs) have no gradient for conv2d's own
    dilation; dense training must train there too, with the same outputs and gradients."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DENSE_TRAINING_TESTS],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "5 passed" in res.stdout


def test_gpu_possible_follows_the_drivers_device_files(tmp_path):
    """Linux without a GPU driver's device files: no framework can see a GPU (the machine stage
    then loads none); with one (NVIDIA, ROCm, WSL2), or off Linux, the framework is asked."""
    assert not hardware.gpu_possible(tmp_path, system="Linux")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()  # the control node alone (a driver without a device)
    assert not hardware.gpu_possible(tmp_path, system="Linux")
    for name in ("nvidia0", "kfd", "dxg"):
        (tmp_path / "dev" / name).touch()
        assert hardware.gpu_possible(tmp_path, system="Linux"), name
        (tmp_path / "dev" / name).unlink()
    assert hardware.gpu_possible(tmp_path, system="Darwin")  # Metal: no device files to look at


@pytest.mark.skipif(hardware.gpu_possible(), reason="a GPU driver is present: the stage asks the framework")
def test_machine_stage_loads_no_framework_without_a_gpu(tmp_path):
    """`python stages/machine.py` with `import tensorflow` made to fail writes the same description
    as the library gives here (the stage runs on every `dvc repro`)."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    no_tf = str(repo / "tests" / "no_tensorflow")  # `import tensorflow` fails in the stage's process
    env = dict(os.environ, PYTHONPATH=no_tf + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KERAS_BACKEND", None)
    res = subprocess.run([sys.executable, str(repo / "stages" / "machine.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "reports" / "machine.json").read_text())
    precisions = {net: hardware.resolve_precision(p["precision"], gpu_capabilities=[], backend="tensorflow")
                  for net, p in load_params(tmp_path / "params.yaml")["train"].items()}
    assert got == hardware.describe(precisions, backend="tensorflow", gpus=[])
    assert got["backend"] == "tensorflow" and got["gpus"] == []
