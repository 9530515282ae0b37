"""Stage machine (always runs): what decides the bytes the network stages write here.

Writes reports/machine.json: the kind of CPU, the backend, the kernel choice per
task (oneDNN on or off) and the training precisions with ``auto`` resolved. The
training and inference stages depend on it, so a machine that resolves
differently (another kind of CPU, a GPU, TF_ENABLE_ONEDNN_OPTS set) re-runs them,
and one of the same kind re-runs nothing. It asks the backend for GPUs only where a GPU
driver's device files exist (``hardware.gpu_possible``): elsewhere it loads no framework,
so a ``dvc repro`` with nothing to do takes about a second, not six.
"""

import sys
from pathlib import Path

from defocus import backend, hardware
from defocus.images import save_json
from defocus.params import load_params

OUT = Path("reports/machine.json")


def main() -> int:
    params = load_params()
    name = backend.use_params()
    gpus = []
    if hardware.gpu_possible():
        from defocus.backend import gpu_capabilities

        gpus = gpu_capabilities()
    precisions = {net: hardware.resolve_precision(p["precision"], gpu_capabilities=gpus, backend=name)
                  for net, p in params["train"].items()}
    machine = hardware.describe(precisions, backend=name, gpus=gpus)
    save_json(OUT, machine)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
