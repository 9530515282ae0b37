"""A long B-NET training run in resumable pieces (CPU or GPU), its state committed to git.

    python scripts/train_long.py --hours 2.5            # start, or continue, the run in training/bnet
    python scripts/train_long.py --status               # where the run stands (no training)
    python scripts/train_long.py --export data/models/bnet   # the run's B-NET as train@bnet's output folder

``--export`` writes the run's B-NET where the pipeline's E-NET stage reads B-NET (weights and a
summary.json recording the run), so that ``python stages/train.py enet`` trains an E-NET on the run's
frozen f1-NET; ``scripts/ship_long.py --enet data/models/pipeline`` then measures and ships the pair.

The run trains B-NET with a profile's data and schedule (default: profiles/gpu.yaml, the recipe of
84 M samples), batch 256 on a CPU, in float32 whatever the CPU (so that a piece continued on
another kind of machine computes alike). Its state lives in one file, ``training/bnet/state.npz``
(weights, Adam's moments and step count, the dropout seeds, the batch number, the learning curve;
about 7 MB), written atomically every few minutes of training and when the piece ends: at
``--hours``, on Ctrl-C or SIGTERM, or at the end of the schedule. A killed piece loses at most the
minutes since the last checkpoint; the next one continues from it with the same data order and
augmentation (batch ``g`` of the run is a function of ``g`` and the seed), so the run is the same
as an uninterrupted one. Commit ``training/bnet`` after each piece.

The data (download, synth_bnet, patches@bnet of the profile; about 7 GB for the gpu profile,
30-40 minutes on 2 cores the first time) is built by the pipeline's own stage scripts in
``data/long/<profile>/`` and reused while its parameters are unchanged. Learning curve: the
benchmark set's (``dvc repro benchmark``; else the validation split's) first ``--val`` patches
at every checkpoint, in ``progress.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("download.py", "synth_bnet.py", "patches.py bnet")


def bnet_of_state(state_file: Path):
    """The run's B-NET (a Keras model) and progress record, from ``state.npz``."""
    import numpy as np

    from defocus import nets

    with np.load(state_file) as f:
        prog = json.loads(bytes(f["progress"]).decode())
        values = [f[k] for k in sorted(k for k in f.files if k.startswith("w"))]  # not the optimizer's
    bnet = nets.build_bnet(dropout=prog["config"]["dropout"])
    if len(values) != len(bnet.variables):
        raise SystemExit(f"{state_file}: {len(values)} variables, B-NET has {len(bnet.variables)}")
    for var, value in zip(bnet.variables, values):
        var.assign(value)
    return bnet, prog


def export_bnet(state_file: Path, out: Path) -> dict:
    """Write the run's B-NET as train@bnet writes its output (``bnet.weights.h5``, ``summary.json``)."""
    from defocus.images import atomic_dir, save_json

    bnet, prog = bnet_of_state(state_file)
    last = prog["curve"][-1] if prog.get("curve") else {}
    validation = {"trained_by": "scripts/train_long.py", "step": prog["step"], "samples": prog["samples"],
                  "seconds": prog["seconds"], "config": prog["config"], "last_checkpoint": last,
                  "machine": prog["pieces"][-1]["machine"] if prog.get("pieces") else None}
    with atomic_dir(out) as tmp:
        bnet.save_weights(tmp / "bnet.weights.h5")
        save_json(tmp / "summary.json", {"validation": validation,
                                         "data": {"patches": {"train": prog["train_samples"]}, "set": prog["data"]}})
    return prog


def data_params(profile: Path) -> dict:
    """params.yaml with the profile applied and the mirror made absolute (the stages run elsewhere)."""
    import yaml

    from defocus.params import apply_profile

    text = (ROOT / "params.yaml").read_text()
    tmp = ROOT / "data" / "long" / f".params-{os.getpid()}.yaml"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    try:
        apply_profile(profile, tmp)
        params = yaml.safe_load(tmp.read_text())
        mirror = params["download"]["mirror"]
        if mirror:
            apply_profile({"download": {"mirror": str((ROOT / mirror).resolve())}}, tmp)
        return {"text": tmp.read_text(), "params": yaml.safe_load(tmp.read_text())}
    finally:
        tmp.unlink(missing_ok=True)


