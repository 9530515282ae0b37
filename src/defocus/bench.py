"""Benchmark: per-patch vs dense evaluation, per stage, on RTF and on a large image.

Run with ``defocus bench``; prints a table and writes ``reports/bench.json``.
Speeds are compared as ratios within one run (these machines are noisy).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np

from . import config
from .estimate import DEFAULT_BATCH, DEFAULT_TILE, SINGLE_TILE, choose_tile, dense_model, estimate_blur, single_tile_pays


class PeakRSS:
    """Peak resident memory (bytes) of this process while the block runs,
    sampled from /proc every 5 ms (falls back to the lifetime peak elsewhere)."""

    def __enter__(self):
        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _now() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def machine_facts() -> dict:
    """The CPU (model, kind, the flags that choose kernels and precision), cores and versions."""
    from . import backend, hardware

    model, flags = hardware.cpu_info()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", *hardware.BF16_FLAGS)
    return {"cpu_model": model, "cpu_kind": hardware.cpu_kind(flags), "cpu_flags": [f for f in wanted if f in flags],
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "backend": backend.name(), **backend.versions(), "threads": backend.threads(),
            "devices": backend.device_count(), "gpus": [list(c) for c in backend.gpu_capabilities()]}


def _run(image, model, method: str, precision: str = "float32", tile: int | None = None) -> dict:
    """One full estimate (Canny edges, psi = 100) with per-stage seconds; ``tile`` None: the
    default (:func:`defocus.estimate.choose_tile`)."""
    seconds: dict = {}
    t0 = time.perf_counter()
    est = estimate_blur(image, model, method=method, timings=seconds, precision=precision, tile=tile)
    seconds["total"] = time.perf_counter() - t0
    n, n_blur = int(est.edges.sum()), int(est.pattern.sum())
    out = {"seconds": seconds, "edges": n, "patches": n + n_blur, "est": est}
    if method == "dense":  # the arithmetic of the networks' part (see conv_rate), with the tile it ran with
        ys, xs = np.nonzero(est.edges)
        out["tile"] = tile = tile or choose_tile(image.shape)
        out["network_gflop"] = 2 * dense_model(model, tile).macs(image.shape[:2], ys, xs, n_blur) / 1e9
    return out


def bfloat16_pays() -> bool:
    """Whether the dense path's bfloat16 option runs on bfloat16 hardware here: a GPU of
    compute capability 8.0 or more, or a CPU with AVX512-BF16 / AMX-BF16 under TensorFlow with
    oneDNN on (elsewhere bfloat16 is emulated, slower than float32)."""
    from . import backend, hardware

    gpus = backend.gpu_capabilities()
    if hardware.resolve_precision("auto", gpu_capabilities=gpus, backend=backend.name()) == "float32":
        return False
    return bool(gpus) or backend.onednn_enabled()


def precision_difference(ref, other) -> dict:
    """How far ``other`` (a :class:`~defocus.estimate.BlurEstimate` of the same image and edges)
    is from ``ref``: edge pixels whose decision changed (depth / pattern edge, or B-NET's class),
    and the blur maps' largest and mean absolute difference in px."""
    edges = ref.edges
    changed = (ref.depth != other.depth) | (ref.sparse != other.sparse)
    diff = np.abs(ref.blur - other.blur)
    return {"edge_decisions_changed": float(changed[edges].mean()) if edges.any() else 0.0,
            "max_abs_map_difference": float(diff.max()), "mean_abs_map_difference": float(diff.mean())}


def _best_seconds(call, repeat: int) -> float:
    """The shortest of ``repeat`` timed calls, after an untimed one (which traces and compiles): the
    rate a machine reaches, which other work on a shared machine can only lower."""
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(min(times))


def conv_rate(size: int = DEFAULT_TILE + 40, repeat: int = 20) -> dict:
    """This machine's rate on the dense path's main operation: a 3 x 3 convolution, 64 -> 64
    channels, dilated by 3, over one tile's map of ``size`` x ``size`` px (the backend's ``conv``,
    compiled), in GFLOP/s (2 per multiply-add), from the fastest of ``repeat`` runs. The networks'
    arithmetic divided by it is the time the dense path would take if every operation ran as fast
    as this one."""
    from . import backend
    from .backend import keras

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.random((1, size, size, 64), dtype=np.float32))
    w = keras.ops.convert_to_tensor((rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32))
    fn = backend.compile_fn(lambda a, k: backend.conv(a, k, 3), [((1, size, size, 64), "float32"), ((3, 3, 64, 64), "float32")])
    sec = _best_seconds(lambda: keras.ops.convert_to_numpy(fn(x, w)), repeat)
    return {"map_px": size, "seconds": sec, "gflops": 2 * (size - 6) ** 2 * 9 * 64 * 64 / sec / 1e9}


