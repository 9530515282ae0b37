#!/usr/bin/env bash
# Set up (first run only) and run the test suite: everything under TensorFlow (the default
# backend), then the tests marked `backends` (networks, dense path, training, conformance) again
# under JAX, with `import tensorflow` blocked (as on a GPU machine that has only JAX).
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
echo "test.sh: the tests marked 'backends' again, under JAX, with TensorFlow made unimportable"
DEFOCUS_BLOCK_TENSORFLOW=1 KERAS_BACKEND=jax .venv/bin/python -m pytest -m backends "$@"
