"""Stages train_bnet / train_enet: B-NET on the blur patches, then E-NET with B-NET's f1-NET frozen.

Usage: python stages/train.py bnet|enet
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from defocus._tf import keras, tf
from defocus import nets
from defocus.dense import DenseTrainer
from defocus.patchsets import open_tiles
from defocus.params import load_params
from defocus.train import compile_net, fit, freeze_f1_from, strategy
from defocus.images import save_json
from defocus.weights import save_model

MODELS = Path("data/models")


def main(net: str) -> int:
    params = load_params()
    p, seed = params[f"train_{net}"], params["seed"]
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(p["precision"])
    with strategy().scope():
        if net == "bnet":
            model = nets.build_bnet(dropout=p["dropout"])
        else:
            bnet = nets.build_bnet()
            bnet.load_weights(MODELS / "bnet.weights.h5")
            model = nets.build_enet(dropout=p["dropout"])
            freeze_f1_from(model, bnet)
            f1_before = nets.f1_of(model).get_weights()
        # dense training when the patch set has tiles (patches.tile > 0)
        trainee = DenseTrainer(model) if open_tiles(Path(f"data/patches/{net}")) is not None else model
        compile_net(trainee, p["lr"], tolerance=(net == "bnet"))
    summary = fit(trainee, Path(f"data/patches/{net}"), p, seed, Path(f"reports/train/{net}"),
                  Path(f"data/checkpoints/{net}"), tolerance=(net == "bnet"), progress=True)
    keras.mixed_precision.set_global_policy("float32")
    if net == "bnet":
        out = MODELS / "bnet.weights.h5"
        tmp = out.with_name(".bnet.tmp.weights.h5")
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(tmp)
        tmp.replace(out)
    else:
        if any(not np.array_equal(a, b) for a, b in zip(f1_before, nets.f1_of(model).get_weights())):
            raise SystemExit("train_enet: f1-NET weights changed while frozen")
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
        data = {n: json.loads(Path(f"reports/data/patches_{n}.json").read_text()) for n in ("bnet", "enet")}
        bnet_summary = json.loads(Path("reports/train/bnet_summary.json").read_text())
        save_model(MODELS / "pipeline", bnet, model, {
            "trained_by": "defocus pipeline (dvc repro)", "commit": commit,
            "params": {k: params[k] for k in ("seed", "split", "synth_bnet", "synth_enet", "patches", "train_bnet", "train_enet")},
            "data": {n: {"patches": d["patches"], "per_class": d["per_class"]} for n, d in data.items()},
            "validation": {"bnet": bnet_summary, "enet": summary},
        })
    save_json(Path(f"reports/train/{net}_summary.json"), summary)
    print(f"train_{net}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("bnet", "enet"):
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
