"""Stages patches@bnet / patches@enet: balanced positions at Canny edges (training: the images and
the positions, cut and augmented when drawn; validation: unrotated 41 x 41 patches), and, for dense
training (patches.tile > 0), rotated training tiles.

Usage: python stages/patches.py bnet|enet
"""

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defocus.edges import detect_edges
from defocus.images import load_image, load_mask, save_json, to_uint8
from defocus.levels import BLUR_RADII, DEPTH, PATTERN
from defocus.params import load_params
from defocus.synthesis import near_boundary
from defocus.patchsets import Cell, allocate, inner, margin_for, tile_margin, write_patch_set, write_tile_set


def main(net: str) -> int:
    params = load_params()
    p = params["patches"]
    q = p[net]  # this network's section: per_class, tiles_per_class (E-NET: depth_band)
    synth = Path(f"data/synth/{net}")
    out, summary_path = Path(f"data/patches/{net}"), Path(f"reports/data/patches_{net}.json")
    entries = json.loads((synth / "index.json").read_text())["entries"]

    def load(i):
        e = entries[i]
        image = load_image(synth / e["file"])
        edges = detect_edges(image, p["canny_sigma"], p["canny_low"], p["canny_high"])
        if e.get("kind") == "depth":
            edges &= near_boundary(load_mask(synth / e["boundary"], image.shape[:2]), e["r_fg"], q["depth_band"])
        return to_uint8(image), edges

    label = (lambda e: e["label"]) if net == "bnet" else (lambda e: DEPTH if e["kind"] == "depth" else PATTERN)
    cells = [Cell(i, e["split"], label(e)) for i, e in enumerate(entries)]
    names = [f"{r:g}" for r in BLUR_RADII] if net == "bnet" else ["pattern", "depth"]
    labels = sorted({c.label for c in cells})
    tile, tile_edges = int(p["tile"]), int(p["tile_edges"])
    if tile < 0 or (tile and tile % 2 != 1):
        raise SystemExit(f"patches.tile must be 0 (no dense training) or an odd number of px, got {tile}")
    tile_cells = [Cell(c.entry, c.split, c.label) for c in cells if c.split == "train"] if tile else []
    tile_of = {c.entry: c for c in tile_cells}
    try:
        margin = margin_for(p["augment"])
    except ValueError as e:
        raise SystemExit(f"patches.augment: {e}") from None
    for c in tqdm(cells, desc=f"count {net}", unit="img", disable=not sys.stderr.isatty()):
        image, edges = load(c.entry)
        c.count, c.shape = int(inner(edges, margin).sum()), image.shape
        if c.entry in tile_of:
            tile_of[c.entry].count = int(inner(edges, tile_margin(tile)).sum())
    # tiles are stored, turned by one of the augmentation's angles
    orientations = [0, 90, 180, 270] if p["augment"] == "symmetries" else [0, *p["rotations"]]
    per_label = q["per_class"]
    positions = allocate(cells, per_label, params["split"]["val_fraction"])
    sizes = write_patch_set(out, cells, load, params["seed"], margin, progress=sys.stderr.isatty())
    tiles = {}
    if tile:
        per_tiles = q["tiles_per_class"]
        tile_plan = allocate(tile_cells, per_tiles, 0.0)["train"]
        n_tiles = write_tile_set(out, tile_cells, load, orientations, tile, tile_edges, params["seed"],
                                 progress=sys.stderr.isatty())
        w = np.load(out / "train_tiles_w.npy", mmap_mode="r")
        y = np.load(out / "train_tiles_y.npy")
        per = np.bincount(y, weights=np.asarray(w, dtype=np.int64).sum(axis=1), minlength=len(names))[labels]
        tiles = {"tile": tile, "tile_edges": tile_edges, "tiles": n_tiles, "tiles_per_class": min(tile_plan.values()),
                 "labelled_pixels": int(per.sum()), "labelled_pixels_min": int(per.min()),
                 "labelled_pixels_max": int(per.max())}
    per_class = {s: positions[s][labels[0]] for s in positions}  # equal for every class
    candidates = {names[lab]: sum(c.count for c in cells if c.label == lab) for lab in labels}
    size = sum(f.stat().st_size for f in out.iterdir())
    summary = {"patches": sizes, "per_class": per_class, "classes": len(labels), "augment": p["augment"],
               "candidates_min": min(candidates.values()), "candidates_max": max(candidates.values()),
               "source_images": len(cells), "megabytes": round(size / 2**20, 1), **tiles}
    save_json(summary_path, summary)
    print(f"patches@{net}: edge pixels per class: " + ", ".join(f"{n} {v}" for n, v in candidates.items()))
    for s in ("train", "val"):
        what = "positions (cut and augmented when drawn)" if s == "train" else "patches"
        print(f"patches@{net}: {s}: {sizes[s]} {what}, {per_class[s]} per class ({len(labels)} classes)")
    if tiles:
        print(f"patches@{net}: train: {tiles['tiles']} tiles of {tile} px, {tiles['labelled_pixels']} labelled "
              f"edge pixels ({tiles['labelled_pixels_min']} to {tiles['labelled_pixels_max']} per class)")
    got = sum(per_class.values())
    if got < per_label:
        print(f"patches@{net}: WARNING: only {got} of the {per_label} patches per class wanted: "
              "too few edge pixels in some class; add source images", file=sys.stderr)
    print(f"patches@{net}: {size / 2**20:.0f} MB in {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("bnet", "enet"):
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
