#!/usr/bin/env bash
# The GPU figures of README ("Speed and memory", GPU), in one run on a machine with a GPU and JAX:
# `defocus bench` under JAX, dense path only (median of 5 per RTF image) and a 12 MP photo
# (4000 x 3000, also at half size, and in a fresh `defocus estimate` process as a user runs it);
# the dense path again in bfloat16 where the GPU computes it natively (bench --bfloat16 auto).
# Needs no install: the project runs from src/, Keras from the wheels scripts/gpu_prepare.sh puts
# in .gpu/whl, the RTF photos from .gpu/shared. Writes bench.json, bench.log and gpu.txt to $OUT (the
# device tool's result folder), else to reports/gpu/. Several minutes, most of it compiling.
#   scripts/gpu_check.sh [--repeat N] [--large WxH]   (extra options go to `defocus bench`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-reports/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
if compgen -G ".gpu/whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/defocus-site .gpu/whl/*.whl
    export PYTHONPATH=/tmp/defocus-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 DEFOCUS_SHARED=${DEFOCUS_SHARED:-$PWD/.gpu/shared}
# each process takes GPU memory as it needs it: the bench's own process and the `defocus estimate`
# it starts hold the GPU at the same time (JAX's default, 75 % each, leaves the second too little)
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt" || true
"$py" -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
"$py" -m defocus.cli --backend jax bench --no-patch --backends this --large 4000x3000 \
    --out "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
