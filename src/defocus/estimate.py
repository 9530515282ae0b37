"""The estimator: edges -> E-NET -> B-NET -> propagation."""

from __future__ import annotations

import ctypes
import hashlib
import time
import weakref
from dataclasses import dataclass

import numpy as np

from .edges import detect_edges
from .levels import BLUR_RADII, DEPTH
from .patches import PATCH, iter_patch_batches
from .propagation import propagate

DEFAULT_PSI = 100.0
DEFAULT_BATCH = 256
#: Tile side in px of the dense evaluation; memory per tile is bounded (256: fastest and smallest of
#: 192/256/320/384 on a Zen 3, AVX2-only, both on RTF images and on a 12 MP photo).
DEFAULT_TILE = 256
#: Images whose longer side is at most this many px are evaluated as one tile where that pays
#: (:func:`choose_tile`): the 40 px overlap of four 256 px tiles over a 360 x 360 RTF image makes
#: the networks' maps 1.49x the image's area, one tile 1.23x.
SINGLE_TILE = 400
#: Tile side in px on a GPU for images larger than :data:`SINGLE_TILE`: there a 256 px tile leaves
#: the chip mostly idle and each distinct tile shape compiles anew. Measured on one H200 (JAX, a
#: 12 MP photo, float32 in TensorFloat-32): first run (compiling) 26.3 s with 256 px tiles, 15.6 s
#: with 1024; later runs 6.97 -> 6.11 s, most of it Canny and the propagation on the CPU. The maps
#: of a 1064 px padded tile take a few GB of GPU memory: pass a smaller ``tile`` on a small GPU.
GPU_TILE = 1024
#: "dense": shared convolutions computed once per image (fast, see defocus.dense);
#: "patch": every edge pixel's 41 px patch through the whole network (the reference).
METHODS = ("dense", "patch")

#: traced inference functions, keyed by the network itself (an entry goes with its network)
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_key(*nets) -> str:
    """A digest of the networks' weights (what a :class:`~defocus.dense.DenseModel` copies)."""
    h = hashlib.blake2b(digest_size=16)
    for net in nets:
        for w in net.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def single_tile_pays() -> bool:
    """Whether one large tile is faster than several of :data:`DEFAULT_TILE` px on this backend.
    Measured on RTF images (360 x 360 px, median of 15 estimates each, one run per row, a Zen 5
    pair): TensorFlow with oneDNN 2.029 s (four tiles) -> 1.789 s (one); JAX (tiles padded to
    their static size) 11.28 -> 6.87 s; TensorFlow without oneDNN (its own kernels, as on
    AVX2-only CPUs) 2.664 -> 2.837 s: slower, so not there."""
    from . import backend

    return backend.name() != "tensorflow" or backend.onednn_enabled()


def choose_tile(shape) -> int:
    """The tile side in px for an image of ``shape`` (H, W, ...): :data:`SINGLE_TILE` (so the
    whole image is one tile) when its longer side is above :data:`DEFAULT_TILE` and at most
    :data:`SINGLE_TILE` px and :func:`single_tile_pays`; above that :data:`GPU_TILE` where the
    backend runs on a GPU; else :data:`DEFAULT_TILE`. On CPUs larger photos keep
    :data:`DEFAULT_TILE` px tiles, which bound the memory. The tiling changes no probability
    beyond rounding (on the RTF images, with oneDNN on, not at all: measured)."""
    from . import backend

    side = max(shape[:2])
    if DEFAULT_TILE < side <= SINGLE_TILE and single_tile_pays():
        return SINGLE_TILE
    if side > SINGLE_TILE and backend.gpu_capabilities():
        return GPU_TILE
    return DEFAULT_TILE


def dense_model(model, tile: int = DEFAULT_TILE, precision: str = "float32"):
    """The :class:`defocus.dense.DenseModel` of ``model`` for this tile and precision, kept on
    ``model`` itself (so it lives as long as the model; one per tile and precision asked for,
    so alternating between them traces nothing again) and built again once the networks'
    weights changed (the dense model holds copies of them)."""
    from .dense import DenseModel

    weights = _weights_key(model.bnet, model.enet)
    cache = vars(model).setdefault("_dense", {})
    if cache.get("weights") != weights:
        cache.clear()
        cache["weights"] = weights
    key = (int(tile), precision)
    if key not in cache:
        cache[key] = DenseModel(model, tile, precision)
    return cache[key]


