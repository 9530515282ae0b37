"""The evaluation's methods, where their maps and timings are, and table formatting.

Every figure a report shows is read from files the pipeline wrote in the same
run; only :data:`PAPER_TABLE_I` and friends are quoted, and the reports label
them so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAPS, BASELINES = Path("data/eval/maps"), Path("data/eval/baselines")
#: run logs of timings: not DVC outputs (they differ from run to run), not in git
TIMES = Path("reports/timings")


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    root: Path
    #: model whose infer timings count, and which of them (see :func:`seconds`)
    model: str | None
    net_parts: tuple[str, ...]


METHODS = (
    Method("ours", "Ours (this pipeline's model)", MAPS, "ours", ("edges", "enet", "bnet")),
    Method("shipped", "Ours (shipped model, models/default)", MAPS, "shipped", ("edges", "enet", "bnet")),
    Method("published", "TIP-2022 published weights (reference)", MAPS, "published", ("edges", "enet", "bnet")),
    Method("zhuo_sim", "Zhuo & Sim 2011 (our implementation)", BASELINES, None, ()),
    Method("no_enet", "Ours without E-NET (all edges = pattern)", BASELINES, "ours", ("edges", "bnet_all_edges")),
    Method("psi0", "Ours, psi = 0", BASELINES, "ours", ("edges", "enet", "bnet")),
    Method("matting", "Ours, Laplacian-matting propagation", BASELINES, "ours", ("edges", "enet", "bnet")),
)

#: Quoted from the paper (Karaali, Harte & Jung, TIP 2022, Table I): raw MAE, its STD
#: over the 22 RTF scenes (where given), relative MAE, seconds per image (their machines).
PAPER_TABLE_I = (
    ("Zhuo & Sim 2011", 0.629, 0.205, 0.098, "5.60"),
    ("D'Andres et al. 2016", 0.197, None, 0.033, "~114"),
    ("Karaali & Jung 2018", 0.378, None, 0.063, "0.69"),
    ("Park et al. 2017", 0.307, None, 0.049, "7.02"),
    ("DMENet (Lee et al. 2019)", 0.611, None, 0.101, "0.14 (GPU)"),
    ("Liu et al. 2020", 0.180, None, 0.030, "~184"),
    ("Karaali, Harte & Jung 2022 (the paper)", 0.169, 0.068, 0.028, "4.55 (Python, GPU)"),
)
#: Quoted from the paper's ablation (raw MAE on RTF).
PAPER_ABLATION = {"psi0": 0.188, "matting": 0.288, "ours": 0.169}
#: Quoted from the paper, Table II (PSNR dB, SSIM) on its synthetic deblurring set.
PAPER_TABLE_II = (("Blurry input", 24.20, 0.782), ("Ground-truth map", 27.69, 0.885), ("The paper's maps", 27.00, 0.870))
#: Quoted from the paper, Fig. 9: best accuracy (%) on CUHK's 200-image test split.
PAPER_FIG9 = (("The paper", 79.96), ("DMENet", 88.11), ("Park et al. 2017", 82.53),
              ("Karaali & Jung 2018", 76.67), ("Zhuo & Sim 2011", 71.65))


def available(method: Method, item) -> bool:
    return (method.root / method.key / item.set / f"{item.name}.npy").is_file()


def load_map(method: Method, item) -> np.ndarray:
    return np.load(method.root / method.key / item.set / f"{item.name}.npy").astype(np.float64)


def load_times(folder: str | Path = TIMES) -> dict:
    """The timings the infer, propagate and baselines stages wrote (in ``folder``), by
    stage (``infer``, ``main``, ``baselines``); a missing file gives an empty entry."""
    out = {}
    for which in ("infer", "main", "baselines"):
        path = Path(folder) / f"times_{which}.json"
        out[which] = json.loads(path.read_text()) if path.is_file() else {}
    return out


def seconds(method: Method, item, times: dict) -> float:
    """Seconds this method spent on one image on this machine: the network parts
    (edges, E-NET, B-NET, from the infer stage) plus the propagation; nan if unknown.
    ``times`` is :func:`load_times`."""
    try:
        total = times["main" if method.root == MAPS else "baselines"][method.key][item.set][item.name]
        if method.model is not None:
            net = times["infer"][method.model][item.set][item.name]
            total += sum(net[k] for k in method.net_parts)
    except KeyError:
        return math.nan
    return float(total)


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
