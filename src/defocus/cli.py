"""Command line: ``defocus estimate photo.jpg [more.jpg ...] --out results/``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import edges as edges_mod

PROG = "defocus"


def _error(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)


#: Blur (disk radius, px) up to which `defocus detect` calls a pixel in focus when the model's
#: model.json has no measured "detect" threshold: measured with the published TIP-2022 weights
#: on the mirror's 5 DUT blur-detection images (scripts/detect_threshold.py; accuracy 0.910).
DEFAULT_DETECT_THRESHOLD = 1.05


def _add_map_command(sub, name: str, help: str, description: str, outputs: tuple[str, ...], write):
    """A command that estimates each photo's map (`estimate`'s inputs and options, run by
    :func:`cmd_estimate`) and writes ``<stem>_<output>`` files with ``write``."""
    from .estimate import DEFAULT_BATCH, DEFAULT_PSI, DEFAULT_TILE, GPU_TILE, METHODS, SINGLE_TILE
    from .hardware import DENSE_PRECISIONS

    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=cmd_estimate, outputs=outputs, write=write)
    p.add_argument("images", nargs="+", type=Path, help="input photos (PNG, JPEG, TIFF, ...)")
    p.add_argument("--out", "-o", type=Path, default=Path("results"), help="output folder (default: results)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder: one trained by this pipeline, or the published TIP-2022 weights folder "
        "(blur/*.mat, edge/*.mat). Default: $DEFOCUS_MODEL, else models/default, else the published weights "
        "under $DEFOCUS_REFERENCE (../shared/reference/tip2022)",
    )
    p.add_argument(
        "--edges",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="edge maps to use instead of Canny, one per input image in the same order (white = edge)",
    )
    p.add_argument("--psi", type=float, default=DEFAULT_PSI, help=f"depth-edge penalty (default {DEFAULT_PSI:g})")
    p.add_argument("--canny-sigma", type=float, default=edges_mod.CANNY_SIGMA, help="Canny Gaussian sigma, px")
    p.add_argument("--canny-low", type=float, default=edges_mod.CANNY_LOW, help="Canny low threshold")
    p.add_argument("--canny-high", type=float, default=edges_mod.CANNY_HIGH, help="Canny high threshold")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="dense",
        help="dense: shared convolutions once per image, in tiles (fast, default); "
        "patch: each edge pixel's patch through the whole network (the reference)",
    )
    p.add_argument(
        "--tile", type=int, default=None,
        help=f"tile side in px for --method dense (default: {DEFAULT_TILE}; one tile for a photo of at most "
        f"{SINGLE_TILE} px a side where that is faster: with oneDNN, or under JAX; {GPU_TILE} on a GPU for "
        "larger photos: lower it on a GPU with little memory)",
    )
    p.add_argument(
        "--precision", choices=DENSE_PRECISIONS, default="float32",
        help="compute dtype of --method dense: float32 (default: the reference's probabilities) or bfloat16 "
        "(1.6-2.1x faster measured on a CPU with AVX512-BF16; slower where bfloat16 is emulated, and not faster "
        "on an H200 under JAX; the maps differ slightly, see README)",
    )
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help=f"patches per network call, --method patch ({DEFAULT_BATCH})"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or per-image lines")
    return p


def _add_estimate(sub) -> None:
    _add_map_command(
        sub, "estimate", "blur map of one or more photos",
        "Estimate a dense defocus blur map (disk radius in px) for each photo. "
        "Writes <stem>_blur.npy (float32 HxW), <stem>_blur.png (colour map with colour bar) "
        "and <stem>_edges.png (pattern edges blue, depth edges red).",
        ("blur.npy", "blur.png", "edges.png"), _write_estimate)


def _add_deblur(sub) -> None:
    from .deblur import DEFAULT_BALANCE

    p = _add_map_command(
        sub, "deblur", "sharpen photos with their estimated blur map",
        "Estimate each photo's blur map as `defocus estimate` does, then remove the blur by the "
        "paper's non-blind deconvolution driven by the map (Wiener-Hunt per 0.25 px level of the disk PSF, "
        "blended per pixel; defocus.deblur). Writes <stem>_deblurred.png.",
        ("deblurred.png",), _write_deblur)
    p.add_argument("--balance", type=float, default=DEFAULT_BALANCE,
                   help=f"Wiener-Hunt balance: larger = smoother, less ringing ({DEFAULT_BALANCE:g})")


def _add_detect(sub) -> None:
    p = _add_map_command(
        sub, "detect", "in-focus / blurred mask of photos",
        "Estimate each photo's blur map as `defocus estimate` does and call a pixel in focus where "
        "its blur is at most the threshold. Writes <stem>_focus.png (255 = in focus, 0 = blurred).",
        ("focus.png",), _write_detect)
    p.add_argument("--threshold", type=float, default=None,
                   help="blur (disk radius, px) up to which a pixel is in focus; default: the value measured for "
                   "the model (its model.json's detect.threshold_px), else "
                   f"{DEFAULT_DETECT_THRESHOLD:g} (measured with the published weights)")


def detect_threshold(model, threshold: float | None = None) -> float:
    """The threshold `defocus detect` uses: ``threshold``, else the model's measured one, else the default."""
    if threshold is not None:
        return float(threshold)
    return float(model.meta.get("detect", {}).get("threshold_px", DEFAULT_DETECT_THRESHOLD))