def _compiled(net):
    """A compiled inference function for ``net`` (the backend's, for any batch size); it
    follows the network's weights."""
    from . import backend

    fn = _COMPILED.get(net)
    if fn is None:
        fn = backend.forward(net, PATCH)
        _COMPILED[net] = fn
    return fn


def classify(net, image: np.ndarray, ys, xs, batch_size: int = DEFAULT_BATCH, progress=None) -> np.ndarray:
    """Class probabilities of ``net`` for the patches centred on pixels (ys, xs).

    Patches are cut and evaluated ``batch_size`` at a time, so memory is bounded
    whatever the number of pixels.

    Parameters
    ----------
    net : keras.Model
        B-NET or E-NET.
    image : ndarray, (H, W, 3), RGB in [0, 1]
    ys, xs : int arrays, (N,)
    batch_size : int
    progress : callable, optional
        Called with the number of patches in each batch once it is done.

    Returns
    -------
    probs : ndarray, (N, n_classes) float32
    """
    fn = _compiled(net)
    n_out = net.output_shape[-1]
    out = np.empty((len(ys), n_out), dtype=np.float32)
    done = 0
    for batch in iter_patch_batches(image, ys, xs, batch_size):
        out[done : done + len(batch)] = np.asarray(fn(batch))
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    return out


@dataclass
class BlurEstimate:
    """Result of :func:`estimate_blur`.

    Attributes
    ----------
    blur : ndarray, (H, W) float32
        Dense blur map, disk radius in px.
    edges, pattern, depth : ndarray, (H, W) bool
        All edge pixels, and their split into pattern and depth edges.
    sparse : ndarray, (H, W) float32
        B-NET's radius at pattern edges, 0 elsewhere.
    """

    blur: np.ndarray
    edges: np.ndarray
    pattern: np.ndarray
    depth: np.ndarray
    sparse: np.ndarray


