"""Ship the long run's B-NET when it beats the shipped model: measure both, in one run, and replace.

    python scripts/ship_long.py            # measure: the long run's candidate, models/default, the published weights
    python scripts/ship_long.py --write    # ... and replace models/default if the candidate is no worse anywhere
    python scripts/ship_long.py --write --accept-worse dbd_accuracy   # ... even if worse on the DUT set

The candidate is the B-NET of the long run's state (training/bnet/state.npz, scripts/train_long.py)
with the E-NET of models/default (which keeps its own copy of the f1-NET it was trained with), or
with the E-NET of another model folder (--enet DIR): one the pipeline trained on this B-NET's frozen
f1-NET (its weights in data/models/bnet, `python stages/train.py enet`; an E-NET of another f1-NET
is refused), so that both networks share one f1-NET and the dense path computes it once per tile:

    python scripts/ship_long.py --enet data/models/pipeline [--write]
Every model goes through `defocus estimate`'s defaults (Canny edges, dense path) on:
- RTF (the mirror's scenes 01/05/22): mean raw MAE at psi = 100 and at psi = 20;
- the pipeline's layered-scene set (data/synth/test, `dvc repro synth_test`): mean raw MAE, psi = 100;
- the blur-detection set (dbd/dut): accuracy at the model's best threshold (Fig. 9's protocol, absolute
  threshold; scripts/detect_threshold.py);
- the benchmark set (data/benchmark, `dvc repro benchmark`): B-NET exact / within one level, E-NET.
--write replaces models/default when the candidate's RTF MAE is lower at both psi and it is no worse
on the layered set and the blur-detection set; model.json records the long run's progress
(samples, hours, machines), the commit, every figure above and the detect threshold.
--accept-worse names comparisons the candidate may lose and still be shipped (the end of a
compute-capped run, where the best model reached is shipped); model.json then lists each such loss
under "accepted_losses" with both figures, and the script prints them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


#: the comparisons --write requires the candidate to win (lower MAE, higher accuracy)
COMPARISONS = ("rtf_mae_psi100", "rtf_mae_psi20", "layered_mae", "dbd_accuracy")


def decide(c: dict, s: dict, accept_worse=()) -> tuple[dict, dict, bool]:
    """Whether the candidate (figures ``c``) replaces the shipped model (``s``).

    Returns each comparison's outcome (True: the candidate is better or equal, False: worse,
    None: not measured, which is never a win), the losses accepted by ``accept_worse`` (name ->
    both figures), and the decision: every comparison won or an accepted loss.
    """
    wins = {"rtf_mae_psi100": c["rtf_mae_psi100"] < s["rtf_mae_psi100"],
            "rtf_mae_psi20": c["rtf_mae_psi20"] < s["rtf_mae_psi20"],
            "layered_mae": c["layered_mae"] <= s["layered_mae"] if "layered_mae" in c else None,
            "dbd_accuracy": c["dbd_accuracy"] >= s["dbd_accuracy"]}
    accepted = {k: {"candidate": c.get(k), "shipped": s.get(k)} for k in accept_worse if wins[k] is False}
    return wins, accepted, all(v is True or k in accepted for k, v in wins.items())


def evaluate(model, data: Path, rtf: Path, dbd: Path) -> dict:
    from detect_threshold import measure

    from defocus.benchmark import accuracy
    from defocus.estimate import estimate_blur
    from defocus.evalsets import eval_images, load_radius
    from defocus.images import load_image
    from defocus.metrics import raw_mae
    from defocus.patchsets import open_split
    from scipy.io import loadmat

    out = {}
    for psi in (100, 20):
        maes = [raw_mae(estimate_blur(load_image(rtf / f"image_{p.stem.split('_', 1)[1]}.png"), model, psi=psi).blur,
                        loadmat(p)["blurMap"]) for p in sorted(rtf.glob("map_*.mat"))]
        out[f"rtf_mae_psi{psi}"] = round(float(np.mean(maes)), 4)
    layered = eval_images(data / "data" / "raw", data / "data" / "synth" / "test")["synthetic"]
    if layered:
        out["layered_mae"] = round(float(np.mean([raw_mae(estimate_blur(load_image(it.image), model).blur,
                                                          load_radius(it)) for it in layered])), 4)
        out["layered_images"] = len(layered)
    det = measure(model, dbd)
    out["dbd_accuracy"], out["detect_threshold_px"] = det["accuracy"], det["threshold_px"]
    for net in ("bnet", "enet"):
        folder = data / "data" / "benchmark" / net
        if (folder / "val_y.npy").exists():
            acc = accuracy(getattr(model, net), *open_split(folder, "val"))
            out[f"benchmark_{net}"] = round(acc["accuracy"], 4)
            if net == "bnet":
                out["benchmark_bnet_within_one"] = round(acc["tolerance_accuracy"], 4)
    return out


def _enet_params(params: dict) -> dict:
    """E-NET's part of the pipeline's params record (its B-NET part is of the stage's B-NET folder)."""
    out = {k: v for k, v in params.items() if k != "synth_bnet"}
    for k in ("train", "patches"):
        if isinstance(out.get(k), dict):
            out[k] = {n: v for n, v in out[k].items() if n != "bnet"}
    return out


def candidate(state: Path, shipped: Path, out: Path, enet_dir: Path | None = None) -> dict:
    """Write the candidate model folder; returns the long run's progress record.

    The E-NET comes from ``enet_dir`` when given, else from ``shipped``.
    """
    from train_long import bnet_of_state

    from defocus.estimate import dense_model
    from defocus.weights import Model, load_model, save_model

    bnet, prog = bnet_of_state(state)
    source = enet_dir or shipped
    enet = load_model(source).enet
    if enet_dir is not None and not dense_model(Model(bnet, enet, str(enet_dir), "defocus")).shared_f1:
        raise SystemExit(f"{enet_dir}: its E-NET was trained on another f1-NET than the long run's B-NET "
                         "(train it on `scripts/train_long.py --export data/models/bnet`)")
    info = json.loads((source / "model.json").read_text())
    long_run = {k: prog[k] for k in ("step", "samples", "seconds", "total_steps", "train_samples", "config", "data")}
    long_run["machines"] = [p["machine"] for p in prog["pieces"]]
    long_run["curve"] = prog["curve"][-3:]
    if enet_dir is None:
        trained_by = "scripts/train_long.py (B-NET); E-NET from the model shipped before"
        enet_from = {k: info.get(k) for k in ("trained_by", "params", "data", "machine")}
    else:
        trained_by = "scripts/train_long.py (B-NET); E-NET trained on its f1-NET by the pipeline"
        enet_from = {"trained_by": info.get("trained_by"), "params": _enet_params(info.get("params") or {}),
                     **{k: (info.get(k) or {}).get("enet") for k in ("data", "machine", "validation")}}
    save_model(out, bnet, enet, {"trained_by": trained_by, "bnet_long_run": long_run, "enet_from": enet_from})
    return prog


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", type=Path, default=ROOT / "training" / "bnet" / "state.npz")
    ap.add_argument("--shipped", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--data", type=Path, default=ROOT, help="repository whose data/ the pipeline filled (.)")
    ap.add_argument("--enet", type=Path, default=None, metavar="DIR",
                    help="take the candidate's E-NET from this model folder (default: --shipped's)")
    ap.add_argument("--write", action="store_true", help="replace --shipped when the candidate wins")
    ap.add_argument("--accept-worse", nargs="+", default=[], choices=COMPARISONS, metavar="NAME",
                    help=f"ship even if the candidate is worse on these ({', '.join(COMPARISONS)})")
    args = ap.parse_args()

    from defocus import config
    from defocus.estimate import dense_model
    from defocus.weights import load_model, load_published

    rtf, dbd = config.shared_dir() / "data" / "rtf", config.shared_dir() / "data" / "dbd" / "dut"
    with tempfile.TemporaryDirectory() as tmp:
        cand_dir = Path(tmp) / "candidate"
        prog = candidate(args.state, args.shipped, cand_dir, args.enet)
        models = {"candidate": load_model(cand_dir), "shipped": load_model(args.shipped)}
        if config.reference_dir().is_dir():
            models["published"] = load_published(config.reference_dir())
        results = {}
        for name, model in models.items():
            results[name] = {**evaluate(model, args.data, rtf, dbd), "shared_f1": dense_model(model).shared_f1}
            print(f"ship_long: {name}: {json.dumps(results[name])}", flush=True)
        wins, accepted, ship = decide(results["candidate"], results["shipped"], args.accept_worse)
        verdict = {True: "better", False: "WORSE", None: "not measured (dvc repro synth_test under --data)"}
        print(f"ship_long: candidate (long run at {prog['samples']:,} samples, {prog['seconds'] / 3600:.2f} h) "
              f"against models/default: " + ", ".join(f"{k} {verdict[v]}" for k, v in wins.items()))
        if not args.write or not ship:
            print("ship_long: models/default unchanged" + ("" if args.write else " (no --write)"))
            return 0
        c = results["candidate"]
        info = json.loads((cand_dir / "model.json").read_text())
        info["evaluation"] = {"protocol": "defocus estimate defaults (Canny edges, dense); RTF mean raw MAE over "
                              "the mirror's scenes; layered: data/synth/test at psi 100; dbd: best absolute "
                              "threshold; benchmark: data/benchmark", **results}
        info["detect"] = {"threshold_px": c["detect_threshold_px"], "accuracy": c["dbd_accuracy"], "psi": 100.0,
                          "set": "dbd/dut"}
        if accepted:
            info["accepted_losses"] = accepted
            print(f"ship_long: shipped although worse on {json.dumps(accepted)} (--accept-worse)")
        info["shipped_from_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                                     cwd=ROOT).stdout.strip() or None
        (cand_dir / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        dest = args.shipped
        staged = dest.with_name(f".{dest.name}.new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(cand_dir, staged)
        shutil.rmtree(dest)
        staged.rename(dest)
        print(f"ship_long: {dest} replaced by the candidate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