def _outputs(out: Path, stem: str, names) -> dict[str, Path]:
    return {k: out / f"{stem}_{k}" for k in names}


def _write_estimate(image, est, args, outs, path, model) -> str:
    from .images import save_npy, save_png
    from .viz import edge_overlay, save_blur_png

    save_npy(outs["blur.npy"], est.blur)
    save_blur_png(outs["blur.png"], est.blur, title=path.name)
    save_png(outs["edges.png"], edge_overlay(image, est.pattern, est.depth))
    return f"-> {outs['blur.npy']}"


def _write_deblur(image, est, args, outs, path, model) -> str:
    from .deblur import deblur
    from .images import save_png, to_uint8

    save_png(outs["deblurred.png"], to_uint8(deblur(image, est.blur, balance=args.balance)))
    return f"-> {outs['deblurred.png']}"


def _write_detect(image, est, args, outs, path, model) -> str:
    import numpy as np

    from .images import save_png

    t = detect_threshold(model, args.threshold)
    focus = est.blur <= t
    save_png(outs["focus.png"], focus.astype(np.uint8) * 255)
    return f"{100 * focus.mean():.1f} % in focus (blur <= {t:g} px) -> {outs['focus.png']}"


def _estimate_one(path: Path, edge_path: Path | None, model, args, outs: dict[str, Path]) -> str:
    import numpy as np
    from tqdm import tqdm

    from .estimate import estimate_blur
    from .images import load_image, load_mask

    t0 = time.perf_counter()
    image = load_image(path)
    h, w = image.shape[:2]
    edge_map = load_mask(edge_path, (h, w)) if edge_path is not None else None
    canny = {"sigma": args.canny_sigma, "low": args.canny_low, "high": args.canny_high}
    with tqdm(desc=path.name, unit="patch", delay=1.0, leave=False, disable=True if args.quiet else None) as bar:
        est = estimate_blur(
            image, model, edge_map, psi=args.psi, canny=canny, batch_size=args.batch_size, progress=bar,
            method=args.method, tile=args.tile, precision=args.precision,
        )
    def stamp(f: Path):
        return f.stat().st_mtime_ns if f.exists() else None

    before = {f: stamp(f) for f in outs.values()}
    try:
        done = args.write(image, est, args, outs, path, model)
    except BaseException:  # each file is written atomically: remove the ones this run wrote, keep older ones
        for f, t in before.items():
            if stamp(f) != t:
                f.unlink(missing_ok=True)
        raise
    n_edges = int(est.edges.sum())
    note = "" if n_edges else " (no edges found: the map is 0 everywhere)"
    if n_edges and not est.pattern.any():
        note = " (no pattern edges: the map is 0 everywhere)"
    return (
        f"{path}: {w}x{h} px, {n_edges} edges ({int(est.depth.sum())} depth), "
        f"blur {float(np.min(est.blur)):.2f}-{float(np.max(est.blur)):.2f} px, "
        f"{time.perf_counter() - t0:.1f} s {done}{note}"
    )


