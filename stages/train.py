"""Stages train@bnet / train@enet: B-NET on the blur patches, then E-NET with B-NET's f1-NET frozen.

Usage: python stages/train.py bnet|enet
"""

import json
import sys
from pathlib import Path

import numpy as np

from defocus import backend, hardware

hardware.use_kernels("train")  # before TensorFlow loads: the kernels measured fastest for training here
backend.use_params()  # before Keras loads: params.yaml's backend

from defocus.backend import gpu_capabilities, keras, onednn_enabled  # noqa: E402
from defocus import nets  # noqa: E402
from defocus.dense import DenseTrainer
from defocus.patchsets import open_tiles
from defocus.params import load_params
from defocus.train import compile_net, fit, freeze_f1_from
from defocus.images import atomic_dir, save_json
from defocus.weights import save_model

MODELS = Path("data/models")
BNET = MODELS / "bnet"  # train@bnet's output: the weights and what train@enet records of them
MACHINE = Path("reports/machine.json")


def machine_for(net: str, requested: str) -> dict:
    """This machine as the machine stage recorded it, with the precision ``net`` trains in.

    Stops with a message if reports/machine.json describes another machine (the
    stage was run outside ``dvc repro``, which runs the machine stage first).
    """
    gpus = gpu_capabilities()
    stage = f"train@{net}"
    here = hardware.describe({net: hardware.resolve_precision(requested, gpu_capabilities=gpus,
                                                              backend=backend.name())},
                             backend=backend.name(), gpus=gpus)
    recorded = json.loads(MACHINE.read_text()) if MACHINE.exists() else {}
    if {k: recorded.get(k) for k in here if k != "precision"} != {k: v for k, v in here.items() if k != "precision"} \
            or recorded.get("precision", {}).get(net) != here["precision"][net]:
        raise SystemExit(f"{stage}: {MACHINE} describes another machine or precision ({recorded}); "
                         f"this one is {here}: run `dvc repro`, which re-runs the machine stage first")
    if here["onednn"] is not None and here["onednn"]["train"] != onednn_enabled():
        raise SystemExit(f"{stage}: TensorFlow loaded with oneDNN {'on' if onednn_enabled() else 'off'}, "
                         f"expected {'on' if here['onednn']['train'] else 'off'}")
    return {"cpu_kind": here["cpu_kind"], "backend": here["backend"], "onednn": onednn_enabled(),
            "gpus": here["gpus"], "devices": backend.device_count(), "precision": here["precision"][net]}


def patch_counts(folder: Path) -> dict:
    """Patches per split, and per class (the smallest class; the sets are balanced)."""
    ys = {s: np.load(folder / f"{s}_y.npy", mmap_mode="r") for s in ("train", "val")}
    return {"patches": {s: int(len(y)) for s, y in ys.items()},
            "per_class": {s: int(np.bincount(y).min()) if len(y) else 0 for s, y in ys.items()}}


def main(net: str) -> int:
    params = load_params()
    p, seed = params["train"][net], params["seed"]
    machine = machine_for(net, p["precision"])
    print(f"train@{net}: precision {machine['precision']} (asked: {p['precision']}), {machine['cpu_kind']}, "
          f"oneDNN {'on' if machine['onednn'] else 'off'}, {len(machine['gpus'])} GPU(s)", flush=True)
    p = dict(p, precision=machine["precision"])  # resolved: a checkpoint of another precision is not resumed
    keras.utils.set_random_seed(seed)
    backend.determinism()
    keras.mixed_precision.set_global_policy(machine["precision"])
    with backend.training_scope():  # all local devices
        if net == "bnet":
            model = nets.build_bnet(dropout=p["dropout"])
        else:
            bnet = nets.build_bnet()
            bnet.load_weights(BNET / "bnet.weights.h5")
            model = nets.build_enet(dropout=p["dropout"])
            freeze_f1_from(model, bnet)
            f1_before = nets.f1_of(model).get_weights()
        # dense training when the patch set has tiles (patches.tile > 0)
        trainee = DenseTrainer(model) if open_tiles(Path(f"data/patches/{net}")) is not None else model
        compile_net(trainee, p["lr"], tolerance=(net == "bnet"))
        summary = fit(trainee, Path(f"data/patches/{net}"), p, seed, Path(f"reports/train/{net}"),
                      Path(f"data/checkpoints/{net}"), progress=True, augment=params["patches"]["augment"],
                      rotations=params["patches"]["rotations"])
    keras.mixed_precision.set_global_policy("float32")
    # timings differ from run to run: they go to the run log, not to the summary DVC hashes
    timing = {k: summary.pop(k) for k in ("seconds", "samples_per_second")}
    save_json(Path(f"reports/timings/train_{net}.json"), dict(timing, machine=machine))
    summary["machine"] = machine
    data = patch_counts(Path(f"data/patches/{net}"))
    if net == "bnet":
        with atomic_dir(BNET) as tmp:  # B-NET with what train@enet records of it
            model.save_weights(tmp / "bnet.weights.h5")
            save_json(tmp / "summary.json", {"validation": summary, "data": data})
    else:
        if any(not np.array_equal(a, b) for a, b in zip(f1_before, nets.f1_of(model).get_weights())):
            raise SystemExit("train@enet: f1-NET weights changed while frozen")
        of_bnet = json.loads((BNET / "summary.json").read_text())
        save_model(MODELS / "pipeline", bnet, model, {
            "trained_by": "defocus pipeline (dvc repro)",
            "params": {k: params[k] for k in ("seed", "split", "synth_bnet", "synth_enet", "patches", "train")},
            "data": {"bnet": of_bnet["data"], "enet": data},
            "validation": {n: {k: v for k, v in d.items() if k != "machine"}
                           for n, d in (("bnet", of_bnet["validation"]), ("enet", summary))},
            "machine": {"bnet": of_bnet["validation"].get("machine"), "enet": machine},
        })
    save_json(Path(f"reports/train/{net}_summary.json"), summary)
    print(f"train@{net}: " + ", ".join(f"{k} {v}" for k, v in {**summary, **timing}.items() if k != "machine"))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("bnet", "enet"):
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
