"""Stage benchmark: the networks' fixed test set (defocus.benchmark), from the photos and
objects the download stage reserved for it; independent of the profile's sizes and seed."""

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defocus import benchmark as bm
from defocus.datasets import salient_pool, sharp_pool
from defocus.edges import detect_edges
from defocus.images import atomic_dir, load_image, load_mask, save_json, to_uint8
from defocus.levels import BLUR_RADII, DEPTH, PATTERN
from defocus.params import load_params
from defocus.patches import PAD
from defocus.patchsets import Cell, allocate, inner, write_patch_set
from defocus.synthesis import boundary, composite, disk_blur, fit_background, near_boundary, pattern_variants

RAW, OUT, SUMMARY = Path("data/raw"), Path("data/benchmark"), Path("reports/data/benchmark.json")


_LAST: dict = {}


def _shared(key, make):
    """``make()``, computed once for consecutive calls with the same ``key`` (the images of
    one photo or object are made one after another)."""
    if _LAST.get("key") != key:
        _LAST.clear()
        _LAST.update(key=key, value=make())
    return _LAST["value"]


def bnet_images(photos):
    """(label, make) per benchmark image: each photo blurred with each radius."""
    return [(level, lambda p=path, r=radius: disk_blur(_shared(("photo", p), lambda: load_image(p)), r))
            for _, path in photos for level, radius in enumerate(BLUR_RADII)]


def enet_images(photos, objects):
    """(label, make) per image: depth-edge composites, then pattern-edge images."""
    out = []
    for i, (oid, img_path, mask_path) in enumerate(objects):
        def parts(i=i, img_path=img_path, mask_path=mask_path):
            obj = load_image(img_path)
            mask = load_mask(mask_path, obj.shape[:2])
            bg = fit_background(load_image(photos[i % len(photos)][1]), obj.shape[:2],
                                np.random.default_rng([bm.SEED, 1, i]))
            return obj, mask, boundary(mask), bg
        for r_fg, r_bg in bm.RADIUS_PAIRS:
            def make(parts=parts, i=i, r_fg=r_fg, r_bg=r_bg):
                obj, mask, edge, bg = _shared(("object", i), parts)
                return composite(obj, mask, bg, r_fg, r_bg)[0], near_boundary(edge, r_fg, bm.DEPTH_BAND)
            out.append((DEPTH, make))
    for i, (_, path) in enumerate(photos):
        def variants(p=path, i=i):
            return pattern_variants(load_image(p), np.random.default_rng([bm.SEED, 2, i]), bm.PATTERN_STEPS)
        for kind in ("uniform", "gradual", "step"):
            out.append((PATTERN, lambda v=variants, i=i, k=kind: _shared(("pattern", i), v)[k]))
    return out


def build(net: str, images, per_class: int, out: Path) -> dict:
    cache = {}

    def load(entry):  # each image is made once (count, then write)
        if entry not in cache:
            made = images[entry][1]()
            image, allowed = made if isinstance(made, tuple) else (made, None)
            edges = detect_edges(image)  # the default Canny of `defocus estimate`
            if allowed is not None:
                edges &= allowed
            cache[entry] = (to_uint8(image), edges)
        return cache[entry]

    cells = [Cell(i, "val", label) for i, (label, _) in enumerate(images)]
    for c in tqdm(cells, desc=f"benchmark {net}", unit="img", disable=not sys.stderr.isatty()):
        c.count = int(inner(load(c.entry)[1], PAD).sum())
    plan = allocate(cells, per_class, 1.0)["val"]
    sizes = write_patch_set(out, cells, load, bm.SEED, PAD, progress=False)
    return {"patches": sizes["val"], "per_class": min(plan.values()), "images": len(images)}


def main() -> int:
    params = load_params()
    p = params["benchmark"]
    manifest = json.loads((RAW / "manifest.json").read_text())
    photos, objects = sharp_pool(RAW, manifest, "benchmark"), salient_pool(RAW, manifest, "benchmark")
    if not photos:
        raise SystemExit("benchmark: no benchmark photos (download.benchmark.sharp is 0 or the sets are unavailable)")
    with atomic_dir(OUT) as tmp:
        summary = {"photos": len(photos), "objects": len(objects),
                   "bnet": build("bnet", bnet_images(photos), p["bnet_per_level"], tmp / "bnet"),
                   "enet": build("enet", enet_images(photos, objects), p["enet_per_class"], tmp / "enet")}
    save_json(SUMMARY, summary)
    for net in ("bnet", "enet"):
        s = summary[net]
        print(f"benchmark: {net}: {s['patches']} patches, {s['per_class']} per class, from {s['images']} images")
    if summary["bnet"]["per_class"] < p["bnet_per_level"] or summary["enet"]["per_class"] < p["enet_per_class"]:
        print("benchmark: WARNING: fewer patches per class than asked (too few edge pixels)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