def _load_model(folder: Path | None):
    """The model in ``folder`` (or the default one); None after printing why not."""
    from . import config
    from .weights import ModelError, load_model

    folder = folder or config.default_model_dir()
    if folder is None:
        _error("no model found: pass --model (a trained model folder or the published TIP-2022 weights folder)")
        return None
    try:
        return load_model(folder)
    except ModelError as exc:
        _error(str(exc))
        return None


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    model = _load_model(args.model)
    if model is None:
        return 2
    try:
        return bench_main(args, model)
    except ValueError as exc:
        _error(str(exc))
        return 2


def cmd_estimate(args) -> int:
    from .images import ImageError

    if args.edges is not None and len(args.edges) != len(args.images):
        _error(f"--edges gives {len(args.edges)} file(s) for {len(args.images)} image(s); give one per image")
        return 2
    if args.batch_size < 1 or (args.tile is not None and args.tile < 1):
        _error(f"--batch-size and --tile must be >= 1, got {args.batch_size}, {args.tile}")
        return 2
    if args.method == "patch" and args.precision != "float32":
        _error(f"--method patch runs in float32 only; --precision {args.precision} is for --method dense")
        return 2
    if getattr(args, "balance", 1.0) <= 0:
        _error(f"--balance must be > 0, got {args.balance}")
        return 2
    if getattr(args, "threshold", None) is not None and args.threshold < 0:
        _error(f"--threshold must be >= 0 px, got {args.threshold}")
        return 2
    if not 0 <= args.canny_low <= args.canny_high:
        _error(f"Canny thresholds must satisfy 0 <= low <= high, got {args.canny_low}, {args.canny_high}")
        return 2
    model = _load_model(args.model)
    if model is None:
        return 2

    failures = 0
    seen: dict[str, Path] = {}
    for i, path in enumerate(args.images):
        stem = path.stem
        if stem in seen:
            _error(f"{path}: same name as {seen[stem]}; its outputs would overwrite the earlier ones (skipped)")
            failures += 1
            continue
        seen[stem] = path
        try:
            outs = _outputs(args.out, stem, args.outputs)
            line = _estimate_one(path, args.edges[i] if args.edges else None, model, args, outs)
        except (ImageError, ValueError, OSError) as exc:
            _error(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            failures += 1
            continue
        if not args.quiet:
            print(line, flush=True)
    if failures:
        _error(f"{failures} of {len(args.images)} image(s) failed")
        return 1
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time the per-patch and dense paths",
        description="Times, in one run, the per-patch and the dense evaluation on the RTF images (Canny edges, "
        "psi = 100) and the dense path on a large synthetic image; prints per-stage seconds, speed-up, patches "
        "per second and peak memory, and writes them as JSON.",
    )
    p.add_argument("--model", type=Path, default=None, help="model folder (default as for estimate)")
    p.add_argument("--rtf", type=Path, default=None, help="folder with image_XX.png (default: the dataset mirror's rtf/)")
    p.add_argument("--repeat", type=int, default=5, help="dense runs per image; the median is reported (5)")
    p.add_argument("--large", default="4000x3000", help="WxH of the large image (also run at half size); 0 to skip")
    p.add_argument("--no-patch", action="store_true", help="skip the (slow) per-patch path")
    p.add_argument("--bfloat16", choices=("auto", "on", "off"), default="auto",
                   help="also time the dense path in bfloat16 (estimate --precision bfloat16) and measure how far "
                   "its maps are from float32's; auto: where the CPU (AVX512-BF16, TensorFlow with oneDNN) or GPU "
                   "computes bfloat16 natively (auto)")
    p.add_argument("--out", type=Path, default=Path("reports/bench.json"), help="JSON report (reports/bench.json)")
    p.add_argument("--backends", default="all",
                   help="also run under these backends, each in its own process: all (default: every installed "
                        "one), this (only this process's), or a comma-separated list (tensorflow,jax)")
    p.set_defaults(func=cmd_bench)