def matmul_rate(n: int = 2048, repeat: int = 5) -> dict:
    """This machine's float32 rate on an ``n`` x ``n`` matrix product, the densest operation there
    is, in GFLOP/s (the fastest of ``repeat`` runs): through the backend (compiled) and through
    NumPy (its BLAS). Beside :func:`conv_rate` it says how far the convolution is from what the
    CPU does at best."""
    from . import backend
    from .backend import keras

    rng = np.random.default_rng(1)
    a = rng.random((n, n), dtype=np.float32)
    t = keras.ops.convert_to_tensor(a)
    fn = backend.compile_fn(lambda u, v: keras.ops.matmul(u, v), [((n, n), "float32"), ((n, n), "float32")])
    flop = 2 * n**3 / 1e9
    return {"n": n, "backend_gflops": flop / _best_seconds(lambda: keras.ops.convert_to_numpy(fn(t, t)), repeat),
            "numpy_gflops": flop / _best_seconds(lambda: a @ a, repeat)}


def _median_stages(runs: list[dict]) -> dict:
    return {k: float(np.median([r["seconds"][k] for r in runs])) for k in runs[0]["seconds"]}


def _fmt_stages(s: dict) -> str:
    return "  ".join(f"{k} {v:7.3f}" for k, v in s.items())


