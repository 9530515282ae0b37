"""Evaluation stages: the paper's tables and figures, from this run's blur maps.

Usage: python stages/evaluate.py table1|table2|fig9|gallery

* ``table1``: blur-map MAE on RTF (raw and relative).
* ``table2``: non-blind deblurring driven by each blur map, PSNR / SSIM.
* ``fig9``: blur detection by thresholding each map, precision-recall, best accuracy.
* ``gallery``: Fig. 7-like maps side by side, Fig. 6-like E-NET edge figure.

Each writes reports/eval/<name>.md (the table, with its protocol), a JSON of the
headline numbers (a DVC metric) and, for fig9, one precision-recall CSV per set
and method (DVC plots).
"""

import math
import sys
from pathlib import Path

import numpy as np

from defocus import metrics, report
from defocus.evalsets import eval_images, load_blurred_mask, load_radius
from defocus.images import atomic_write, load_image, save_json
from defocus.params import load_params
from defocus.report import METHODS, fmt, markdown_table

RAW, TEST, OUT = Path("data/raw"), Path("data/synth/test"), Path("reports/eval")


def _sets(p):
    return eval_images(RAW, TEST, p["max_images"], p["dbd_in_focus"], p["rtf_sharp"] or None)


def _publish(name: str, title: str, protocol: str, body: str, quoted: str, data: dict) -> None:
    """Write reports/eval/<name>.md (title, protocol, this run's tables, then the paper's
    figures under a "quoted" heading) and <name>.json (the DVC metric), and print the table."""
    text = (f"# {title} (this run)\n\n{protocol}\n{body}"
            f"\n## Quoted from the paper (not measured here)\n\n{quoted}")
    atomic_write(OUT / f"{name}.md", lambda tmp: Path(tmp).write_text(text))
    save_json(OUT / f"{name}.json", data)
    print(text)


def table1(params) -> None:
    p, psi = params["evaluate"], params["psi"]
    items = _sets(p)["rtf"]
    crop = int(p["crop_right"])
    conv_path = RAW / "rtf" / "convertion.mat"
    conv = metrics.load_conversion(conv_path) if conv_path.is_file() else None
    head = ["method", "raw MAE +- STD (px)", "relative MAE", *[it.name for it in items]]
    gts = [load_radius(it) for it in items]
    rows, out = [], {}
    for m in METHODS:
        if not items or not all(report.available(m, it) for it in items):
            rows.append([m.label, "unavailable", "", *["" for _ in items]])
            out[m.key] = {"available": False}
            continue
        maps = [report.load_map(m, it) for it in items]
        raw = [metrics.raw_mae(e, g, crop_right=crop) for e, g in zip(maps, gts, strict=True)]
        rel = ([metrics.relative_mae(e, g, conv, crop_right=crop) for e, g in zip(maps, gts, strict=True)]
               if conv is not None else [math.nan])
        label = m.label + (f", psi = {psi:g}" if m.key in ("ours", "shipped", "published") else "")
        rows.append([label, f"{np.mean(raw):.3f} +- {np.std(raw):.3f}", fmt(float(np.mean(rel))),
                     *[f"{x:.3f}" for x in raw]])
        out[m.key] = {"available": True, "raw_mae": round(float(np.mean(raw)), 4),
                      "raw_mae_std": round(float(np.std(raw)), 4),
                      "relative_mae": round(float(np.mean(rel)), 4) if conv is not None else None,
                      "per_scene": {it.name: round(x, 4) for it, x in zip(items, raw, strict=True)}}
    protocol = (f"Protocol: RTF scenes available here: {len(items)} ({', '.join(it.name for it in items) or 'none'}). "
                f"Raw MAE = mean |B - GT| in disk-radius px over "
                + ("all pixels (no crop)" if crop == 0 else f"all but the right {crop} columns")
                + ", averaged over scenes; +- is the STD over scenes. Relative MAE (DMENet protocol): both maps "
                "converted to Gaussian sigma with RTF's convertion.mat, clipped to [0, 3.275], divided by 3.275. "
                f"Canny edges (the pipeline's parameters) for every method; psi = {psi:g} unless the row says "
                "otherwise. Seconds per image are not part of this table (they differ from run to run): "
                "`defocus summary` prints them from this run's log, reports/timings/.\n")
    paper = markdown_table(["method (quoted from the paper, 22 RTF scenes)", "raw MAE +- STD", "relative MAE", "s / image"],
                           [[n, f"{a:.3f}" + (f" +- {s:.3f}" if s is not None else ""), f"{r:.3f}", t]
                            for n, a, s, r, t in report.PAPER_TABLE_I])
    abl = ", ".join(f"{k} {v:.3f}" for k, v in report.PAPER_ABLATION.items())
    _publish("table1", "Table I: blur-map error on RTF", protocol, markdown_table(head, rows),
             paper + f"\nPaper's ablation, raw MAE: {abl}.\n", {"rtf": out, "scenes": len(items), "crop_right": crop})


