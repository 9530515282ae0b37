"""Stage synth_test: the layered test set (Table II deblurring, Fig. 9 detection).

Each image is a held-out salient object, defocused with radius r_fg, over a
held-out sharp photo defocused with r_bg > r_fg (the same compositing as the
E-NET training data). Known exactly: the all-in-focus image, the radius map
(r_fg where the mask is >= 50 %, r_bg elsewhere) and the in-focus mask.
"""

import json
import sys
from pathlib import Path

import numpy as np

from defocus.datasets import salient_pool, sharp_pool
from defocus.images import atomic_dir, load_image, load_mask, save_json, save_npy, save_png, to_uint8
from defocus.params import load_params
from defocus.synthesis import composite, fit_background

RAW, OUT, SUMMARY = Path("data/raw"), Path("data/synth/test"), Path("reports/data/synth_test.json")


def main() -> int:
    params = load_params()
    p, seed = params["synth_test"], params["seed"]
    manifest = json.loads((RAW / "manifest.json").read_text())
    objects = salient_pool(RAW, manifest, heldout=True)[: p["images"]]
    backgrounds = sharp_pool(RAW, manifest, heldout=True)
    with atomic_dir(OUT) as tmp:
        index = []
        if not objects or not backgrounds:
            print("synth_test: no held-out objects or photos: the synthetic test set is empty", file=sys.stderr)
        else:
            bg_radii = np.arange(p["bg_min"], p["bg_max"] + 1e-9, 0.25)
            for i, (oid, img_path, mask_path) in enumerate(objects):
                rng = np.random.default_rng([seed, 31, i])
                obj = load_image(img_path)
                mask = load_mask(mask_path, obj.shape[:2])
                bid, bg_path = backgrounds[i % len(backgrounds)]
                bg = fit_background(load_image(bg_path), obj.shape[:2], rng)
                r_fg = float(rng.choice(p["fg_radii"]))
                r_bg = float(rng.choice(bg_radii[bg_radii > r_fg]))
                blurry, _ = composite(obj, mask, bg, r_fg, r_bg)
                sharp, _ = composite(obj, mask, bg, 0.0, 0.0)
                name = f"t{i:03d}_{oid.split('/')[-1]}"
                save_png(tmp / f"{name}_blurry.png", to_uint8(blurry))
                save_png(tmp / f"{name}_sharp.png", to_uint8(sharp))
                save_png(tmp / f"{name}_focus.png", mask.astype(np.uint8) * 255)
                save_npy(tmp / f"{name}_radius.npy", np.where(mask, r_fg, r_bg).astype(np.float32))
                index.append({"name": name, "blurry": f"{name}_blurry.png", "sharp": f"{name}_sharp.png",
                              "focus": f"{name}_focus.png", "radius": f"{name}_radius.npy",
                              "object": oid, "background": bid, "r_fg": r_fg, "r_bg": r_bg})
        save_json(tmp / "index.json", {"entries": index, "focus": "255 = in focus (the object layer)"})
    save_json(SUMMARY, {"images": len(index)})
    print(f"synth_test: {len(index)} layered test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