def cmd_bench_train(args) -> int:
    from . import hardware

    hardware.use_kernels("train")  # before TensorFlow loads
    from .bench import train_main

    try:
        return train_main(args)
    except (ValueError, OSError) as exc:
        _error(str(exc))
        return 2


def _add_bench_train(sub) -> None:
    p = sub.add_parser(
        "bench-train",
        help="training samples per second, per patch (and dense where there are tiles)",
        description="Times, in one run, training steps of a fresh network per patch (drawn from the patch set's "
        "training positions, augmented) and, if the set has training tiles (patches.tile > 0), dense; prints "
        "samples (labelled edge pixels) per second and the ratio; writes them as JSON.",
    )
    p.add_argument("--patches", type=Path, default=Path("data/patches/bnet"), help="patch set (data/patches/bnet)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per path (30)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per step (256)")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "mixed_bfloat16"),
                   help="Keras dtype policy; auto: mixed_bfloat16 where the CPU/GPU computes bfloat16 natively, "
                   "else float32 (auto)")
    p.add_argument("--benchmark", type=Path, default=None,
                   help="also train a fresh network until it reaches --target exact accuracy on this benchmark set "
                   "(e.g. data/benchmark/bnet, dvc repro benchmark) and print the time it took")
    p.add_argument("--target", type=float, default=0.5, help="exact accuracy to reach on --benchmark (0.5)")
    p.add_argument("--cap-minutes", type=float, default=30.0, help="training minutes before giving up (30)")
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds of training between measurements (120)")
    p.add_argument("--out", type=Path, default=Path("reports/bench_train.json"), help="JSON report")
    p.add_argument("--backends", default="all",
                   help="also run under these backends, each in its own process: all (default: every installed "
                        "one), this, or a comma-separated list (tensorflow,jax)")
    p.set_defaults(func=cmd_bench_train)


def cmd_profile(args) -> int:
    import yaml

    from .params import apply_profile

    path = args.profile if args.profile.suffix else Path("profiles") / f"{args.profile}.yaml"
    if not path.is_file():
        _error(f"{path}: no such profile (profiles/: {', '.join(sorted(p.stem for p in Path('profiles').glob('*.yaml')))})")
        return 2
    try:
        changed = apply_profile(path, args.params)
    except (KeyError, ValueError, OSError, yaml.YAMLError) as e:
        _error(f"{path}: {e}")
        return 2
    print(f"{args.params}: set {', '.join(changed)} from {path}")
    return 0


def _add_profile(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="write a size profile (tiny, paper, or a YAML file) into params.yaml",
        description="Writes the values of profiles/NAME.yaml (or a YAML file with params.yaml's sections) into "
        "params.yaml, keeping its comments. `git checkout params.yaml` returns to the default profile.",
    )
    p.add_argument("profile", type=Path, help="tiny, paper, or a path to a .yaml file")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="the file to edit (params.yaml)")
    p.set_defaults(func=cmd_profile)


def cmd_summary(args) -> int:
    from .summary import main as summary_main

    return summary_main(args.root)


def _add_summary(sub) -> None:
    p = sub.add_parser(
        "summary",
        help="the pipeline's results on one screen",
        description="Prints Table I's mean MAE per method, Table II's PSNR / SSIM, Fig. 9's best accuracy and the "
        "validation accuracy of training, from the reports `dvc repro` wrote, in at most 100 columns.",
    )
    p.add_argument("root", nargs="?", type=Path, default=Path("."), help="the repository (default: .)")
    p.set_defaults(func=cmd_summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Defocus blur estimation (Karaali, Harte & Jung, TIP 2022).")
    from .backend import NAMES  # the package only: Keras loads when a command needs it

    parser.add_argument("--backend", choices=NAMES, default=None,
                        help="Keras backend to run the networks on (default: $KERAS_BACKEND, else tensorflow)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_estimate(sub)
    _add_deblur(sub)
    _add_detect(sub)
    _add_bench(sub)
    _add_bench_train(sub)
    _add_profile(sub)
    _add_summary(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    args.argv = given[given.index(args.command) + 1 :]  # what follows the command's name
    if args.backend:
        from . import backend

        try:
            backend.use(args.backend)
        except RuntimeError as e:
            _error(str(e))
            return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