def table2(params) -> None:
    from defocus.deblur import deblur

    p = params["evaluate"]
    sets = _sets(p)
    body, out = [], {}
    for set_name in ("synthetic", "rtf"):
        items = [it for it in sets[set_name] if it.sharp is not None]
        body.append(f"## {set_name}: {len(items)} images with a sharp reference\n")
        if not items:
            why = ("no all-in-focus RTF images supplied (set evaluate.rtf_sharp)" if set_name == "rtf"
                   else "the synthetic test set is empty")
            body.append(f"unavailable: {why}\n")
            out[set_name] = {"available": False}
            continue
        rows_src = [("blurry", "Blurry input"), ("gt", "Ground-truth map")] + [(m.key, m.label) for m in METHODS]
        scores = {k: [] for k, _ in rows_src}
        for it in items:
            sharp, blurry = load_image(it.sharp), load_image(it.image)
            scores["blurry"].append((metrics.psnr(sharp, blurry), metrics.ssim(sharp, blurry)))
            maps = {"gt": load_radius(it)}
            maps.update({m.key: report.load_map(m, it) for m in METHODS if report.available(m, it)})
            for key, bmap in maps.items():
                restored = deblur(blurry, bmap, balance=p["deblur_balance"])
                scores[key].append((metrics.psnr(sharp, restored), metrics.ssim(sharp, restored)))
        rows, res = [], {}
        for key, label in rows_src:
            s = scores[key]
            if len(s) < len(items):
                rows.append([label, "unavailable", ""])
                res[key] = {"available": False}
                continue
            ps, ss = float(np.mean([a for a, _ in s])), float(np.mean([b for _, b in s]))
            rows.append([label, f"{ps:.2f}", f"{ss:.3f}"])
            res[key] = {"available": True, "psnr": round(ps, 3), "ssim": round(ss, 4)}
        body.append(markdown_table(["blur map used", "PSNR (dB)", "SSIM"], rows))
        out[set_name] = res
    protocol = ("Protocol: non-blind, spatially varying deconvolution (defocus.deblur: Wiener deconvolution "
                f"with a disk PSF for each 0.25 px radius level the map spans, balance {p['deblur_balance']}, each "
                "level's input first made consistent with its PSF where the map departs from the level, then "
                "per-pixel linear blending between the two nearest levels). PSNR and SSIM (scikit-image, data range 1, "
                "RGB) against the sharp image, averaged over images. Synthetic set: held-out salient object over a "
                "held-out photo, each layer disk-blurred (stage synth_test).\n")
    paper = markdown_table(["quoted from the paper (its own synthetic set)", "PSNR (dB)", "SSIM"],
                           [[n, f"{a:.2f}", f"{b:.3f}"] for n, a, b in report.PAPER_TABLE_II])
    _publish("table2", "Table II: deblurring driven by each blur map", protocol, "\n".join(body), paper, out)


