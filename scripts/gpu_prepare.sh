#!/usr/bin/env bash
# Prepares .gpu/ for scripts/gpu_check.sh, here, on a machine that reaches the package index: the
# wheels a GPU machine with JAX (and without TensorFlow or this project installed) lacks, and the
# RTF photos `defocus bench` times. .gpu/ is git-ignored; it travels to the GPU machine beside the
# working tree (the device tool's `carry: [".gpu"]`), 40 MiB.
#   scripts/gpu_prepare.sh            # then, on the GPU machine: scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DEFOCUS_SHARED:-../shared}
py=${PYTHON:-python3}
ls "$shared"/data/rtf/image_*.png >/dev/null || { echo "gpu_prepare: no RTF photos in $shared/data/rtf (DEFOCUS_SHARED)" >&2; exit 1; }
rm -rf .gpu && mkdir -p .gpu/whl .gpu/shared/data/rtf
# Keras and the two packages of its needs that GPU images with JAX usually lack (absl-py, h5py,
# ml_dtypes, numpy, packaging and rich are there); the versions of requirements.lock
pins=$(grep -iE '^(keras|optree|namex)==' requirements.lock)
[ "$(wc -l <<<"$pins")" = 3 ] || { echo "gpu_prepare: requirements.lock lacks keras/optree/namex pins" >&2; exit 1; }
download() {  # DIR PIN...: wheels for the GPU machine's Python 3.12 on x86-64 Linux
    local dir=$1; shift
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$dir" "$@"
}
# shellcheck disable=SC2086
download .gpu/whl $pins
# OpenCV with its contrib modules (the propagation's cv2.ximgproc): GPU images have the plain
# opencv-python-headless. Its wheel (57 MiB) would not fit the 64 MiB that travels beside the working
# tree; its unpacked files as .tar.xz do (37 MiB; xz -9 takes about 2 minutes on 2 cores)
cvpin=$(grep -iE '^opencv-contrib-python-headless==' requirements.lock)
tmp=$(mktemp -d)
download "$tmp/whl" "$cvpin"
mkdir "$tmp/site" && (cd "$tmp/site" && "$py" -m zipfile -e "$tmp"/whl/*.whl .)
tar -C "$tmp/site" -cf - . | xz -9 -T0 >.gpu/opencv.tar.xz
rm -rf "$tmp"
cp "$shared"/data/rtf/image_*.png .gpu/shared/data/rtf/
du -sh .gpu
ls .gpu/whl .gpu/shared/data/rtf
