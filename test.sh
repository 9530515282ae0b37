#!/usr/bin/env bash
# Set up (first run only) and run the test suite. Three streams run side by side (on 2 cores one
# computes while another waits on Python, a subprocess or DVC; XLA's CPU convolutions use one
# thread, so stream C alone leaves a core idle):
#   A: the end-to-end tests (tests/test_pipeline.py: the real DVC pipeline on the tiny profile,
#      its network stages again under JAX);
#   B: every other test under TensorFlow (the default backend) but tests/test_backends.py;
#   C: the tests marked `backends` (networks, dense path, training, conformance, estimate,
#      bench-train) again under JAX, with `import tensorflow` blocked (as on a GPU machine that
#      has only JAX), then tests/test_backends.py under TensorFlow (its subprocesses run both
#      backends; here it balances the streams: with it, stream B ran longest).
# With arguments (e.g. `./test.sh tests/test_cli.py -x`), they go to pytest, run as one stream
# under TensorFlow, then the selected `backends` tests under JAX.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
py=.venv/bin/python
jax_pass() {
    echo "test.sh: the tests marked 'backends' again, under JAX, with TensorFlow made unimportable"
    DEFOCUS_BLOCK_TENSORFLOW=1 KERAS_BACKEND=jax "$py" -m pytest -p no:cacheprovider -m backends "$@"
}
if [ $# -gt 0 ]; then
    "$py" -m pytest "$@"
    jax_pass "$@"
    exit
fi
tmp=$(mktemp -d)
SECONDS=0
"$py" -m pytest -p no:cacheprovider --durations=10 --basetemp "$tmp/a" tests/test_pipeline.py > "$tmp/a.log" 2>&1 &
a=$!
(
    r=0
    jax_pass --durations=10 --basetemp "$tmp/j" --ignore tests/test_pipeline.py || r=$?
    echo "test.sh: stream C, then tests/test_backends.py under TensorFlow (moved here from stream B, the longest)"
    "$py" -m pytest -p no:cacheprovider --durations=5 --basetemp "$tmp/c" tests/test_backends.py || r=$?
    exit $r
) > "$tmp/j.log" 2>&1 &
j=$!
# `|| true`: under `set -e` a failing command in the EXIT trap (kill, once a stream has ended)
# would replace the suite's exit status with 1.
trap 'kill "$a" "$j" 2>/dev/null || true; rm -rf "$tmp"' EXIT
rc=0
"$py" -m pytest --durations=15 --basetemp "$tmp/b" --ignore tests/test_pipeline.py --ignore tests/test_backends.py || rc=$?
echo "test.sh: stream B done at ${SECONDS} s; waiting for the others"
wait $j || rc=$?
echo "test.sh: stream C, the backend tests under JAX, then tests/test_backends.py (done at ${SECONDS} s):"
cat "$tmp/j.log"
wait $a || rc=$?
echo "test.sh: stream A, the end-to-end tests (tests/test_pipeline.py):"
cat "$tmp/a.log"
echo "test.sh: all done in ${SECONDS} s (exit status $rc)"
exit $rc
