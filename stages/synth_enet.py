"""Stage synth_enet: two-layer composites (depth edges) and pattern-edge images for E-NET."""

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defocus.datasets import salient_pool, sharp_pool
from defocus.images import atomic_dir, load_image, load_mask, save_json, save_png, to_uint8
from defocus.params import load_params
from defocus.patchsets import split_ids
from defocus.synthesis import boundary, composite, fit_background, pattern_variants

RAW, OUT, SUMMARY = Path("data/raw"), Path("data/synth/enet"), Path("reports/data/synth_enet.json")


def main() -> int:
    params = load_params()
    p, seed, frac = params["synth_enet"], params["seed"], params["split"]["val_fraction"]
    manifest = json.loads((RAW / "manifest.json").read_text())
    # the download stage copied only readable files
    objects = salient_pool(RAW, manifest)[: p["objects"]]
    sharp = sharp_pool(RAW, manifest)[: max(p["pattern_images"], 2)]
    obj_split = split_ids([o[0] for o in objects], frac, seed)
    sharp_split = split_ids([s[0] for s in sharp], frac, seed)
    with atomic_dir(OUT) as tmp:
        index = []
        pairs = [(a, b) for a, b in itertools.combinations(sorted(p["radii"]), 2)]
        if not objects:
            print("synth_enet: no salient objects available: no depth-edge composites", file=sys.stderr)
        for i, (oid, img_path, mask_path) in enumerate(tqdm(objects, desc="composites", unit="obj",
                                                            disable=not sys.stderr.isatty())):
            rng = np.random.default_rng([seed, 21, i])
            obj = load_image(img_path)
            mask = load_mask(mask_path, obj.shape[:2])
            stem = oid.replace("/", "_")
            save_png(tmp / f"{stem}_boundary.png", boundary(mask).astype(np.uint8) * 255)
            same = [s for s in sharp if sharp_split[s[0]] == obj_split[oid]] or sharp
            for j in rng.choice(len(same), size=min(p["backgrounds_per_object"], len(same)), replace=False):
                bid, bg_path = same[j]
                bg = fit_background(load_image(bg_path), obj.shape[:2], rng)
                for r_fg, r_bg in pairs:
                    img, _ = composite(obj, mask, bg, r_fg, r_bg)
                    name = f"{stem}__{bid.replace('/', '_')}_f{r_fg}_b{r_bg}.png"
                    save_png(tmp / name, to_uint8(img))
                    index.append({"file": name, "kind": "depth", "source": oid, "background": bid,
                                  "split": obj_split[oid], "boundary": f"{stem}_boundary.png",
                                  "r_fg": float(r_fg), "r_bg": float(r_bg)})
        for i, (sid, path) in enumerate(tqdm(sharp[: p["pattern_images"]], desc="pattern", unit="img",
                                              disable=not sys.stderr.isatty())):
            rng = np.random.default_rng([seed, 22, i])
            variants = pattern_variants(load_image(path), rng, p["steps"])
            for kind, blurred in variants.items():
                name = f"{sid.replace('/', '_')}_{kind}.png"
                save_png(tmp / name, to_uint8(blurred))
                index.append({"file": name, "kind": "pattern", "variant": kind, "source": sid, "split": sharp_split[sid]})
        save_json(tmp / "index.json", {"entries": index})
    count = lambda kind, split: sum(e["kind"] == kind and e["split"] == split for e in index)  # noqa: E731
    size = sum(f.stat().st_size for f in OUT.iterdir())
    summary = {"objects": len(objects), "composites": {s: count("depth", s) for s in ("train", "val")},
               "pattern_images": {s: count("pattern", s) for s in ("train", "val")},
               "megabytes": round(size / 2**20, 1)}
    save_json(SUMMARY, summary)
    print(f"synth_enet: {len(objects)} objects x {len(pairs)} radius pairs -> {summary['composites']} composites; "
          f"{summary['pattern_images']} pattern images; {size / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
