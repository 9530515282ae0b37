"""Stages patches_bnet / patches_enet: balanced, rotated 41 x 41 patches at Canny edges.

Usage: python stages/patches.py bnet|enet
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from defocus.edges import detect_edges
from defocus.images import load_image, load_mask, save_json, to_uint8
from defocus.levels import BLUR_RADII, DEPTH, PATTERN
from defocus.params import load_params
from defocus.patchsets import Cell, allocate, inner, write_patch_set


def main(net: str) -> int:
    params = load_params()
    p = params["patches"]
    synth = Path(f"data/synth/{net}")
    out, summary_path = Path(f"data/patches/{net}"), Path(f"reports/data/patches_{net}.json")
    entries = json.loads((synth / "index.json").read_text())["entries"]

    def load(i):
        e = entries[i]
        image = load_image(synth / e["file"])
        edges = detect_edges(image, p["canny_sigma"], p["canny_low"], p["canny_high"])
        if e.get("kind") == "depth":
            band = int(np.ceil(e["r_fg"])) + p["depth_band"]
            near = load_mask(synth / e["boundary"], image.shape[:2]).astype(np.uint8)
            near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)))
            edges &= near > 0
        return to_uint8(image), inner(edges)

    label = (lambda e: e["label"]) if net == "bnet" else (lambda e: DEPTH if e["kind"] == "depth" else PATTERN)
    cells = [Cell(i, e["split"], label(e)) for i, e in enumerate(entries)]
    for c in tqdm(cells, desc=f"count {net}", unit="img", disable=not sys.stderr.isatty()):
        c.count = int(load(c.entry)[1].sum())
    k = p["orientations_per_position"]
    orientations = [0, *p["rotations"]]
    if not 1 <= k <= len(orientations):
        raise SystemExit(f"patches.orientations_per_position must be 1..{len(orientations)}, got {k}")
    per_label = p["bnet_per_level"] if net == "bnet" else p["enet_per_class"]
    positions = allocate(cells, per_label, k, params["split"]["val_fraction"])
    sizes = write_patch_set(out, cells, load, orientations, k, params["seed"], progress=sys.stderr.isatty())
    names = [f"{r:g}" for r in BLUR_RADII] if net == "bnet" else ["pattern", "depth"]
    labels = sorted({c.label for c in cells})
    per_class = {s: positions[s][labels[0]] * k for s in positions}  # equal for every class
    candidates = {names[lab]: sum(c.count for c in cells if c.label == lab) for lab in labels}
    size = sum(f.stat().st_size for f in out.iterdir())
    summary = {"patches": sizes, "per_class": per_class, "classes": len(labels), "orientations_per_position": k,
               "candidates_min": min(candidates.values()), "candidates_max": max(candidates.values()),
               "source_images": len(cells), "megabytes": round(size / 2**20, 1)}
    save_json(summary_path, summary)
    print(f"patches_{net}: edge pixels per class: " + ", ".join(f"{n} {v}" for n, v in candidates.items()))
    for s in ("train", "val"):
        print(f"patches_{net}: {s}: {sizes[s]} patches, {per_class[s]} per class ({len(labels)} classes)")
    got = sum(per_class.values())
    if got < per_label:
        print(f"patches_{net}: WARNING: only {got} of the {per_label} patches per class wanted: "
              "too few edge pixels in some class; add source images", file=sys.stderr)
    print(f"patches_{net}: {size / 2**20:.0f} MB in {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("bnet", "enet"):
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