def estimate_blur(
    image: np.ndarray,
    model,
    edges: np.ndarray | None = None,
    psi: float = DEFAULT_PSI,
    canny: dict | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress=None,
    method: str = "dense",
    tile: int | None = None,
    timings: dict | None = None,
    precision: str = "float32",
) -> BlurEstimate:
    """Dense defocus blur map of one image.

    Parameters
    ----------
    image : ndarray, (H, W, 3), RGB in [0, 1]; H, W >= 41
    model : defocus.weights.Model
        B-NET and E-NET.
    edges : ndarray, (H, W) bool, optional
        Edge map to use instead of Canny.
    psi : float
        Depth-edge penalty of the propagation.
    canny : dict, optional
        ``sigma``, ``low``, ``high`` for :func:`defocus.edges.detect_edges`.
    batch_size : int
        Patches per network call (``method="patch"``).
    method : {"dense", "patch"}
        How the networks are evaluated; both give the same probabilities to
        about 1e-5 (see :mod:`defocus.dense`).
    tile : int, optional
        Tile side in px for ``method="dense"`` (bounds its memory); by default
        :func:`choose_tile`'s for this image.
    precision : {"float32", "bfloat16"}
        Compute dtype of ``method="dense"`` (:data:`defocus.hardware.DENSE_PRECISIONS`); bfloat16 is
        faster where the device computes it natively, and its maps differ slightly
        (``defocus bench`` measures it). The per-patch path is float32 only.
    timings : dict, optional
        Filled with the seconds spent in each stage: ``edges``, ``enet`` (with
        the dense path: the shared features too), ``bnet``, ``propagation``.
    progress : tqdm-like, optional
        Its ``total`` is set to the number of patches to evaluate (E-NET on every
        edge, then B-NET on pattern edges) and ``update(n)`` is called per batch.

    Returns
    -------
    BlurEstimate
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < PATCH:
        raise ValueError(f"image is {w}x{h} px; at least {PATCH}x{PATCH} px is needed (the patch size)")
    clock = _Clock(timings)
    if edges is None:
        edges = detect_edges(image, **(canny or {}))
    clock.lap("edges")
    edges = np.asarray(edges, dtype=bool)
    if edges.shape != (h, w):
        raise ValueError(f"edge map is {edges.shape[1]}x{edges.shape[0]} px, image is {w}x{h} px")
    ys, xs = np.nonzero(edges)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dense":
        return _estimate_dense(image, model, edges, ys, xs, psi, tile, progress, clock, precision)
    if precision != "float32":
        raise ValueError(f"method 'patch' runs in float32 only; got precision {precision!r}")

    n_enet = len(ys)
    tick = None
    if progress is not None:
        progress.total = n_enet  # B-NET's share is added once E-NET has split the edges
        progress.refresh()
        tick = progress.update
    is_depth = np.zeros(len(ys), dtype=bool)
    if n_enet:
        is_depth = classify(model.enet, image, ys, xs, batch_size, tick).argmax(axis=1) == DEPTH
    clock.lap("enet")
    blur_idx = np.flatnonzero(~is_depth)
    if progress is not None:
        progress.total = n_enet + len(blur_idx)
        progress.refresh()
    levels = np.zeros(0, dtype=np.int64)
    if len(blur_idx):
        levels = classify(model.bnet, image, ys[blur_idx], xs[blur_idx], batch_size, tick).argmax(axis=1)
    clock.lap("bnet")
    return _propagate_edges(image, edges, ys, xs, is_depth, blur_idx, levels, psi, clock)


def _propagate_edges(image, edges, ys, xs, is_depth, blur_idx, levels, psi, clock) -> BlurEstimate:
    """Maps from the per-edge decisions, then the propagation (shared by both methods).

    ``is_depth`` flags depth edges among (ys, xs); B-NET's class ``levels`` hold
    for the pixels ``blur_idx`` (the pattern edges).
    """
    h, w = edges.shape
    depth = np.zeros((h, w), dtype=bool)
    depth[ys[is_depth], xs[is_depth]] = True
    pattern = np.zeros((h, w), dtype=bool)
    pattern[ys[blur_idx], xs[blur_idx]] = True
    sparse = np.zeros((h, w), dtype=np.float32)
    sparse[ys[blur_idx], xs[blur_idx]] = BLUR_RADII[levels]
    blur = propagate(image, sparse, pattern, depth, psi=psi)
    _release_freed_memory()  # the propagation's planes, before the caller writes its outputs
    clock.lap("propagation")
    return BlurEstimate(blur, edges, pattern, depth, sparse)


def _estimate_dense(image, model, edges, ys, xs, psi, tile, progress, clock, precision) -> BlurEstimate:
    if progress is not None:
        progress.total = len(ys)
        progress.refresh()
    dm = dense_model(model, tile or choose_tile(image.shape), precision)
    clock.lap(None)
    split: dict = {}
    is_depth, bi, levels = dm.decide(image, ys, xs, progress=None if progress is None else progress.update, timings=split)
    _release_freed_memory()
    clock.lap(None)
    clock.add("enet", split.get("enet", 0.0))
    clock.add("bnet", split.get("bnet", 0.0))
    return _propagate_edges(image, edges, ys, xs, is_depth, bi, levels, psi, clock)


def _release_freed_memory() -> None:
    """Hand freed memory back to the OS (glibc's ``malloc_trim``; a no-op elsewhere), after the
    dense pass and after the propagation. The backend's worker threads free their tiles' feature
    maps into their own malloc arenas, where the propagation and the outputs, allocated by this
    thread, cannot reuse them: at 12 MP the peak RSS of `defocus estimate` went from 1.61 to 1.49 GiB
    with the first call, to 1.45 GiB with both."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Clock:
    """Adds the seconds since the last lap to ``timings[name]`` (no-op without a dict)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.last = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + seconds

    def lap(self, name: str | None) -> None:
        now = time.perf_counter()
        if name is not None:
            self.add(name, now - self.last)
        self.last = now


