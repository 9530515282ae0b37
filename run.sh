#!/usr/bin/env bash
# Set everything up (first run only) and run the main job: the DVC pipeline
# (dvc.yaml, params.yaml) on the default profile, then a one-screen summary of the results.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
source .venv/bin/activate
dvc repro "$@"
defocus summary
