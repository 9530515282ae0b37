"""Training patch sets: balanced sampling at edges, streamed to disk, read back lazily.

A patch set is a folder. Its training split is stored compactly, as the source
images and the sampled positions; patches are cut, and augmented, when a batch
is drawn (:class:`TrainingSet`), so that the set grows with the images rather
than with the patches (paper scale: 3.9 M positions in 316 photos x 23 radii,
6.7 GB instead of 20 GB of patches):

``train_pixels.npy``
    uint8, flat: every training image, (H, W, 3) row-major, one after another.
``train_images.npy``
    int64, (M, 3): offset in ``train_pixels``, H, W of each image.
``train_pos.npy``
    int32, (N, 3): image row, y, x of each sampled position, in a seeded shuffled order.
``train_y.npy``
    uint8, (N,): the class (blur level 0..22, or pattern 0 / depth 1).
``train_meta.npy``
    int32, (N, 3): source entry, y, x, for tracing a sample.

The validation split is stored as unrotated patches: ``val_x.npy`` uint8
(N, 41, 41, 3), ``val_y.npy``, ``val_meta.npy`` (as above).

With dense training (``patches.tile`` > 0) the training split also has *tiles*:
larger rotated crops around sampled edge pixels, each with up to K labelled edge
pixels, so that one pass of the networks over a tile trains on all of them
(:class:`defocus.dense.DenseTrainer`):

``train_tiles_x.npy``
    uint8, (N, T + 40, T + 40, 3): the tiles; output pixel (i, j) of a tile is
    input pixel (i + 20, j + 20), the centre of its 41 x 41 patch.
``train_tiles_pos.npy``
    int16, (N, K, 2): tile-local (i, j) of the labelled edge pixels.
``train_tiles_w.npy``
    uint8, (N, K): 1 for a labelled pixel, 0 for padding (tiles with fewer than K).
``train_tiles_y.npy``, ``train_tiles_meta.npy``
    the class of the tile's pixels, and (source entry, y, x, rotation) of its centre.

Arrays are written through ``numpy.lib.format.open_memmap`` and read with
``mmap_mode='r'``, so neither writing nor training holds the set in memory.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import cv2

from .patches import PAD, PATCH, ROT_MARGIN, extract_patches, extract_rotated, pad_image, rot_margin

SPLITS = ("train", "val")


def split_ids(ids: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Assign each source id to ``train`` or ``val`` (a seeded permutation, by id).

    The assignment depends only on the set of ids, the fraction and the seed.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(set(ids))
    order = np.random.default_rng([seed, 7]).permutation(len(ids))
    n_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    val = {ids[i] for i in order[:n_val]}
    return {i: ("val" if i in val else "train") for i in ids}


def water_fill(caps: Sequence[int], total: int) -> np.ndarray:
    """Spread ``total`` over cells as evenly as their capacities allow.

    Every cell gets ``min(cap, t)`` for a common level t; what is left after that
    goes one each to the first cells (in order) that still have room. Returns an
    int array that sums to ``min(total, sum(caps))``.
    """
    caps = np.asarray(caps, dtype=np.int64)
    total = int(min(total, caps.sum()))
    if total <= 0 or len(caps) == 0:
        return np.zeros(len(caps), np.int64)
    lo, hi = 0, int(caps.max())
    while lo < hi:  # largest t with sum(min(caps, t)) <= total
        mid = (lo + hi + 1) // 2
        if np.minimum(caps, mid).sum() <= total:
            lo = mid
        else:
            hi = mid - 1
    alloc = np.minimum(caps, lo)
    rest = total - int(alloc.sum())
    room = np.flatnonzero(caps > alloc)
    alloc[room[:rest]] += 1
    return alloc


@dataclass
class Cell:
    """One source image of a patch set: where to read it and which pixels qualify."""

    entry: int  # index of the image in its synthesis index
    split: str
    label: int
    count: int = 0  # candidate edge pixels
    take: int = 0  # positions to sample
    shape: tuple[int, int, int] | None = None  # (H, W, 3) of the image, needed to store it (training split)


#: Augmentations applied when a training batch is drawn (:func:`augment`).
AUGMENTS = ("symmetries", "rotations")


def sample_positions(candidates: np.ndarray, take: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``take`` distinct candidate pixels, in raster order.

    Parameters
    ----------
    candidates : bool ndarray, (H, W)

    Returns
    -------
    ys, xs : int arrays of length ``take``
    """
    ys, xs = np.nonzero(candidates)
    pick = np.sort(rng.choice(len(ys), size=take, replace=False))
    return ys[pick], xs[pick]


