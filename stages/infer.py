"""Stage infer: edges, E-NET and B-NET on every evaluation image, for this run's model, the
shipped model (models/default) and (when present) the published TIP-2022 weights.

Writes one label image per image and model (``defocus.evalsets.encode_labels``):
E-NET's pattern/depth decision and B-NET's level at *every* edge pixel, so the
"no E-NET" ablation needs no second run. Seconds per image go to
reports/timings/times_infer.json (a run log, not a DVC output: timings differ
from run to run): ``edges``, ``enet``, ``bnet`` (the pipeline as
`defocus estimate` runs it: B-NET on pattern edges only) and ``bnet_all_edges``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defocus import backend

backend.use_params()  # before Keras loads: params.yaml's backend

from defocus.edges import detect_edges  # noqa: E402
from defocus.estimate import dense_model  # noqa: E402
from defocus.evalsets import encode_labels, eval_images  # noqa: E402
from defocus.images import atomic_dir, load_image, save_json, save_npy  # noqa: E402
from defocus.levels import DEPTH  # noqa: E402
from defocus.params import load_params  # noqa: E402
from defocus.weights import load_model, load_published  # noqa: E402

RAW, TEST, OUT = Path("data/raw"), Path("data/synth/test"), Path("data/eval/labels")
TIMES = Path("reports/timings/times_infer.json")


def models() -> dict:
    out = {"ours": load_model("data/models/pipeline"), "shipped": load_model("models/default")}
    if json.loads(Path("data/reference/status.json").read_text())["status"] == "ok":
        out["published"] = load_published("data/reference")
    return out


def main() -> int:
    params = load_params()
    p, pp = params["evaluate"], params["patches"]
    canny = {"sigma": pp["canny_sigma"], "low": pp["canny_low"], "high": pp["canny_high"]}
    sets = eval_images(RAW, TEST, p["max_images"], p["dbd_in_focus"])
    items = [it for s in sets.values() for it in s]
    with atomic_dir(OUT) as tmp:
        times: dict = {}
        for name, model in models().items():
            dm = dense_model(model)
            dm.classify(np.zeros((48, 48, 3), np.float32), np.array([24]), np.array([24]))  # trace once, untimed
            for it in tqdm(items, desc=f"infer {name}", unit="img", disable=not sys.stderr.isatty()):
                image = load_image(it.image)
                t0 = time.perf_counter()
                edges = detect_edges(image, **canny)
                t_edges = time.perf_counter() - t0
                ys, xs = np.nonzero(edges)
                split: dict = {}
                p_edge, bi, p_blur = dm.classify(image, ys, xs, timings=split)  # as `defocus estimate`
                t1 = time.perf_counter()
                _, _, p_all = dm.classify(image, ys, xs, blur_at=np.ones(len(ys), bool))  # B-NET at every edge
                t_all = time.perf_counter() - t1
                levels = p_all.argmax(axis=1)
                if not np.array_equal(levels[bi], p_blur.argmax(axis=1)):
                    raise RuntimeError(f"{it.image}: B-NET levels differ between two evaluations of the same pixels")
                labels = encode_labels(edges.shape, ys, xs, p_edge.argmax(axis=1) == DEPTH, levels)
                save_npy(tmp / name / it.set / f"{it.name}.npy", labels)
                times.setdefault(name, {}).setdefault(it.set, {})[it.name] = {
                    "edges": round(t_edges, 4), "enet": round(split.get("enet", 0.0), 4),
                    "bnet": round(split.get("bnet", 0.0), 4), "bnet_all_edges": round(t_all, 4),
                    "edge_pixels": int(len(ys)), "depth_edges": int((p_edge.argmax(axis=1) == DEPTH).sum())}
    save_json(TIMES, times)
    print(f"infer: {len(items)} images x {len(times)} models ({', '.join(times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