def fig9(params) -> None:
    import csv

    from defocus import viz

    p = params["evaluate"]
    sets = _sets(p)
    alphas = np.linspace(0.0, 1.0, int(p["alphas"]))
    body, out, curves_by_set = [], {}, {}
    for set_name in ("dbd", "synthetic"):
        items = sets[set_name]
        body.append(f"## {set_name}: {len(items)} images\n")
        if not items:
            body.append("unavailable: no images in this set\n")
            out[set_name] = {"available": False}
            continue
        rows, res, curves = [], {}, {}
        for m in METHODS:
            if not all(report.available(m, it) for it in items):
                rows.append([m.label, "unavailable", ""])
                res[m.key] = {"available": False}
                continue
            counts = []
            for it in items:
                bmap = report.load_map(m, it)
                counts.append(metrics.detection_counts(bmap, load_blurred_mask(it, bmap.shape), alphas))
            curve = metrics.pr_curve(counts)
            acc, alpha = metrics.best_accuracy(curve)
            curves[m.label] = curve
            rows.append([m.label, f"{100 * acc:.2f}", f"{alpha:.2f}"])
            res[m.key] = {"available": True, "best_accuracy": round(float(acc), 4), "alpha": round(float(alpha), 3)}
            path = OUT / "pr" / set_name / f"{m.key}.csv"

            def write(tmp, curve=curve):
                with open(tmp, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["alpha", "recall", "precision", "accuracy"])
                    for i in range(len(alphas)):
                        w.writerow([f"{curve['alpha'][i]:.4f}", f"{curve['recall'][i]:.5f}",
                                    f"{curve['precision'][i]:.5f}", f"{curve['accuracy'][i]:.5f}"])
            atomic_write(path, write)
        body.append(markdown_table(["method", "best accuracy (%)", "alpha"], rows))
        out[set_name] = res
        curves_by_set[set_name] = curves
    viz.save_pr_figure(OUT / "figures" / "fig9_pr.png", curves_by_set)
    protocol = ("Protocol: blurred (out-of-focus) pixels are the positive class. For each image and alpha, "
                "tau = alpha * vmax + (1 - alpha) * vmin of that image's map; a pixel is predicted blurred when its "
                f"radius > tau. {len(alphas)} alphas in [0, 1]. Precision and recall from the counts summed over all "
                "images of a set; accuracy = mean over images of the pixel accuracy; best accuracy = its maximum over "
                "alpha (one alpha per method and set, as the paper). Masks: dbd uses "
                f"{p['dbd_in_focus']} = in focus; synthetic: the object layer is in focus.\n")
    paper = markdown_table(["quoted from the paper (CUHK, 200 test images)", "best accuracy (%)"],
                           [[n, f"{a:.2f}"] for n, a in report.PAPER_FIG9])
    _publish("fig9", "Fig. 9: defocus blur detection", protocol,
             "\n".join(body) + "\n![precision-recall](figures/fig9_pr.png)\n", paper, out)


def gallery(params) -> None:
    from defocus import viz
    from defocus.evalsets import decode_labels

    p = params["evaluate"]
    sets = _sets(p)
    shown = sets["rtf"] + sets["synthetic"][: p["gallery_synthetic"]]
    cols = [m for m in METHODS if any(report.available(m, it) for it in shown)]
    rows = []
    for it in shown:
        gt = load_radius(it)
        maps = [(m.label, report.load_map(m, it) if report.available(m, it) else None) for m in cols]
        rows.append((it.name, load_image(it.image), gt, maps))
    viz.save_gallery(OUT / "figures" / "gallery.png", rows)
    edge_rows = []
    for it in shown:
        image = load_image(it.image)
        panels = []
        for model in ("ours", "published"):
            f = Path("data/eval/labels") / model / it.set / f"{it.name}.npy"
            if f.is_file():
                pattern, depth, _ = decode_labels(np.load(f))
                panels.append((f"{model}: {int(pattern.sum())} pattern, {int(depth.sum())} depth",
                               viz.edge_overlay(image, pattern, depth)))
        edge_rows.append((it.name, panels))
    viz.save_edge_figure(OUT / "figures" / "enet_edges.png", edge_rows)
    text = ("# Figures (this run)\n\n"
            "Fig. 7-like: each image, its ground truth and every method's map on one colour scale "
            "(disk radius 0 to 6 px).\n\n![gallery](figures/gallery.png)\n\n"
            "Fig. 6-like: E-NET's decision at every Canny edge, pattern edges blue, depth edges red.\n\n"
            "![E-NET edges](figures/enet_edges.png)\n")
    atomic_write(OUT / "figures.md", lambda tmp: Path(tmp).write_text(text))
    print(f"gallery: {len(shown)} images x {len(cols)} methods -> {OUT / 'figures'}")


def main(what: str) -> int:
    params = load_params()
    {"table1": table1, "table2": table2, "fig9": fig9, "gallery": gallery}[what](params)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