def margin_for(augment: str) -> int:
    """Border (px) that sampled positions keep: the patch itself (20 px) for the exact
    symmetries, :data:`~defocus.patches.ROT_MARGIN` for interpolated rotations."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return PAD if augment == "symmetries" else ROT_MARGIN


def inner(mask: np.ndarray, margin: int = ROT_MARGIN) -> np.ndarray:
    """``mask`` with a ``margin`` px border cleared (by default
    :data:`~defocus.patches.ROT_MARGIN`, what a rotated 41 x 41 patch needs)."""
    out = np.array(mask, dtype=bool)
    m = int(margin)
    out[:m] = out[-m:] = False
    out[:, :m] = out[:, -m:] = False
    return out


def write_patch_set(
    out: Path,
    cells: list[Cell],
    load: Callable[[int], tuple[np.ndarray, np.ndarray]],
    seed: int,
    margin: int = PAD,
    progress: bool = True,
) -> dict[str, int]:
    """Sample the planned positions and write a patch set to ``out``.

    The training split is stored compactly: its source images once each and the
    sampled positions, patches being cut (and augmented) when a batch is drawn
    (:class:`TrainingSet`); the validation split as unrotated 41 x 41 patches.

    Parameters
    ----------
    out : folder, created afresh (written under a temporary name, then renamed)
    cells : the plan; ``cell.take`` positions are sampled from each (training
        cells need ``cell.shape``)
    load : ``entry -> (image uint8 (H, W, 3), candidates bool (H, W))``; only
        candidates at least ``margin`` px inside are used
    seed : int
        With the plan, fixes every byte of the output.
    margin : int
        :func:`margin_for` the augmentation the set is meant for.

    Returns
    -------
    sizes : {split: number of positions (training) or patches (validation)}
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    todo = [c for c in cells if c.take > 0]
    train = [c for c in todo if c.split == "train"]
    if any(c.shape is None for c in train):
        raise ValueError("training cells need their image shape (Cell.shape) to be stored")
    sizes = {s: sum(c.take for c in todo if c.split == s) for s in SPLITS}
    # training split: images + positions
    offsets = np.cumsum([0] + [int(np.prod(c.shape)) for c in train])
    image_row = {c.entry: i for i, c in enumerate(train)}
    table = np.array([[offsets[i], c.shape[0], c.shape[1]] for i, c in enumerate(train)], np.int64).reshape(-1, 3)
    np.save(tmp / "train_images.npy", table)
    pixels = np.lib.format.open_memmap(tmp / "train_pixels.npy", "w+", np.uint8, (int(offsets[-1]),))
    n = sizes["train"]
    arrays = {
        "train": (np.lib.format.open_memmap(tmp / "train_pos.npy", "w+", np.int32, (n, 3)),
                  np.lib.format.open_memmap(tmp / "train_y.npy", "w+", np.uint8, (n,)),
                  np.lib.format.open_memmap(tmp / "train_meta.npy", "w+", np.int32, (n, 3))),
        "val": (np.lib.format.open_memmap(tmp / "val_x.npy", "w+", np.uint8, (sizes["val"], PATCH, PATCH, 3)),
                np.lib.format.open_memmap(tmp / "val_y.npy", "w+", np.uint8, (sizes["val"],)),
                np.lib.format.open_memmap(tmp / "val_meta.npy", "w+", np.int32, (sizes["val"], 3))),
    }
    slots = {s: [np.random.default_rng([seed, 11, SPLITS.index(s)]).permutation(sizes[s]), 0] for s in SPLITS}
    for cell in tqdm(todo, desc=out.name, unit="img", disable=not progress):
        image, candidates = load(cell.entry)
        rng = np.random.default_rng([seed, 13, cell.entry])
        ys, xs = sample_positions(inner(candidates, margin), cell.take, rng)
        perm, at = slots[cell.split]
        idx = perm[at : at + len(ys)]
        slots[cell.split][1] = at + len(ys)
        first, y, meta = arrays[cell.split]
        if cell.split == "train":
            if image.shape != tuple(cell.shape):
                raise ValueError(f"entry {cell.entry}: image is {image.shape}, planned as {cell.shape}")
            row = image_row[cell.entry]
            pixels[offsets[row] : offsets[row + 1]] = np.ascontiguousarray(image, dtype=np.uint8).ravel()
            first[idx] = np.stack([np.full(len(ys), row), ys, xs], axis=1)
        else:
            order = np.argsort(idx)  # write in increasing slot order (kinder to the page cache)
            first[idx[order]] = extract_patches(pad_image(image), ys, xs)[order]
        y[idx] = cell.label
        meta[idx] = np.stack([np.full(len(ys), cell.entry), ys, xs], axis=1)
    pixels.flush()
    for group in arrays.values():
        for a in group:
            a.flush()
    del pixels, first, y, meta
    arrays.clear()
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return sizes


