"""Seconds of one dense estimate of the bench's large photo (4000 x 3000 by default) per tile side,
to choose the tile on a GPU, where a 256 px tile leaves most of the chip idle. Run by
scripts/gpu_check.sh after the bench; writes JSON to the path given (and prints each row).

Each tile side: one warm-up run (traces and compiles), then ``--repeat`` timed runs (median), and
the largest |map difference| from the first tile side's map (0 on the CPUs; on an H200 under JAX's
default precision, TensorFloat-32, it was 0.05 px, which is why the inference now asks for full
float32). Stops starting new tile sides after ``--budget`` seconds.

    python scripts/gpu_tiles.py OUT.json [--tiles 256,1024,2048,512] [--large 4000x3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from defocus import backend, config  # noqa: E402
from defocus.bench import _large_image, _median_stages, _run, machine_facts  # noqa: E402
from defocus.estimate import DEFAULT_TILE  # noqa: E402
from defocus.images import load_image  # noqa: E402
from defocus.weights import load_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiles", default=f"{DEFAULT_TILE},1024,2048,512")
    ap.add_argument("--large", default="4000x3000")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--budget", type=float, default=150.0, help="seconds after which no new tile side starts")
    args = ap.parse_args()
    t_start = time.perf_counter()
    model = load_model(config.default_model_dir())
    rtf = sorted((config.shared_dir() / "data" / "rtf").glob("image_*.png"))
    w, h = (int(v) for v in args.large.lower().split("x"))
    img = _large_image([load_image(p) for p in rtf], (w, h))
    report = {"machine": machine_facts(), "backend": backend.name(), "size": [w, h], "rows": []}
    ref = None
    for tile in (int(t) for t in args.tiles.split(",")):
        if time.perf_counter() - t_start > args.budget:
            print(f"tile {tile}: not started ({args.budget:.0f} s budget spent)", flush=True)
            break
        t0 = time.perf_counter()
        first = _run(img, model, "dense", tile=tile)
        first_s = time.perf_counter() - t0
        runs = [_run(img, model, "dense", tile=tile) for _ in range(args.repeat)]
        if ref is None:
            ref = first["est"].blur
        row = {"tile": tile, "first_run_s": first_s, "dense": _median_stages(runs),
               "max_abs_map_difference": float(np.abs(runs[0]["est"].blur - ref).max())}
        report["rows"].append(row)
        print(f"tile {tile}: first run {first_s:.1f} s; median of {args.repeat}: "
              + "  ".join(f"{k} {v:.3f}" for k, v in row["dense"].items())
              + f"; max |map difference| from the first: {row['max_abs_map_difference']:.2e} px", flush=True)
        del first, runs
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
