"""Training patch sets: balanced sampling at edges, streamed to disk, read back lazily.

A patch set is a folder with, per split (``train``, ``val``):

``<split>_x.npy``
    uint8, (N, 41, 41, 3): the patches, RGB, in a fixed shuffled order.
``<split>_y.npy``
    uint8, (N,): the class (blur level 0..22, or pattern 0 / depth 1).
``<split>_meta.npy``
    int32, (N, 4): source entry, y, x, rotation in degrees, for tracing a patch.

Arrays are written through ``numpy.lib.format.open_memmap`` and read with
``mmap_mode='r'``, so neither writing nor training holds the set in memory.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .patches import PATCH, ROT_MARGIN, extract_rotated

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


def sample_positions(candidates: np.ndarray, take: int, orientations: Sequence[int], per_position: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``take`` candidate pixels and ``per_position`` distinct orientations for each.

    Parameters
    ----------
    candidates : bool ndarray, (H, W)
    orientations : angles in degrees, the first being 0 (the identity)

    Returns
    -------
    ys, xs, angles : int arrays of length ``take * per_position``
    """
    ys, xs = np.nonzero(candidates)
    pick = np.sort(rng.choice(len(ys), size=take, replace=False))
    ys, xs = ys[pick], xs[pick]
    orientations = np.asarray(orientations)
    if per_position == len(orientations):
        angles = np.tile(orientations, take)
    else:
        angles = np.concatenate([rng.choice(orientations, size=per_position, replace=False) for _ in range(take)])
    return np.repeat(ys, per_position), np.repeat(xs, per_position), angles.astype(np.int32)


def inner(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the :data:`~defocus.patches.ROT_MARGIN` px border cleared."""
    out = np.array(mask, dtype=bool)
    m = ROT_MARGIN
    out[:m] = out[-m:] = False
    out[:, :m] = out[:, -m:] = False
    return out


def write_patch_set(
    out: Path,
    cells: list[Cell],
    load: Callable[[int], tuple[np.ndarray, np.ndarray]],
    orientations: Sequence[int],
    per_position: int,
    seed: int,
    progress: bool = True,
) -> dict[str, int]:
    """Cut the planned patches out of their images and stream them to ``out``.

    Parameters
    ----------
    out : folder, created afresh (written under a temporary name, then renamed)
    cells : the plan; ``cell.take`` positions are sampled from each
    load : ``entry -> (image uint8 (H, W, 3), candidates bool (H, W))``
    orientations, per_position : see :func:`sample_positions`
    seed : int
        With the plan, fixes every byte of the output.

    Returns
    -------
    sizes : {split: number of patches}
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sizes, arrays, slots = {}, {}, {}
    for split in SPLITS:
        n = sum(c.take for c in cells if c.split == split) * per_position
        sizes[split] = n
        arrays[split] = (
            np.lib.format.open_memmap(tmp / f"{split}_x.npy", "w+", np.uint8, (n, PATCH, PATCH, 3)),
            np.lib.format.open_memmap(tmp / f"{split}_y.npy", "w+", np.uint8, (n,)),
            np.lib.format.open_memmap(tmp / f"{split}_meta.npy", "w+", np.int32, (n, 4)),
        )
        slots[split] = [np.random.default_rng([seed, 11, SPLITS.index(split)]).permutation(n), 0]
    todo = [c for c in cells if c.take > 0]
    x = y = meta = None
    for cell in tqdm(todo, desc=out.name, unit="img", disable=not progress):
        image, candidates = load(cell.entry)
        rng = np.random.default_rng([seed, 13, cell.entry])
        ys, xs, angles = sample_positions(candidates, cell.take, orientations, per_position, rng)
        perm, pos = slots[cell.split]
        idx = perm[pos : pos + len(ys)]
        slots[cell.split][1] = pos + len(ys)
        order = np.argsort(idx)  # write in increasing slot order (kinder to the page cache)
        x, y, meta = arrays[cell.split]
        x[idx[order]] = extract_rotated(image, ys, xs, angles)[order]
        y[idx] = cell.label
        meta[idx] = np.stack([np.full(len(ys), cell.entry), ys, xs, angles], axis=1)
    for split in SPLITS:
        for a in arrays[split]:
            a.flush()
    del x, y, meta
    arrays.clear()
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return sizes


def open_split(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) arrays of one split of a patch set, memory-mapped read-only."""
    folder = Path(folder)
    x = np.load(folder / f"{split}_x.npy", mmap_mode="r")
    y = np.load(folder / f"{split}_y.npy", mmap_mode="r")
    if len(x) != len(y):
        raise ValueError(f"{folder}: {split}_x and {split}_y differ in length ({len(x)} vs {len(y)})")
    return x, y


def iter_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None = None,
                 block: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (uint8 patches, labels) batches, reading the memory map block by block.

    With a seed, the order of blocks and the order within each block are
    shuffled (the file itself is already in shuffled order), so an epoch reads
    the file roughly sequentially and holds one block in memory.
    """
    n = len(y)
    starts = np.arange(0, n, block)
    rng = np.random.default_rng(seed) if seed is not None else None
    if rng is not None:
        starts = rng.permutation(starts)
    for s in starts:
        xb, yb = np.asarray(x[s : s + block]), np.asarray(y[s : s + block])
        if rng is not None:
            p = rng.permutation(len(yb))
            xb, yb = xb[p], yb[p]
        for b in range(0, len(yb), batch_size):
            yield xb[b : b + batch_size], yb[b : b + batch_size]


def allocate(cells: list[Cell], per_label: int, per_position: int, val_fraction: float) -> dict[str, dict[int, int]]:
    """Set ``cell.take`` so that every label gets equally many patches in each split.

    ``per_label`` patches per label (train + val together) are wanted, i.e.
    ``ceil(per_label / per_position)`` sampled positions, of which a share
    ``val_fraction`` goes to validation. Within a split, every label gets the
    same number of positions: the wanted number, or fewer if some label's
    images do not have that many candidate edge pixels. Positions are spread
    over a label's images as evenly as their candidates allow
    (:func:`water_fill`).

    Returns
    -------
    positions : {split: {label: positions}}
    """
    wanted = math.ceil(per_label / per_position)
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
