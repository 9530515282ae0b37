"""MAE of blur maps (.npy) against the RTF ground truth, computed from the files alone.

Usage: python scripts/rtf_mae.py RESULTS_DIR RTF_DIR

For every RTF_DIR/map_XX.mat with a RESULTS_DIR/image_XX_blur.npy, prints the raw
MAE in disk-radius px over all pixels (no crop), then the mean and STD over scenes.
Deliberately uses nothing from the defocus package.
"""

import sys
from pathlib import Path

import numpy as np
from scipy.io import loadmat


def main(results: str, rtf: str) -> int:
    rows = []
    for gt_path in sorted(Path(rtf).glob("map_*.mat")):
        n = gt_path.stem.split("_", 1)[1]
        est_path = Path(results) / f"image_{n}_blur.npy"
        if not est_path.is_file():
            print(f"scene {n}: no {est_path}")
            continue
        gt = loadmat(gt_path)["blurMap"].astype(np.float64)
        est = np.load(est_path).astype(np.float64)
        if est.shape != gt.shape:
            print(f"scene {n}: shape {est.shape} != ground truth {gt.shape}")
            return 1
        mae = float(np.abs(est - gt).mean())
        rows.append(mae)
        print(f"scene {n}: raw MAE {mae:.4f} px")
    if not rows:
        print("no scene evaluated")
        return 1
    print(f"mean over {len(rows)} scenes: {np.mean(rows):.4f} +- {np.std(rows):.4f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
