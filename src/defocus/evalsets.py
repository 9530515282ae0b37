"""The evaluation sets and the files the evaluation stages pass to each other.

Three sets, each optional (a set the download stage could not find is simply
empty, and its table rows say "unavailable"):

* ``rtf``: RTF scenes (D'Andres et al. 2016), ground-truth disk-radius maps.
* ``dbd``: defocus-blur-detection pairs in the CUHK layout (image + binary
  mask), e.g. ``../shared/data/dbd`` or the full CUHK set.
* ``synthetic``: the layered test set of the ``synth_test`` stage (held-out
  object over held-out background): radius map, in-focus mask and the sharp
  image are all known.

Per-edge network decisions are stored as one uint8 label image per image and
model (:func:`encode_labels`), blur maps as float32 ``.npy`` files under
``<root>/<method>/<set>/<name>.npy``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import load_mask

SETS = ("rtf", "dbd", "synthetic")
#: Label image codes: 0 = no edge; 1 + k = pattern edge, B-NET level k;
#: DEPTH_CODE + 1 + k = depth edge (B-NET level k, used only without E-NET).
DEPTH_CODE = 128


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image and what is known about it (paths; None = unknown)."""

    set: str
    name: str
    image: Path
    radius: Path | None = None  # ground-truth disk radius map (.mat 'blurMap' or .npy), px
    focus: Path | None = None  # binary in-focus / blurred mask
    sharp: Path | None = None  # all-in-focus image
    in_focus_value: int = 255  # grey value of in-focus pixels in ``focus``


def eval_images(raw: Path, synth_test: Path, max_images: int = 0, dbd_in_focus: int = 255,
                rtf_sharp: Path | None = None) -> dict[str, list[EvalImage]]:
    """Every evaluation image, by set, in a fixed (sorted) order.

    Parameters
    ----------
    raw : path
        The download stage's folder (``data/raw``).
    synth_test : path
        The ``synth_test`` stage's folder.
    max_images : int
        Keep at most this many images per set (0 = all).
    dbd_in_focus : int
        Grey value of in-focus pixels in the blur-detection masks (255 for
        ``../shared/data/dbd``; set 0 for masks where white marks blur).
    rtf_sharp : path, optional
        Folder of all-in-focus RTF images ``image_XX.png`` (for deblurring).
    """
    raw, synth_test = Path(raw), Path(synth_test)
    sets: dict[str, list[EvalImage]] = {s: [] for s in SETS}
    for gt in sorted((raw / "rtf").glob("map_*.mat")):
        n = gt.stem.split("_", 1)[1]
        img = raw / "rtf" / f"image_{n}.png"
        if img.is_file():
            sharp = Path(rtf_sharp) / f"image_{n}.png" if rtf_sharp else None
            sets["rtf"].append(EvalImage("rtf", f"image_{n}", img, radius=gt,
                                         sharp=sharp if sharp is not None and sharp.is_file() else None))
    gts = {p.stem: p for p in (raw / "dbd" / "gt").glob("*")} if (raw / "dbd" / "gt").is_dir() else {}
    for img in sorted((raw / "dbd" / "images").glob("*")) if (raw / "dbd" / "images").is_dir() else []:
        if img.stem in gts:
            sets["dbd"].append(EvalImage("dbd", img.stem, img, focus=gts[img.stem], in_focus_value=dbd_in_focus))
    index = synth_test / "index.json"
    if index.is_file():
        for e in json.loads(index.read_text())["entries"]:
            sets["synthetic"].append(EvalImage(
                "synthetic", e["name"], synth_test / e["blurry"], radius=synth_test / e["radius"],
                focus=synth_test / e["focus"], sharp=synth_test / e["sharp"]))
    if max_images:
        sets = {k: v[:max_images] for k, v in sets.items()}
    return sets


def load_radius(item: EvalImage) -> np.ndarray | None:
    """Ground-truth disk-radius map of an image, float64 px (None if unknown)."""
    if item.radius is None:
        return None
    if item.radius.suffix == ".mat":
        from scipy.io import loadmat

        return np.asarray(loadmat(item.radius)["blurMap"], dtype=np.float64)
    return np.load(item.radius).astype(np.float64)


def load_blurred_mask(item: EvalImage, shape: tuple[int, int]) -> np.ndarray | None:
    """Ground truth of blur detection: True at out-of-focus pixels (None if unknown)."""
    if item.focus is None:
        return None
    white = load_mask(item.focus, shape)  # True where the mask is >= 50 % grey
    return ~white if item.in_focus_value >= 128 else white


def encode_labels(shape: tuple[int, int], ys, xs, is_depth, levels) -> np.ndarray:
    """Label image of one image's edges (see :data:`DEPTH_CODE`), (H, W) uint8."""
    out = np.zeros(shape, np.uint8)
    code = 1 + np.asarray(levels, dtype=np.int64) + DEPTH_CODE * np.asarray(is_depth, dtype=np.int64)
    out[np.asarray(ys), np.asarray(xs)] = code.astype(np.uint8)
    return out


def decode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pattern, depth, level) from a label image: two (H, W) bool maps and the
    B-NET level at every edge pixel ((H, W) int, -1 off edges)."""
    labels = np.asarray(labels)
    edges = labels > 0
    depth = labels > DEPTH_CODE
    level = np.where(edges, (labels.astype(np.int64) - 1) % DEPTH_CODE, -1)
    return edges & ~depth, depth, level


def sparse_from_labels(labels: np.ndarray, use_enet: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The propagation's inputs from a label image.

    Parameters
    ----------
    labels : ndarray, (H, W) uint8, see :func:`encode_labels`
    use_enet : bool
        False: every edge is treated as a pattern edge (the "no E-NET" ablation).

    Returns
    -------
    sparse : ndarray, (H, W) float32, B-NET's radius in px at known pixels, 0 elsewhere
    known : ndarray, (H, W) bool, pixels carrying a blur value
    depth : ndarray, (H, W) bool, depth edges (all False when ``use_enet`` is False)
    """
    from .levels import BLUR_RADII

    pattern, depth, level = decode_labels(labels)
    known = pattern if use_enet else pattern | depth
    if not use_enet:
        depth = np.zeros_like(depth)
    sparse = np.zeros(labels.shape, np.float32)
    sparse[known] = BLUR_RADII[level[known]]
    return sparse, known, depth