def build_data(profile: Path) -> tuple[Path, dict]:
    """The profile's B-NET patch set, built by the stage scripts in data/long/<profile>/ unless there."""
    work = ROOT / "data" / "long" / profile.stem
    p = data_params(profile)
    sections = {k: p["params"][k] for k in ("seed", "download", "split", "synth_bnet", "patches")}
    stamp = json.dumps(sections, sort_keys=True)
    done = work / "built.json"
    if done.exists() and done.read_text() == stamp:
        return work / "data" / "patches" / "bnet", p["params"]
    print(f"train_long: building the {profile.stem} profile's B-NET data in {work} (once)", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    (work / "params.yaml").write_text(p["text"])
    for stage in STAGES:
        script, *args = stage.split()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=work, check=True)
        print(f"train_long: {stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    done.write_text(stamp)
    return work / "data" / "patches" / "bnet", p["params"]


def fingerprint(patches: Path) -> str:
    """SHA-256 of the training positions, labels and image table (what fixes the data order)."""
    h = hashlib.sha256()
    for name in ("train_images.npy", "train_pos.npy", "train_y.npy"):
        h.update((patches / name).read_bytes())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.5, help="training time of this piece, hours (2.5)")
    ap.add_argument("--state", type=Path, default=ROOT / "training" / "bnet", help="state folder (training/bnet)")
    ap.add_argument("--profile", type=Path, default=ROOT / "profiles" / "gpu.yaml",
                    help="data and schedule of a new run (profiles/gpu.yaml)")
    ap.add_argument("--patches", type=Path, help="use this B-NET patch set instead of building the profile's")
    ap.add_argument("--batch-size", type=int, default=256, help="batch of a new run (256)")
    ap.add_argument("--epochs", type=int, help="epochs of a new run (the profile's train.bnet.epochs)")
    ap.add_argument("--lr-step", type=int, help="lr / 10 after this many epochs (the profile's train.bnet.lr_step)")
    ap.add_argument("--lr-drop-step", type=int, default=0,
                    help="lr / 10 from this step on instead of the profile's lr_step epochs (also for a run under "
                         "way: the change is recorded in its events); for a CPU budget far short of the schedule")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (5)")
    ap.add_argument("--checkpoint-steps", type=int, default=0, help="checkpoint every N steps instead (tests)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop this piece after N steps (0: no limit)")
    ap.add_argument("--val", type=int, default=23000, help="patches measured at each checkpoint (23000)")
    ap.add_argument("--benchmark", type=Path, default=ROOT / "data" / "benchmark" / "bnet",
                    help="measure on this benchmark set (dvc repro benchmark) when it exists, else on the "
                    "validation split (data/benchmark/bnet)")
    ap.add_argument("--status", action="store_true", help="print where the run stands and exit")
    ap.add_argument("--export", type=Path, metavar="DIR",
                    help="write the run's B-NET as train@bnet's output folder (data/models/bnet) and exit")
    ap.add_argument("--die-at-step", type=int, default=0, help=argparse.SUPPRESS)  # tests: SIGKILL after step N
    args = ap.parse_args(argv)

    state_file, progress_file = args.state / "state.npz", args.state / "progress.json"
    if args.status:
        if not progress_file.exists():
            print(f"{args.state}: no run yet")
            return 0
        prog = json.loads(progress_file.read_text())
        print(json.dumps({k: v for k, v in prog.items() if k != "curve"}, indent=1))
        for point in prog.get("curve", [])[-5:]:
            print(point)
        return 0

    if args.export:
        if not state_file.exists():
            raise SystemExit(f"{state_file}: no run to export")
        prog = export_bnet(state_file, args.export)
        print(f"train_long: B-NET at step {prog['step']:,} ({prog['samples']:,} samples) written to {args.export}")
        return 0

    # ------------------------------------------------------------ data and run configuration
    prog = None
    if state_file.exists():
        import numpy as np

        with np.load(state_file) as f:
            prog = json.loads(bytes(f["progress"]).decode())
        config = prog["config"]
    if args.patches:
        patches, params = args.patches, None
    else:
        profile = ROOT / config["profile"] if prog else args.profile
        patches, params = build_data(profile)
    if prog is None:
        p = params["train"]["bnet"] if params else {"epochs": 1, "lr_step": 1, "lr": 1e-3, "dropout": 0.5}
        config = {"profile": str(args.profile.resolve().relative_to(ROOT)) if not args.patches else None,
                  "seed": params["seed"] if params else 0,
                  "augment": params["patches"]["augment"] if params else "symmetries",
                  "rotations": params["patches"]["rotations"] if params else [],
                  "batch_size": args.batch_size, "epochs": args.epochs or p["epochs"],
                  "lr_step": args.lr_step or p["lr_step"], "lr": p["lr"], "dropout": p["dropout"],
                  "precision": "float32"}

    from defocus import hardware

    hardware.use_kernels("train")
    from defocus import backend
    from defocus.backend import keras
    from defocus import nets
    from defocus.patchsets import TrainingSet, open_split
    from defocus.benchmark import accuracy
    from defocus.train import compile_net, load_state, save_state

    import numpy as np

    samples = TrainingSet(patches, config["augment"], config["rotations"], seed=config["seed"],
                          batch_size=config["batch_size"])
    steps_per_epoch = samples.steps_per_epoch
    total = config["epochs"] * steps_per_epoch
    if args.lr_drop_step:
        config["lr_drop_step"] = int(args.lr_drop_step)
    boundary = config.get("lr_drop_step") or config["lr_step"] * steps_per_epoch
    data_id = fingerprint(patches)
    measured_on = "benchmark" if (args.benchmark / "val_y.npy").exists() else "val"
    val_x, val_y = open_split(args.benchmark if measured_on == "benchmark" else patches, "val")
    val_x, val_y = val_x[: args.val], val_y[: args.val]

    keras.utils.set_random_seed(config["seed"])
    backend.determinism()
    keras.mixed_precision.set_global_policy(config["precision"])
    model = nets.build_bnet(dropout=config["dropout"])
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([boundary], [config["lr"], config["lr"] / 10])
    compile_net(model, schedule, tolerance=False)
    model.optimizer.build(model.trainable_variables)
    machine = {"cpu_kind": hardware.cpu_kind(), "cpu_model": hardware.cpu_info()[0],
               "backend": backend.name(), "gpus": len(backend.gpu_capabilities())}
    if prog is not None:
        prog = load_state(state_file, model)
        if prog["data"] != data_id:
            print(f"train_long: WARNING: the training data differ from the run's ({prog['data']} -> {data_id}); "
                  "continuing on the new data (recorded)", file=sys.stderr)
            prog.setdefault("events", []).append({"step": prog["step"], "event": f"data {prog['data']} -> {data_id}"})
            prog["data"] = data_id
        if prog["config"].get("lr_drop_step") != config.get("lr_drop_step"):
            prog.setdefault("events", []).append({"step": prog["step"], "event": f"lr / 10 from step {boundary}"})
            prog["config"] = config
        print(f"train_long: continuing at step {prog['step']} of {total} ({prog['samples']:,} samples seen), "
              f"lr {config['lr']:g}, / 10 from step {boundary}")
    else:
        prog = {"config": config, "step": 0, "samples": 0, "seconds": 0.0, "data": data_id,
                "train_samples": len(samples), "steps_per_epoch": steps_per_epoch, "total_steps": total,
                "pieces": [], "curve": [], "events": []}
        print(f"train_long: new run: {len(samples):,} training positions, {total} steps of {config['batch_size']} "
              f"({total * config['batch_size'] / 1e6:.1f} M samples), lr / 10 at step {boundary}")
    prog["pieces"].append({"start_step": prog["step"], "machine": machine, "precision": config["precision"]})

    stop = {"why": None}

    def on_signal(signum, frame):
        stop["why"] = signal.Signals(signum).name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def checkpoint(measure: bool) -> None:
        if measure and len(val_y):
            acc = accuracy(model, val_x, val_y)
            prog["curve"].append({"step": prog["step"], "samples": prog["samples"],
                                  "hours": round(prog["seconds"] / 3600, 3), "loss": round(running["loss"], 4),
                                  "on": measured_on, "accuracy": round(acc["accuracy"], 4),
                                  "tolerance_accuracy": round(acc["tolerance_accuracy"], 4)})
        prog["pieces"][-1]["end_step"] = prog["step"]
        save_state(state_file, model, prog)
        tmp = progress_file.with_name(f".{progress_file.name}.tmp")
        tmp.write_text(json.dumps(prog, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, progress_file)

    t_piece = time.perf_counter()
    t_ckpt = t_log = t_piece
    running = {"loss": float("nan"), "acc": float("nan")}
    n_log = s_log = 0
    loss_sum = acc_sum = 0.0
    first = prog["step"]
    while prog["step"] < total:
        g = prog["step"]
        t0 = time.perf_counter()
        x, y = samples.batch(g)
        logs = model.train_on_batch(x.astype(np.float32) / np.float32(255.0), y.astype(np.int32), return_dict=True)
        prog["seconds"] += time.perf_counter() - t0
        prog["step"] += 1
        prog["samples"] += len(y)
        prog["last_loss"] = float(logs["loss"])  # of batch step - 1: the same whether or not the run was resumed
        if prog["step"] == args.die_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # as a machine going away: no clean stop
        loss_sum, acc_sum, n_log, s_log = loss_sum + float(logs["loss"]), acc_sum + float(logs["accuracy"]), \
            n_log + 1, s_log + len(y)
        now = time.perf_counter()
        if now - t_log >= 60 or prog["step"] == total:
            running = {"loss": loss_sum / n_log, "acc": acc_sum / n_log}
            rate = s_log / (now - t_log)
            left = (total - prog["step"]) * config["batch_size"] / rate
            print(f"train_long: step {prog['step']}/{total} (epoch {prog['step'] // steps_per_epoch}), "
                  f"{prog['samples'] / 1e6:.2f} M samples, {rate:.0f} samples/s, loss {running['loss']:.3f}, "
                  f"acc {running['acc']:.3f}, piece {(now - t_piece) / 3600:.2f}/{args.hours} h, "
                  f"run ETA {left / 3600:.1f} h at this rate", flush=True)
            t_log, n_log, s_log, loss_sum, acc_sum = now, 0, 0, 0.0, 0.0
        done = (prog["step"] == total or (now - t_piece) / 3600 >= args.hours or stop["why"] is not None
                or (args.max_steps and prog["step"] - first >= args.max_steps))
        due = (args.checkpoint_steps and prog["step"] % args.checkpoint_steps == 0) or \
            (not args.checkpoint_steps and now - t_ckpt >= 60 * args.checkpoint_minutes)
        if done or due:
            if n_log:
                running = {"loss": loss_sum / n_log, "acc": acc_sum / n_log}
            checkpoint(measure=not args.checkpoint_steps or done)
            t_ckpt = time.perf_counter()
        if done:
            break
    why = stop["why"] or ("end of the schedule" if prog["step"] == total else "piece time or step limit")
    last = prog["curve"][-1] if prog["curve"] else {}
    print(f"train_long: stopped ({why}) at step {prog['step']} of {total}, {prog['samples']:,} samples, "
          f"{prog['seconds'] / 3600:.2f} h of training in all; on the {last.get('on')} set {last.get('accuracy')} exact, "
          f"{last.get('tolerance_accuracy')} within one level. State: {state_file}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
