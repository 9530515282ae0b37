"""Jobs the backend tests run in a fresh process (Keras picks its backend once per process).

    python tests/backend_job.py outputs PATCHES.npy OUT.npy MODEL_DIR [SEED NEW_MODEL_DIR]
        class probabilities of the model's B-NET and E-NET on the patches; with SEED, first a
        B-NET and E-NET with seeded random weights are saved as NEW_MODEL_DIR, and OUT.npy holds
        both models' probabilities (MODEL_DIR's first)
    python tests/backend_job.py steps DEVICES OUT.json
        with DEVICES devices: losses of 20 training steps of B-NET (no dropout) on fixed batches,
        on one device ("one") and over all of them ("all")

The backend is the environment's KERAS_BACKEND.
"""

import contextlib
import json
import os
import sys

import numpy as np


def _devices(n: int) -> None:
    """Show this process n CPU devices (before the backend starts its devices)."""
    if os.environ.get("KERAS_BACKEND") == "jax":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}")
    elif n > 1:
        from defocus.backend import tensorflow as tf_backend

        tf_backend.split_cpu(n)


def main(job: str, *args: str) -> int:
    if job == "outputs":
        from defocus.weights import load_model

        x, folders = np.load(args[0]), [args[2]]
        if len(args) > 3:
            from defocus import nets
            from defocus.backend import keras
            from defocus.weights import save_model

            keras.utils.set_random_seed(int(args[3]))
            save_model(args[4], nets.build_bnet(), nets.build_enet(), {"trained_by": "backend test"})
            folders.append(args[4])
        out = []
        for folder in folders:
            model = load_model(folder)
            out.append(np.concatenate([np.asarray(model.bnet(x, training=False)),
                                       np.asarray(model.enet(x, training=False))], axis=1))
        np.save(args[1], np.stack(out))
        return 0
    if job == "steps":
        _devices(int(args[0]))
        from defocus import backend, nets
        from defocus.backend import keras
        from defocus.train import compile_net

        backend.determinism()
        runs = {}
        for where in ("one", "all"):  # one device (no distribution), then data parallel over all
            keras.utils.set_random_seed(0)
            rng = np.random.default_rng(0)
            with backend.training_scope() if where == "all" else contextlib.nullcontext():
                net = nets.build_bnet(dropout=0.0)
                compile_net(net, 1e-4, tolerance=False)  # Adam amplifies float reassociation less at a small rate
                losses = []
                for _ in range(20):
                    x = rng.random((32, 41, 41, 3), np.float32)
                    y = rng.integers(0, 23, 32).astype(np.int32)
                    out = net.train_on_batch(x, y, return_dict=True)
                    losses.append(float(out["loss"]))
            runs[where] = losses
        with open(args[1], "w") as f:
            json.dump({"backend": backend.name(), "devices": backend.device_count(), **runs}, f)
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
