"""Stage synth_bnet: every sharp photo blurred whole with each of the 23 disk radii."""

import json
import sys
from pathlib import Path

from tqdm import tqdm

from defocus.datasets import sharp_pool
from defocus.images import atomic_dir, load_image, save_json, save_png, to_uint8
from defocus.levels import BLUR_RADII
from defocus.params import load_params
from defocus.patchsets import split_ids
from defocus.synthesis import disk_blur

RAW, OUT, SUMMARY = Path("data/raw"), Path("data/synth/bnet"), Path("reports/data/synth_bnet.json")


def main() -> int:
    params = load_params()
    manifest = json.loads((RAW / "manifest.json").read_text())
    pool = sharp_pool(RAW, manifest)[: params["synth_bnet"]["images"]]  # all readable (download checked them)
    split = split_ids([i for i, _ in pool], params["split"]["val_fraction"], params["seed"])
    with atomic_dir(OUT) as tmp:
        index, used = [], len(pool)
        for sid, path in tqdm(pool, desc="synth_bnet", unit="img", disable=not sys.stderr.isatty()):
            sharp = load_image(path)
            for level, radius in enumerate(BLUR_RADII):
                name = f"{sid.replace('/', '_')}_l{level:02d}.png"
                save_png(tmp / name, to_uint8(disk_blur(sharp, radius)))
                index.append({"file": name, "source": sid, "split": split[sid], "label": level, "radius": float(radius)})
        save_json(tmp / "index.json", {"entries": index})
    n_split = {s: len({e["source"] for e in index if e["split"] == s}) for s in ("train", "val")}
    size = sum(f.stat().st_size for f in OUT.iterdir())
    save_json(SUMMARY, {"sources": used, "sources_per_split": n_split, "images": len(index),
                         "levels": len(BLUR_RADII), "megabytes": round(size / 2**20, 1)})
    print(f"synth_bnet: {used} photos ({n_split['train']} train, {n_split['val']} val) x {len(BLUR_RADII)} radii "
          f"= {len(index)} images, {size / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