def open_split(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The stored (x, y) patches of the validation split, memory-mapped read-only."""
    folder = Path(folder)
    x = np.load(folder / f"{split}_x.npy", mmap_mode="r")
    y = np.load(folder / f"{split}_y.npy", mmap_mode="r")
    if len(x) != len(y):
        raise ValueError(f"{folder}: {split}_x and {split}_y differ in length ({len(x)} vs {len(y)})")
    return x, y


def symmetries(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Apply one of the 8 symmetries of the square to each patch: rotation by
    ``90 * (k % 4)`` degrees, transposed first where ``k >= 4``.

    Parameters
    ----------
    x : ndarray, (N, S, S, C)
    k : int array, (N,), values 0..7 (0 = identity)

    These are exact (pixel permutations): unlike a rotation by another angle they
    add no blur to a sample whose label is an amount of blur.
    """
    out = np.empty_like(x)
    k = np.asarray(k)
    for s in range(8):
        idx = np.flatnonzero(k == s)
        if len(idx):
            part = x[idx].transpose(0, 2, 1, 3) if s >= 4 else x[idx]
            out[idx] = np.rot90(part, k=s % 4, axes=(1, 2))
    return out


class TrainingSet:
    """The training split of a patch set: positions in stored images, cut when drawn.

    Parameters
    ----------
    folder : patch-set folder written by :func:`write_patch_set`
    augment : ``"symmetries"`` (each drawn patch gets one of the 8 exact symmetries
        of the square, uniformly) or ``"rotations"`` (one of ``0`` and ``rotations``
        degrees, interpolated: :func:`~defocus.patches.extract_rotated`)
    rotations : degrees, for ``augment="rotations"``
    seed : int
        Fixes the order of every epoch and every augmentation: batch ``g`` of the
        run is the same whenever and wherever it is drawn (:meth:`batch`).
    batch_size : int
    """

    def __init__(self, folder: str | Path, augment: str = "symmetries", rotations: Sequence[float] = (),
                 seed: int = 0, batch_size: int = 256):
        folder = Path(folder)
        margin_for(augment)  # checks the name
        self.folder, self.augment, self.seed = folder, augment, int(seed)
        self.angles = np.array([0, *rotations], dtype=np.float64)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        try:
            self.pixels = np.load(folder / "train_pixels.npy", mmap_mode="r")
            self.images = np.load(folder / "train_images.npy")
            self.pos = np.load(folder / "train_pos.npy")
            self.y = np.load(folder / "train_y.npy")
        except FileNotFoundError as e:
            raise ValueError(f"{folder}: not a patch set of this version ({Path(e.filename).name} missing): "
                             "re-run the patches stage") from None
        if len(self.pos) != len(self.y):
            raise ValueError(f"{folder}: train_pos and train_y differ in length ({len(self.pos)} vs {len(self.y)})")
        self._perm = (None, None)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self) / self.batch_size)

    def image(self, row: int) -> np.ndarray:
        """Stored image ``row``, (H, W, 3) uint8 (a view of the memory map)."""
        off, h, w = (int(v) for v in self.images[row])
        return self.pixels[off : off + h * w * 3].reshape(h, w, 3)

    def cut(self, rows: np.ndarray) -> np.ndarray:
        """Unrotated 41 x 41 patches of samples ``rows``, (N, 41, 41, 3) uint8."""
        img, ys, xs = (self.pos[rows, i].astype(np.int64) for i in range(3))
        off, w = self.images[img, 0], self.images[img, 2]
        base = off + ((ys - PAD) * w + (xs - PAD)) * 3
        r = np.arange(PATCH, dtype=np.int64)
        idx = (base[:, None, None, None] + r[None, :, None, None] * (3 * w)[:, None, None, None]
               + 3 * r[None, None, :, None] + np.arange(3)[None, None, None, :])
        return np.asarray(self.pixels[idx.ravel()]).reshape(len(rows), PATCH, PATCH, 3)

    def order(self, epoch: int) -> np.ndarray:
        """The order in which epoch ``epoch`` draws the samples (seeded)."""
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 23, epoch]).permutation(len(self)))
        return self._perm[1]

    def batch(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``g`` of the run (epoch ``g // steps_per_epoch``): augmented uint8
        patches (B, 41, 41, 3) and labels (B,). A function of ``g`` and the seed only."""
        epoch, i = divmod(int(g), self.steps_per_epoch)
        rows = self.order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, 29, epoch, i])
        if self.augment == "symmetries":
            x = symmetries(self.cut(rows), rng.integers(0, 8, len(rows)))
        else:
            angles = rng.choice(self.angles, size=len(rows))
            x = np.empty((len(rows), PATCH, PATCH, 3), np.uint8)
            for j, r in enumerate(rows):
                img, yy, xx = (int(v) for v in self.pos[r])
                x[j] = extract_rotated(self.image(img), [yy], [xx], [angles[j]])[0]
        return x, self.y[rows]


def row_batches(n: int, batch_size: int, seed: int | None = None, block: int = 4096) -> list[np.ndarray]:
    """The rows of each batch of an epoch over ``n`` rows, as index arrays (random access to
    batches).

    With a seed, the order of blocks of ``block`` rows and the order within each block
    are shuffled (the file itself is already in shuffled order), so an epoch reads a
    memory-mapped file roughly sequentially, one block at a time; without one, the file
    order. A batch never spans two blocks (a block's last batch may be short).
    """
    starts = np.arange(0, n, block)
    rng = np.random.default_rng(seed) if seed is not None else None
    if rng is not None:
        starts = rng.permutation(starts)
    out = []
    for s in starts:
        rows = np.arange(s, min(s + block, n))
        if rng is not None:
            rows = rows[rng.permutation(len(rows))]
        out.extend(rows[b : b + batch_size] for b in range(0, len(rows), batch_size))
    return out


def allocate(cells: list[Cell], per_label: int, val_fraction: float) -> dict[str, dict[int, int]]:
    """Set ``cell.take`` so that every label gets equally many patches in each split.

    ``per_label`` positions per label (train + val together) are wanted, of
    which a share ``val_fraction`` goes to validation. Within a split, every label gets the
    same number of positions: the wanted number, or fewer if some label's
    images do not have that many candidate edge pixels. Positions are spread
    over a label's images as evenly as their candidates allow
    (:func:`water_fill`).

    Returns
    -------
    positions : {split: {label: positions}}
    """
    wanted = int(per_label)
    n_val = int(round(wanted * val_fraction))
    result = {}
    for split, n in (("train", wanted - n_val), ("val", n_val)):
        labels = sorted({c.label for c in cells})
        groups = {lab: [c for c in cells if c.split == split and c.label == lab] for lab in labels}
        equal = min([n] + [sum(c.count for c in g) for g in groups.values()])
        for lab, group in groups.items():
            for c, take in zip(group, water_fill([c.count for c in group], equal)):
                c.take = int(take)
        result[split] = {lab: equal for lab in labels}
    return result


# ---------------------------------------------------------------- tiles (dense training)
TILE_ARRAYS = ("x", "pos", "w", "y", "meta")


def tile_margin(tile: int) -> int:
    """Border (px) that tile centres keep: a rotated ``tile + 40`` px input must fit."""
    return rot_margin(tile + 2 * PAD)


def cut_tiles(image: np.ndarray, edges: np.ndarray, ys: np.ndarray, xs: np.ndarray, angles: np.ndarray,
              tile: int, per_tile: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotated training tiles centred on (ys, xs), and up to ``per_tile`` edge pixels in each.

    Parameters
    ----------
    image : ndarray, (H, W, 3), uint8
    edges : bool ndarray, (H, W)
        The pixels that carry the tile's label (rotated with the image, nearest neighbour).
    ys, xs, angles : int arrays, (N,): centres at least :func:`tile_margin` px inside, degrees
    tile : int, odd
        Side of the tile's output, px: the tile's input is ``tile + 40`` px.
    per_tile : int
        Labelled pixels kept per tile (a random choice when there are more).

    Returns
    -------
    x : (N, tile + 40, tile + 40, 3) uint8
    pos : (N, per_tile, 2) int16, tile-local output pixels, ascending; padding repeats the centre
    w : (N, per_tile) uint8, 1 where ``pos`` is a labelled pixel
    """
    x = extract_rotated(image, ys, xs, angles, size=tile + 2 * PAD)
    masks = extract_rotated(edges.astype(np.uint8), ys, xs, angles, size=tile, interpolation=cv2.INTER_NEAREST)
    pos = np.full((len(ys), per_tile, 2), tile // 2, np.int16)
    w = np.zeros((len(ys), per_tile), np.uint8)
    for i, m in enumerate(masks):
        flat = np.flatnonzero(m)
        if len(flat) > per_tile:
            flat = np.sort(rng.choice(flat, size=per_tile, replace=False))
        pos[i, : len(flat), 0], pos[i, : len(flat), 1] = np.divmod(flat, tile)
        w[i, : len(flat)] = 1
    return x, pos, w


def write_tile_set(out: Path, cells: list[Cell], load: Callable[[int], tuple[np.ndarray, np.ndarray]],
                   orientations: Sequence[int], tile: int, per_tile: int, seed: int,
                   progress: bool = True) -> int:
    """Cut the planned training tiles (``cell.take`` per cell, training cells only) into an
    existing patch-set folder ``out`` as ``train_tiles_*.npy``, in a seeded shuffled order.

    Every tile is centred on a candidate edge pixel at least :func:`tile_margin` px
    inside its image, with one orientation drawn from ``orientations``; its labelled
    pixels are the candidates inside its output (see :func:`cut_tiles`).

    Returns
    -------
    n : number of tiles written
    """
    if tile < 1 or tile % 2 != 1:
        raise ValueError(f"tile must be an odd number of px >= 1, got {tile}")
    if per_tile < 1:
        raise ValueError(f"tile_edges must be >= 1, got {per_tile}")
    out = Path(out)
    todo = [c for c in cells if c.take > 0 and c.split == "train"]
    n = sum(c.take for c in todo)
    side = tile + 2 * PAD
    shapes = {"x": (np.uint8, (n, side, side, 3)), "pos": (np.int16, (n, per_tile, 2)),
              "w": (np.uint8, (n, per_tile)), "y": (np.uint8, (n,)), "meta": (np.int32, (n, 4))}
    tmp = {k: out / f".train_tiles_{k}.tmp.npy" for k in TILE_ARRAYS}
    arrays = {k: np.lib.format.open_memmap(tmp[k], "w+", *shapes[k]) for k in TILE_ARRAYS}
    perm, at = np.random.default_rng([seed, 17]).permutation(n), 0
    for cell in tqdm(todo, desc=f"{out.name} tiles", unit="img", disable=not progress):
        image, candidates = load(cell.entry)
        rng = np.random.default_rng([seed, 19, cell.entry])
        ys, xs = sample_positions(inner(candidates, tile_margin(tile)), cell.take, rng)
        angles = rng.choice(np.asarray(orientations), size=len(ys)).astype(np.int32)
        idx = perm[at : at + len(ys)]
        at += len(ys)
        x, pos, w = cut_tiles(image, candidates, ys, xs, angles, tile, per_tile, rng)
        order = np.argsort(idx)
        for k, v in (("x", x), ("pos", pos), ("w", w)):
            arrays[k][idx[order]] = v[order]
        arrays["y"][idx] = cell.label
        arrays["meta"][idx] = np.stack([np.full(len(ys), cell.entry), ys, xs, angles], axis=1)
    for k in TILE_ARRAYS:
        arrays[k].flush()
    arrays.clear()
    for k in TILE_ARRAYS:
        os.replace(tmp[k], out / f"train_tiles_{k}.npy")
    return n


def open_tiles(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The training tiles of a patch set, memory-mapped read-only (None if it has none)."""
    folder = Path(folder)
    if not (folder / "train_tiles_x.npy").exists():
        return None
    return {k: np.load(folder / f"train_tiles_{k}.npy", mmap_mode="r") for k in TILE_ARRAYS}
