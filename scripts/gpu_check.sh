#!/usr/bin/env bash
# The GPU figures of README ("Speed and memory", GPU), in one run on a machine with a GPU and JAX:
# `defocus bench` under JAX, the dense path (median of 5 per RTF image; once more per patch, the
# reference, for the maps' difference: since the first GPU run inference is full float32) and a 12 MP photo
# (4000 x 3000, also at half size, and in a fresh `defocus estimate` process as a user runs it);
# the dense path again in bfloat16 where the GPU computes it natively (bench --bfloat16 auto); then,
# in the time left of GPU_CHECK_SECONDS (480), the 12 MP photo per tile side (scripts/gpu_tiles.py).
# Needs no install: the project runs from src/, Keras from the wheels scripts/gpu_prepare.sh puts
# in .gpu/whl, the RTF photos from .gpu/shared. Writes bench.json, bench.log, tiles.json, tiles.log and gpu.txt to $OUT (the
# device tool's result folder), else to reports/gpu/. Several minutes, most of it compiling.
#   scripts/gpu_check.sh [--repeat N] [--large WxH]   (extra options go to `defocus bench`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-reports/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
mkdir -p /tmp/defocus-site
if compgen -G ".gpu/whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/defocus-site .gpu/whl/*.whl
fi
if [ -f .gpu/opencv.tar.xz ]; then  # OpenCV with contrib, ahead of the image's plain one
    tar -C /tmp/defocus-site -xJf .gpu/opencv.tar.xz
fi
export PYTHONPATH=/tmp/defocus-site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 DEFOCUS_SHARED=${DEFOCUS_SHARED:-$PWD/.gpu/shared}
# each process takes GPU memory as it needs it: the bench's own process and the `defocus estimate`
# it starts hold the GPU at the same time (JAX's default, 75 % each, leaves the second too little)
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt" || true
"$py" -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
rc=0
"$py" -m defocus.cli --backend jax bench --backends this --large 4000x3000 \
    --out "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log" || rc=$?
# then, in what is left of ${GPU_CHECK_SECONDS:-480} s, the 12 MP photo's seconds per tile side
left=$(( ${GPU_CHECK_SECONDS:-480} - SECONDS - 60 ))
if [ "$left" -gt 30 ]; then
    "$py" scripts/gpu_tiles.py "$out/tiles.json" --budget "$left" ${GPU_TILES_ARGS:-} 2>&1 | tee "$out/tiles.log" || true
else
    echo "gpu_check: no time left for scripts/gpu_tiles.py" | tee "$out/tiles.log"
fi
exit "$rc"
