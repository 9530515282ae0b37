"""Stages propagate and baselines: dense blur maps of every evaluation image.

Usage: python stages/propagate.py main|baselines

``main`` (depends on ``psi``): this run's model, the shipped model and the published weights,
domain transform with the depth-edge penalty ``psi`` -> data/eval/maps/{ours,shipped,published}.
``baselines`` (independent of ``psi``, so ``dvc exp run -S psi=...`` never
re-runs it) -> data/eval/baselines/:

* ``no_enet``: our B-NET at every edge, no depth edges (psi is then moot);
* ``psi0``: our model with psi = 0;
* ``matting``: our pattern-edge values, Laplacian-matting propagation
  (Levin et al.) instead of the domain transform;
* ``zhuo_sim``: Zhuo & Sim 2011 (Gaussian sigma, converted to disk radius with
  RTF's ``convertion.mat``; unavailable without it).

Seconds per image go to reports/timings/times_<which>.json (a run log, not a DVC output).
"""

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defocus.evalsets import eval_images, sparse_from_labels
from defocus.images import atomic_dir, load_image, save_json, save_npy
from defocus.params import load_params
from defocus.propagation import propagate

RAW, TEST, LABELS = Path("data/raw"), Path("data/synth/test"), Path("data/eval/labels")
OUTS = {"main": Path("data/eval/maps"), "baselines": Path("data/eval/baselines")}


def methods(which: str, params: dict) -> dict:
    """name -> function(image, labels_of(model)) -> (radius map, model it needs or None)."""
    p, psi = params["evaluate"], float(params["psi"])

    def dt(model, psi_, use_enet=True):
        def run(image, labels):
            sparse, known, depth = sparse_from_labels(labels[model], use_enet)
            return propagate(image, sparse, known, depth, psi=psi_)
        run.model = model
        return run

    if which == "main":
        return {"ours": dt("ours", psi), "shipped": dt("shipped", psi), "published": dt("published", psi)}

    from defocus.matting import propagate_matting
    from defocus.metrics import load_conversion, sigma_to_radius
    from defocus import zhuo_sim

    def matting(image, labels):
        sparse, known, _ = sparse_from_labels(labels["ours"])
        return propagate_matting(image, sparse, known, lam=p["matting_lambda"], eps=p["matting_eps"])
    matting.model = "ours"

    out = {"no_enet": dt("ours", 0.0, use_enet=False), "psi0": dt("ours", 0.0), "matting": matting}
    table = RAW / "rtf" / "convertion.mat"
    if table.is_file():
        conv = load_conversion(table)
        pp = params["patches"]
        canny = {"sigma": pp["canny_sigma"], "low": pp["canny_low"], "high": pp["canny_high"]}

        def zs(image, labels):
            sigma = zhuo_sim.estimate_sigma(image, sigma0=p["zhuo_sigma0"], max_sigma=float(conv[0].max()),
                                            canny=canny, lam=p["matting_lambda"], eps=p["matting_eps"])
            return sigma_to_radius(sigma, conv)
        zs.model = None
        out["zhuo_sim"] = zs
    else:
        print(f"baselines: {table} not found: Zhuo & Sim (needs the sigma-radius table) is unavailable",
              file=sys.stderr)
    return out


def main(which: str) -> int:
    params = load_params()
    p = params["evaluate"]
    out_dir = OUTS[which]
    sets = eval_images(RAW, TEST, p["max_images"], p["dbd_in_focus"])
    items = [it for s in sets.values() for it in s]
    have = {d.name for d in LABELS.iterdir()} if LABELS.is_dir() else set()
    todo = {k: f for k, f in methods(which, params).items() if f.model is None or f.model in have}
    with atomic_dir(out_dir) as tmp:
        times: dict = {}
        for it in tqdm(items, desc=which, unit="img", disable=not sys.stderr.isatty()):
            image = load_image(it.image)
            labels = {m: np.load(LABELS / m / it.set / f"{it.name}.npy") for m in have}
            for name, fn in todo.items():
                t0 = time.perf_counter()
                blur = np.asarray(fn(image, labels), dtype=np.float32)
                times.setdefault(name, {}).setdefault(it.set, {})[it.name] = round(time.perf_counter() - t0, 4)
                save_npy(tmp / name / it.set / f"{it.name}.npy", blur)
    save_json(Path(f"reports/timings/times_{which}.json"), times)  # a run log, not a DVC output
    print(f"{which}: {len(items)} images x {len(todo)} methods ({', '.join(todo)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
