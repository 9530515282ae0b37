"""The pipeline's results on one screen (``defocus summary``; the end of ``./run.sh``).

Reads what the stages wrote (``reports/eval/*.json``, the training summaries,
``reports/machine.json``, and this run's timings in ``reports/timings/``) and
formats Table I's mean MAE per method, Table II's PSNR / SSIM, Fig. 9's best
accuracy, where the full tables and figures are, and what to try next, in at
most :data:`WIDTH` columns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

WIDTH = 100
LABELS = {  # short method names (the reports have the long ones)
    "ours": "ours", "shipped": "ours, shipped model", "published": "published TIP-2022 weights",
    "zhuo_sim": "Zhuo & Sim 2011",
    "no_enet": "ours without E-NET", "psi0": "ours, psi = 0", "matting": "ours, matting propagation",
    "blurry": "blurry input (no deblurring)", "gt": "ground-truth map",
}
ORDER = ("ours", "shipped", "published", "zhuo_sim", "no_enet", "psi0", "matting")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _seconds(root: Path) -> dict[str, float]:
    """Median seconds per RTF image per method, from this run's timing log (empty if none)."""
    from types import SimpleNamespace

    from . import report

    times = report.load_times(root / report.TIMES)
    out = {}
    for m in report.METHODS:
        names = sorted(times.get("main" if m.root == report.MAPS else "baselines", {}).get(m.key, {}).get("rtf", {}))
        secs = [report.seconds(m, SimpleNamespace(set="rtf", name=n), times) for n in names]
        secs = [s for s in secs if not math.isnan(s)]
        if secs:
            out[m.key] = float(np.median(secs))
    return out


def summarize(root: str | Path = ".") -> str:
    """The summary as text (lines of at most :data:`WIDTH` characters)."""
    root = Path(root)
    ev = root / "reports" / "eval"
    lines = []
    machine = _load(root / "reports" / "machine.json") or {}
    prec = machine.get("precision", {})
    lines.append(f"defocus: results of this run ({machine.get('cpu_kind', 'unknown CPU')}, "
                 f"{machine.get('backend', '?')}, training in {prec.get('bnet', '?')})")
    t1 = _load(ev / "table1.json")
    if t1:
        secs = _seconds(root)
        lines += ["", f"Table I: RTF blur-map error, {t1.get('scenes', 0)} scenes (disk radius px)",
                  f"  {'method':<30} {'raw MAE':>8} {'+- STD':>7} {'rel. MAE':>9} {'s / image':>10}"]
        for key in ORDER:
            row = t1.get("rtf", {}).get(key)
            if not row:
                continue
            if not row.get("available"):
                lines.append(f"  {LABELS[key]:<30} {'unavailable':>8}")
                continue
            rel = row.get("relative_mae")
            lines.append(f"  {LABELS[key]:<30} {row['raw_mae']:>8.3f} {row['raw_mae_std']:>7.3f} "
                         f"{'n/a' if rel is None else f'{rel:.3f}':>9} "
                         f"{f'{secs[key]:.2f}' if key in secs else 'n/a':>10}")
    t2 = _load(ev / "table2.json")
    if t2:
        for set_name, res in t2.items():
            if not isinstance(res, dict) or not res.get("available", True):
                continue
            rows = [(k, v) for k, v in res.items() if isinstance(v, dict) and v.get("available")]
            if not rows:
                continue
            lines += ["", f"Table II: deblurring driven by each map, {set_name} set",
                      f"  {'blur map':<30} {'PSNR dB':>8} {'SSIM':>7}"]
            keys = [k for k in ("blurry", "gt", *ORDER) if k in dict(rows)]
            lines += [f"  {LABELS.get(k, k):<30} {res[k]['psnr']:>8.2f} {res[k]['ssim']:>7.3f}" for k in keys]
    f9 = _load(ev / "fig9.json")
    if f9:
        sets = [s for s in f9 if isinstance(f9[s], dict)]
        lines += ["", "Fig. 9: blur detection, best accuracy %",
                  f"  {'method':<30} " + " ".join(f"{s:>10}" for s in sets)]
        for key in ORDER:
            vals = [f9[s].get(key, {}) for s in sets]
            if any(v.get("available") for v in vals):
                lines.append(f"  {LABELS[key]:<30} " + " ".join(
                    f"{100 * v['best_accuracy']:>10.2f}" if v.get("available") else f"{'n/a':>10}" for v in vals))
    tr = {n: _load(root / "reports" / "train" / f"{n}_summary.json") for n in ("bnet", "enet")}
    if any(tr.values()):
        parts = []
        if tr["bnet"]:
            parts.append(f"B-NET {tr['bnet'].get('val_accuracy', math.nan):.3f} exact, "
                         f"{tr['bnet'].get('val_tolerance_accuracy', math.nan):.3f} within one level")
        if tr["enet"]:
            parts.append(f"E-NET {tr['enet'].get('val_accuracy', math.nan):.3f}")
        lines += ["", "Training, validation accuracy: " + "; ".join(parts)]
    bench = _load(root / "reports" / "eval" / "benchmark.json")
    if bench:
        names = {"this_run": "this run", "shipped": "shipped", "published": "published"}
        lines += ["", "Benchmark set (reports/eval/benchmark.md), B-NET exact / within one level, E-NET:"]
        for key in [k for k in names if k in bench]:
            b, e = bench[key].get("bnet", {}), bench[key].get("enet", {})
            lines.append(f"  {names.get(key, key):<12} B-NET {b.get('accuracy', math.nan):.3f} / "
                         f"{b.get('tolerance_accuracy', math.nan):.3f}   E-NET {e.get('accuracy', math.nan):.3f}")
    lines += ["", "Full tables: reports/eval/table1.md, table2.md, fig9.md; figures: reports/eval/figures.md",
              "Seconds per image are this machine's, from this run's log (reports/timings/).",
              "Next: dvc exp run -S psi=0     # re-runs only the stages psi touches",
              "      dvc metrics diff HEAD~1  # compare with the last commit's results",
              "      dvc plots show           # learning and precision-recall curves (dvc_plots/index.html)"]
    return "\n".join(line[:WIDTH] for line in lines)


def main(root: str | Path = ".") -> int:
    print(summarize(root))
    return 0