def _large_image(rtf_images, size) -> np.ndarray:
    import cv2

    w, h = size
    if rtf_images:
        picks = [rtf_images[i % len(rtf_images)] for i in range(3)]
        tiles = [cv2.resize(im, (w - w // 2, h - h // 2), interpolation=cv2.INTER_CUBIC) for im in picks]
        tiles.append(tiles[0][::-1, ::-1])
        img = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
    else:
        from skimage import data

        img = cv2.resize(data.astronaut().astype(np.float32) / 255, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img[:h, :w], 0, 1).astype(np.float32)


def bench(model, rtf_dir: Path | None, repeat: int = 5, large=(4000, 3000), patch: bool = True, log=print,
          bfloat16: bool | None = None) -> dict:
    """Time both paths; return the report (also printed through ``log``).

    ``bfloat16``: also time the dense path's bfloat16 option and measure its difference from
    float32 (None: where :func:`bfloat16_pays`)."""
    from .backend import onednn_enabled
    from .images import load_image

    if bfloat16 is None:
        bfloat16 = bfloat16_pays()
    report = {
        "machine": dict(machine_facts(), onednn=onednn_enabled()),
        "model": model.source, "tile": DEFAULT_TILE, "single_tile": SINGLE_TILE if single_tile_pays() else None,
        "batch_size": DEFAULT_BATCH, "repeat": repeat, "rtf": [],
        "bfloat16": bool(bfloat16),
    }
    m = report["machine"]
    log(f"{m['cpu_model']} ({m['cpu_kind']}), {m['cpus']} cores, backend {m['backend']}, "
        f"oneDNN {'on' if m['onednn'] else 'off'}")
    paths = sorted(Path(rtf_dir).glob("image_*.png")) if rtf_dir and Path(rtf_dir).is_dir() else []
    images = [load_image(p) for p in paths]
    if not paths:
        log(f"no RTF images found in {rtf_dir}; timing the large image only")
    warm = images[0] if images else _large_image([], (360, 360))
    _run(warm, model, "dense")  # warm-up: traces the graphs
    if choose_tile(warm.shape) != DEFAULT_TILE:
        _run(warm, model, "dense", tile=DEFAULT_TILE)
    if bfloat16:
        _run(warm, model, "dense", "bfloat16")
    for path, img in zip(paths, images, strict=True):
        runs = [_run(img, model, "dense") for _ in range(repeat)]
        d = _median_stages(runs)
        row = {"image": path.name, "edges": runs[0]["edges"], "patches": runs[0]["patches"], "dense": d,
               "network_gflop": runs[0]["network_gflop"], "tile": runs[0]["tile"]}
        log(f"{path.name}: {runs[0]['edges']} edges, {runs[0]['patches']} network evaluations")
        log(f"  dense  (median of {repeat}, tile {row['tile']} px): {_fmt_stages(d)}")
        if row["tile"] != DEFAULT_TILE:  # what the single tile saves, in this run
            runs_t = [_run(img, model, "dense", tile=DEFAULT_TILE) for _ in range(repeat)]
            row["dense_default_tile"] = _median_stages(runs_t)
            row["default_tile_max_abs_map_difference"] = float(np.abs(runs_t[0]["est"].blur - runs[0]["est"].blur).max())
            log(f"  dense  (median of {repeat}, tiles of {DEFAULT_TILE} px): {_fmt_stages(row['dense_default_tile'])}; "
                f"the single tile {row['dense_default_tile']['total'] / d['total']:.2f}x faster, max |map difference| "
                f"{row['default_tile_max_abs_map_difference']:.2e} px")
        if bfloat16:
            runs_bf = [_run(img, model, "dense", "bfloat16") for _ in range(repeat)]
            row["dense_bfloat16"] = _median_stages(runs_bf)
            row["bfloat16_difference"] = precision_difference(runs[0]["est"], runs_bf[0]["est"])
            diff = row["bfloat16_difference"]
            log(f"  dense bfloat16 (median of {repeat}): {_fmt_stages(row['dense_bfloat16'])}; "
                f"{d['total'] / row['dense_bfloat16']['total']:.2f}x float32; "
                f"{100 * diff['edge_decisions_changed']:.2f} % of edge decisions changed, map difference "
                f"mean {diff['mean_abs_map_difference']:.4f} px, max {diff['max_abs_map_difference']:.3f} px")
        if patch:
            with PeakRSS() as mem:
                p = _run(img, model, "patch")
            ps = p["seconds"]
            row["patch"] = ps
            row["patch_peak_rss_gb"] = mem.peak / 2**30
            row["max_abs_map_difference"] = float(np.abs(p["est"].blur - runs[0]["est"].blur).max())
            row["speedup_networks"] = (ps["enet"] + ps["bnet"]) / (d["enet"] + d["bnet"])
            row["speedup_total"] = ps["total"] / d["total"]
            row["patches_per_s"] = {"patch": p["patches"] / (ps["enet"] + ps["bnet"]),
                                    "dense": runs[0]["patches"] / (d["enet"] + d["bnet"])}
            log(f"  patch  (1 run):          {_fmt_stages(ps)}")
            log(f"  speed-up: networks {row['speedup_networks']:.1f}x, whole estimate {row['speedup_total']:.1f}x; "
                f"patches/s: patch {row['patches_per_s']['patch']:.0f}, dense {row['patches_per_s']['dense']:.0f}; "
                f"max |map difference| {row['max_abs_map_difference']:.2e} px")
        report["rtf"].append(row)
    if report["rtf"]:
        totals = [r["dense"]["total"] for r in report["rtf"]]
        report["dense_median_total_s"] = float(np.median(totals))
        log(f"median full dense estimate per RTF image: {report['dense_median_total_s']:.3f} s")
        if all("dense_default_tile" in r for r in report["rtf"]):
            report["dense_default_tile_median_total_s"] = float(np.median([r["dense_default_tile"]["total"]
                                                                           for r in report["rtf"]]))
            log(f"  with tiles of {DEFAULT_TILE} px: {report['dense_default_tile_median_total_s']:.3f} s")
        if bfloat16:
            report["dense_bfloat16_median_total_s"] = float(np.median([r["dense_bfloat16"]["total"] for r in report["rtf"]]))
            log(f"  in bfloat16: {report['dense_bfloat16_median_total_s']:.3f} s")
        conv = report["conv"] = conv_rate()
        for r in report["rtf"]:
            r["networks_at_conv_rate_s"] = r["network_gflop"] / conv["gflops"]
        nets = float(np.median([r["dense"]["enet"] + r["dense"]["bnet"] for r in report["rtf"]]))
        gflop = float(np.median([r["network_gflop"] for r in report["rtf"]]))
        conv["networks_median_s"], conv["network_gflop_median"] = nets, gflop
        log(f"networks per RTF image: {gflop:.0f} GFLOP of dense maps and heads; a 3 x 3 x 64 convolution "
            f"runs at {conv['gflops']:.0f} GFLOP/s here, so at that rate {gflop / conv['gflops']:.3f} s; "
            f"measured {nets:.3f} s ({gflop / conv['gflops'] / nets:.0%} of that rate)")
        mm = conv["matmul"] = matmul_rate()
        log(f"a {mm['n']} x {mm['n']} float32 matrix product runs at {mm['backend_gflops']:.0f} GFLOP/s here "
            f"(NumPy: {mm['numpy_gflops']:.0f}); the convolution at {conv['gflops'] / max(mm['backend_gflops'], mm['numpy_gflops']):.0%} "
            "of the faster")
    if large:
        report["large"] = []
        for scale in (0.5, 1.0):
            size = (int(large[0] * scale), int(large[1] * scale))
            img = _large_image(images, size)
            with PeakRSS() as mem:
                r = _run(img, model, "dense")
            mp = size[0] * size[1] / 1e6
            row = {"size": list(size), "megapixels": mp, "edges": r["edges"], "dense": r["seconds"],
                   "network_gflop": r["network_gflop"], "tile": r["tile"],
                   "seconds_per_megapixel": r["seconds"]["total"] / mp, "peak_rss_gb": mem.peak / 2**30}
            report["large"].append(row)
            log(f"large {size[0]}x{size[1]} ({mp:.1f} MP, {r['edges']} edges, tiles of {r['tile']} px): "
                f"{_fmt_stages(r['seconds'])}; "
                f"{row['seconds_per_megapixel']:.2f} s/MP; peak RSS {row['peak_rss_gb']:.2f} GB")
            if bfloat16 and scale == 1.0:
                row["dense_bfloat16"], row["bfloat16_peak_rss_gb"], row["bfloat16_difference"] = \
                    _large_bfloat16(img, model, r)
                diff = row["bfloat16_difference"]
                log(f"  in bfloat16: {_fmt_stages(row['dense_bfloat16'])}; peak RSS {row['bfloat16_peak_rss_gb']:.2f} GB; "
                    f"{100 * diff['edge_decisions_changed']:.2f} % of edge decisions changed, map difference mean "
                    f"{diff['mean_abs_map_difference']:.4f} px, max {diff['max_abs_map_difference']:.3f} px")
            del img, r
        report["photo"] = _photo_run(_large_image(images, large), model.source)
        ph = report["photo"]
        log(f"defocus estimate on a {large[0]}x{large[1]} PNG in a fresh process: {ph['seconds']:.1f} s "
            f"(its own count: {ph['estimate_seconds']:.1f} s from loading the photo to the written outputs), "
            f"peak RSS {ph['peak_rss_gb']:.2f} GB")
    return report


def _large_bfloat16(img, model, r: dict):
    """The large image's dense estimate in bfloat16: its seconds, its peak RSS and its distance from
    the float32 estimate in ``r``, which waits on disk meanwhile (so the peak is the bfloat16 run's
    as the float32 one's was its own, not inflated by the float32 maps kept for the comparison)."""
    import tempfile

    names = ("blur", "edges", "pattern", "depth", "sparse")
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "float32.npz"
        np.savez(saved, **{k: getattr(r["est"], k) for k in names})
        del r["est"]
        with PeakRSS() as mem:
            rb = _run(img, model, "dense", "bfloat16")
        with np.load(saved) as f:
            ref = type(rb["est"])(**{k: f[k] for k in names})
    return rb["seconds"], mem.peak / 2**30, precision_difference(ref, rb["est"])


#: Runs ``argv[2:]`` and writes its peak RSS (KiB) and exit status to the file ``argv[1]``. A child
#: started by a large process reports that process's high-water RSS as its own (Linux sets a
#: child's ``ru_maxrss`` from the address space it had until ``exec``: the parent's, shared or
#: copied), so the command is started from this small process instead of from the benchmark's.
_PEAK_RSS_RUNNER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n"
)


def run_with_peak_rss(cmd: list[str], **popen) -> tuple[int, float, float]:
    """Run ``cmd`` to its end: (exit status, wall seconds, the command's own peak RSS in GiB).

    Through a small Python process (:data:`_PEAK_RSS_RUNNER`), so that none of this process's
    memory counts, however large it is."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peak"
        t0 = time.perf_counter()
        runner = subprocess.run([sys.executable, "-c", _PEAK_RSS_RUNNER, str(out), *cmd], check=False, **popen)
        seconds = time.perf_counter() - t0
        if not out.exists():  # the runner itself failed (e.g. the command could not be started)
            raise RuntimeError(f"could not run {' '.join(map(str, cmd))} (exit status {runner.returncode})")
        kib, rc = (int(v) for v in out.read_text().split())
    return rc, seconds, kib * 1024 / 2**30


def _photo_run(image: np.ndarray, model_dir) -> dict:
    """``defocus estimate`` on ``image`` (written as a PNG) in a fresh process, as a user runs it:
    wall seconds, the seconds the command reports for the photo, and the process's peak RSS
    (nothing of this process's memory counts: :func:`run_with_peak_rss`)."""
    import re
    import sys
    import tempfile

    import cv2

    from . import backend
    from .images import to_uint8

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "photo.png"
        cv2.imwrite(str(png), np.ascontiguousarray(to_uint8(image)[:, :, ::-1]))
        cmd = [sys.executable, "-m", "defocus.cli", "--backend", backend.name(), "estimate", str(png),
               "--model", str(model_dir), "--out", str(Path(tmp) / "out")]
        log_out, log_err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(log_out, "w") as fo, open(log_err, "w") as fe:
            rc, seconds, peak_gb = run_with_peak_rss(cmd, stdout=fo, stderr=fe)
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {rc}: {log_err.read_text()[-2000:]}")
        found = re.search(r", ([0-9.]+) s ", log_out.read_text())
    h, w = image.shape[:2]
    return {"size": [w, h], "megapixels": w * h / 1e6, "seconds": seconds,
            "estimate_seconds": float(found.group(1)) if found else None,
            "peak_rss_gb": peak_gb, "command": "defocus estimate PHOTO.png"}


def main(args, model) -> int:
    """``defocus bench`` with parsed ``args`` and a loaded model."""
    rtf = args.rtf or config.shared_dir() / "data" / "rtf"
    large = None if args.large == "0" else tuple(int(v) for v in args.large.lower().split("x"))
    others = other_backends(args.backends)  # raises ValueError for an unknown name
    bf16 = {"auto": None, "on": True, "off": False}[args.bfloat16]
    report = bench(model, rtf, repeat=args.repeat, large=large, patch=not args.no_patch, bfloat16=bf16)
    _in_other_backends("bench", args, report, others)
    return _write_report(report, "bench", args)


def other_backends(requested: str) -> list[str]:
    """The installed backends to run besides this process's: ``all``, ``this`` (none) or a
    comma-separated list of backend names."""
    import importlib.util

    from . import backend

    if requested in ("this", ""):
        return []
    names = list(backend.NAMES) if requested == "all" else [n.strip() for n in requested.split(",") if n.strip()]
    bad = [n for n in names if n not in backend.NAMES]
    if bad:
        raise ValueError(f"--backends: unknown backend(s) {', '.join(bad)}; choose from all, this, "
                         f"{', '.join(backend.NAMES)}")
    return [n for n in names if n != backend.name() and importlib.util.find_spec(n) is not None]


def _in_other_backends(command: str, args, report: dict, others: list[str]) -> None:
    """Run ``defocus <command>`` with the same options under each backend of ``others`` (a fresh
    process each: Keras picks its backend once) and put their reports in ``report["backends"]``."""
    import subprocess
    import sys
    import tempfile

    from . import backend

    if not others:
        return
    keep, skip = [], False
    for a in args.argv:  # the same options, less --backends and --out
        if skip:
            skip = False
            continue
        if a in ("--backends", "--out"):
            skip = True
            continue
        if not a.startswith(("--backends=", "--out=")):
            keep.append(a)
    report["backends"] = {}
    summary = {backend.name(): _headline(command, report)}
    for name in others:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            cmd = [sys.executable, "-m", "defocus.cli", "--backend", name, command, *keep,
                   "--backends", "this", "--out", str(out)]
            print(f"--- {command} under {name} (a separate process) ---", flush=True)
            rc = subprocess.run(cmd).returncode
            report["backends"][name] = json.loads(out.read_text()) if rc == 0 and out.exists() else \
                {"error": f"defocus {command} under {name} exited with {rc}"}
        summary[name] = _headline(command, report["backends"][name])
    report["backend_summary"] = summary
    print("--- backends: " + "; ".join(f"{k}: {v}" for k, v in summary.items()), flush=True)


def _headline(command: str, report: dict) -> str:
    """One figure per backend for the comparison line."""
    if "error" in report:
        return report["error"]
    if command == "bench":
        t = report.get("dense_median_total_s")
        return f"{t:.3f} s per RTF image (dense, median)" if t is not None else "no RTF images"
    rate = report.get("patch", {}).get("samples_per_s")
    return f"{rate:.0f} training samples/s per patch ({report.get('precision')})" if rate else "no figure"


def _write_report(report: dict, command: str, args) -> int:
    """Record the command line in ``report`` and write it as JSON to ``args.out``."""
    chosen = f"--backend {args.backend} " if getattr(args, "backend", None) else ""
    report["command"] = f"defocus {chosen}{command} " + " ".join(args.argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------- training throughput
def train_bench(patches: Path, batch_size: int = 256, steps: int = 30, precision: str = "auto",
                log=print) -> dict:
    """Training samples per second of B-NET (or E-NET), per patch and, where the patch set
    has training tiles, dense, in one run.

    Both paths train a fresh network with Adam on the patch set's own data for
    ``steps`` steps of ``batch_size`` samples (labelled edge pixels), after 3
    warm-up steps that trace the graphs; a sample is one labelled edge pixel.
    """
    from . import backend, hardware, nets
    from .backend import gpu_capabilities, keras, onednn_enabled
    from .dense import DenseTrainer
    from .patchsets import TrainingSet, open_tiles
    from .train import PatchBatches, TileBatches, compile_net

    patches = Path(patches)
    samples = TrainingSet(patches, batch_size=batch_size)  # raises ValueError naming the folder
    tiles = open_tiles(patches)
    n_classes = int(np.load(patches / "val_y.npy", mmap_mode="r").max()) + 1 if (patches / "val_y.npy").exists() else 23
    build = nets.build_bnet if n_classes > 2 else nets.build_enet
    resolved = hardware.resolve_precision(precision, gpu_capabilities=gpu_capabilities(), backend=backend.name())
    keras.mixed_precision.set_global_policy(resolved)
    report = {"patches": str(patches), "batch_size": batch_size, "steps": steps, "precision": resolved,
              "precision_asked": precision, "network": "bnet" if n_classes > 2 else "enet",
              "tile": int(tiles["x"].shape[1]) - 40 if tiles else None,
              "tile_edges": int(tiles["pos"].shape[1]) if tiles else None,
              "machine": machine_facts(), "onednn": onednn_enabled(),
              "dense_dilation": "conv2d" if backend.trainable_conv() is backend.conv else "space_to_batch"}
    log(f"{report['machine']['cpu_model']} ({report['machine']['cpu_kind']}), {report['machine']['cpus']} cores; "
        f"backend {backend.name()}; "
        f"precision {resolved} (asked: {precision}); oneDNN {'on' if report['onednn'] else 'off'}; "
        f"dense dilation by {report['dense_dilation']}")
    for mode in ("patch", "dense") if tiles else ("patch",):
        keras.utils.set_random_seed(0)
        net = build()
        model = DenseTrainer(net) if mode == "dense" else net
        compile_net(model, 1e-3, tolerance=n_classes > 2)
        if mode == "dense":
            feed = TileBatches(tiles, batch_size, seed=0, epochs=10**6)
            it = (feed[i] for i in range(steps + 3))
        else:
            feed = PatchBatches(samples, steps + 3)
            it = (feed[i] for i in range(len(feed)))
        for _ in range(3):
            model.train_on_batch(*next(it))
        n, t0 = 0, time.perf_counter()
        for _ in range(steps):
            batch = next(it)
            n += int(np.sum(batch[2])) if mode == "dense" else len(batch[1])
            model.train_on_batch(*batch)
        seconds = time.perf_counter() - t0
        report[mode] = {"samples": n, "seconds": seconds, "samples_per_s": n / seconds}
        log(f"{mode:6s}: {n} samples in {seconds:.2f} s: {n / seconds:.0f} samples/s")
    keras.mixed_precision.set_global_policy("float32")
    if tiles:
        report["speedup"] = report["dense"]["samples_per_s"] / report["patch"]["samples_per_s"]
        log(f"dense training: {report['speedup']:.1f}x the samples per second of per-patch training "
            f"(tiles of {report['tile']} px, up to {report['tile_edges']} edge pixels each)")
    return report


def time_to_accuracy(patches: Path, benchmark: Path, target: float = 0.5, cap_minutes: float = 30.0,
                     batch_size: int = 256, precision: str = "auto", eval_every_s: float = 120.0,
                     eval_samples: int = 4600, log=print) -> dict:
    """Train a fresh B-NET (or E-NET) per patch until it reaches ``target`` exact accuracy on the
    benchmark set, or for ``cap_minutes`` of training.

    Accuracy is measured every ``eval_every_s`` seconds of training on the benchmark's first
    ``eval_samples`` patches (a seeded shuffled order, so all classes; the time spent measuring
    is not counted). Returns the training seconds and samples at which the target was first
    reached (None if not), the last accuracy and the curve.
    """
    from . import backend, hardware, nets
    from .backend import gpu_capabilities, keras
    from .benchmark import accuracy
    from .patchsets import TrainingSet, open_split
    from .train import PatchBatches, compile_net

    samples = TrainingSet(patches, batch_size=batch_size)
    bx, by = open_split(benchmark, "val")
    bx, by = bx[:eval_samples], by[:eval_samples]
    n_classes = int(np.max(by)) + 1 if len(by) else 23
    resolved = hardware.resolve_precision(precision, gpu_capabilities=gpu_capabilities(), backend=backend.name())
    keras.mixed_precision.set_global_policy(resolved)
    keras.utils.set_random_seed(0)
    net = (nets.build_bnet if n_classes > 2 else nets.build_enet)()
    compile_net(net, 1e-3, tolerance=False)
    feed = PatchBatches(samples, 10**9)
    trained, n, g, curve, reached = 0.0, 0, 0, [], None
    next_eval = eval_every_s
    while trained < 60 * cap_minutes:
        x, y = feed[g]
        t0 = time.perf_counter()
        net.train_on_batch(x, y)
        trained += time.perf_counter() - t0
        n, g = n + len(y), g + 1
        if trained >= next_eval or trained >= 60 * cap_minutes:
            acc = accuracy(net, bx, by)["accuracy"]
            curve.append({"seconds": round(trained, 1), "samples": n, "accuracy": round(acc, 4)})
            log(f"time-to-accuracy: {trained:.0f} s, {n} samples: {acc:.3f} exact on the benchmark")
            next_eval += eval_every_s
            if acc >= target:
                reached = {"seconds": round(trained, 1), "samples": n}
                break
    keras.mixed_precision.set_global_policy("float32")
    return {"target": target, "cap_minutes": cap_minutes, "precision": resolved, "batch_size": batch_size,
            "reached": reached, "accuracy": curve[-1]["accuracy"] if curve else None, "curve": curve,
            "benchmark": str(benchmark), "eval_samples": int(len(by))}


def train_main(args) -> int:
    """``defocus bench-train`` with parsed ``args`` (raises ValueError / OSError on a bad patch set)."""
    others = other_backends(args.backends)
    if args.benchmark is not None and not (Path(args.benchmark) / "val_y.npy").exists():  # before any training
        raise ValueError(f"{args.benchmark}: no benchmark set (dvc repro benchmark)")
    report = train_bench(args.patches, batch_size=args.batch_size, steps=args.steps, precision=args.precision)
    if args.benchmark is not None:
        report["time_to_accuracy"] = tta = time_to_accuracy(
            args.patches, args.benchmark, target=args.target, cap_minutes=args.cap_minutes,
            batch_size=args.batch_size, precision=args.precision, eval_every_s=args.eval_every)
        if tta["reached"]:
            print(f"time to {args.target:.0%} exact on the benchmark: {tta['reached']['seconds']:.0f} s of training, "
                  f"{tta['reached']['samples']} samples")
        else:
            print(f"{args.target:.0%} exact not reached in {args.cap_minutes:g} min of training "
                  f"(last: {tta['accuracy']})")
    _in_other_backends("bench-train", args, report, others)
    return _write_report(report, "bench-train", args)
