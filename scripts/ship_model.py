"""Ship a model trained by the pipeline as the project's default model (models/default).

Usage: python scripts/ship_model.py [SOURCE (data/models/pipeline)] [DEST (models/default)]

Copies the model folder (weights + model.json with params, data counts, machine and
validation metrics) and adds to model.json the commit it was shipped from, its RTF raw MAE (psi = 20, all pixels)
with Canny edges and, when the published reference is present, with the authors'
edge maps, and the same figures for the published weights, measured in this run.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from scipy.io import loadmat

from defocus import config
from defocus.estimate import estimate_blur
from defocus.images import load_image, load_mask
from defocus.metrics import raw_mae
from defocus.weights import load_model


def rtf_mae(model, rtf: Path, edge_dir: Path | None) -> dict[str, float]:
    out = {}
    for gt_path in sorted(rtf.glob("map_*.mat")):
        n = gt_path.stem.split("_", 1)[1]
        image = load_image(rtf / f"image_{n}.png")
        edges = load_mask(edge_dir / f"edge_{n}.png", image.shape[:2]) if edge_dir else None
        blur = estimate_blur(image, model, edges=edges, psi=20).blur
        out[n] = round(raw_mae(blur, loadmat(gt_path)["blurMap"]), 4)
    return out


def main(src: str = "data/models/pipeline", dest: str = "models/default") -> int:
    src, dest = Path(src), Path(dest)
    model = load_model(src)
    rtf, ref = config.shared_dir() / "data" / "rtf", config.reference_dir()
    result = {"protocol": "raw MAE, disk radius px, all 360x360 pixels, psi = 20"}
    if rtf.is_dir():
        result["this_model_canny"] = rtf_mae(model, rtf, None)
        if ref.is_dir():
            result["this_model_published_edges"] = rtf_mae(model, rtf, ref / "edges")
            published = load_model(ref)
            result["published_weights_canny"] = rtf_mae(published, rtf, None)
            result["published_weights_published_edges"] = rtf_mae(published, rtf, ref / "edges")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    info = json.loads((tmp / "model.json").read_text())
    info["rtf"] = result
    # the pipeline's own model.json has no commit id (a DVC output cannot name the commit that holds it)
    info["shipped_from_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                                 text=True).stdout.strip() or None
    (tmp / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
