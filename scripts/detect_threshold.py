"""Measure the blur threshold of `defocus detect` for a model, and store it in its model.json.

Usage: python scripts/detect_threshold.py MODEL_DIR [--write] [--dbd DIR]

Runs `defocus estimate`'s pipeline (Canny edges, dense path, psi = 100, the CLI's defaults)
with the model on the blur-detection set (default: the mirror's dbd/dut: images/*.jpg and
gt/*.bmp, white = in focus), sweeps an absolute threshold t on the blur map (disk radius, px;
in focus where blur <= t) from 0 to 6 px in 0.05 px steps, and prints the mean per-image
accuracy of the best one. With --write (defocus model folders only) it stores
{"threshold_px", "accuracy", "images", "psi"} as "detect" in MODEL_DIR/model.json, where
`defocus detect` takes its default from.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from defocus import config
from defocus.estimate import DEFAULT_PSI, estimate_blur
from defocus.images import load_image, load_mask
from defocus.weights import load_model

STEP = 0.05


def measure(model, dbd: Path) -> dict:
    images = sorted((dbd / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"{dbd}: no images/*.jpg")
    thresholds = np.round(np.arange(0.0, 6.0 + STEP / 2, STEP), 4)
    acc = []
    for path in images:
        image = load_image(path)
        focus = load_mask(dbd / "gt" / f"{path.stem}.bmp", image.shape[:2])  # True = in focus
        blur = estimate_blur(image, model, psi=DEFAULT_PSI).blur
        acc.append([float(((blur <= t) == focus).mean()) for t in thresholds])
    mean = np.mean(acc, axis=0)
    best = int(np.argmax(mean))
    return {"threshold_px": float(thresholds[best]), "accuracy": round(float(mean[best]), 4),
            "images": len(images), "set": os.path.relpath(dbd), "psi": DEFAULT_PSI}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--dbd", type=Path, default=config.shared_dir() / "data" / "dbd" / "dut")
    parser.add_argument("--write", action="store_true", help="store the result in MODEL/model.json")
    args = parser.parse_args()
    model = load_model(args.model)
    result = measure(model, args.dbd)
    print(json.dumps(result, indent=2))
    if args.write:
        info_path = args.model / "model.json"
        if not info_path.is_file():
            raise SystemExit(f"{info_path}: not a defocus model folder (no model.json)")
        info = json.loads(info_path.read_text())
        info["detect"] = result
        info_path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        print(f"wrote detect.threshold_px {result['threshold_px']} to {info_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
