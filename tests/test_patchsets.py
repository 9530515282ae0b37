import math
from collections import Counter

import numpy as np
import pytest

from defocus.patches import PATCH, ROT_MARGIN, extract_patches, extract_rotated
from defocus.patchsets import (
    SPLITS,
    Cell,
    TrainingSet,
    allocate,
    inner,
    margin_for,
    open_split,
    row_batches,
    split_ids,
    symmetries,
    water_fill,
    write_patch_set,
)


# ---------------------------------------------------------------- water_fill
def test_water_fill_hand_computed():
    assert water_fill([1, 5, 10], 9).tolist() == [1, 4, 4]
    assert water_fill([3, 3, 3], 7).tolist() == [3, 2, 2]  # the rest goes to the first cells
    assert water_fill([0, 2, 8, 1], 6).tolist() == [0, 2, 3, 1]
    assert water_fill([0, 2, 8, 1], 7).tolist() == [0, 2, 4, 1]
    assert water_fill([4, 6], 100).tolist() == [4, 6]  # more than fits: every cap
    assert water_fill([4, 6], 0).tolist() == [0, 0]
    assert water_fill([4, 6], -3).tolist() == [0, 0]
    assert water_fill([], 5).tolist() == []


def test_water_fill_properties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        caps = rng.integers(0, 30, size=rng.integers(1, 12))
        total = int(rng.integers(0, 300))
        a = water_fill(caps, total)
        assert a.dtype == np.int64 and a.shape == caps.shape
        assert a.sum() == min(total, caps.sum())
        assert (a >= 0).all() and (a <= caps).all()
        open_ = a < caps
        if open_.sum() > 1:
            assert a[open_].max() - a[open_].min() <= 1
        if open_.any():  # a saturated cell holds at most one more than any unsaturated one
            assert (a[~open_] <= a[open_].min() + 1).all()


# ---------------------------------------------------------------- split_ids
def test_split_ids():
    ids = [f"coco/{i:04d}" for i in range(50)] + [f"salient/{i}" for i in range(30)]
    s = split_ids(ids, 0.2, seed=3)
    assert set(s) == set(ids)
    assert set(s.values()) <= set(SPLITS)
    val = {i for i, v in s.items() if v == "val"}
    assert len(val) == 16  # round(0.2 * 80)
    assert split_ids(ids, 0.2, seed=3) == s
    shuffled = list(np.random.default_rng(1).permutation(ids)) + ids[:5]  # order and duplicates do not matter
    assert split_ids(shuffled, 0.2, seed=3) == s
    other = split_ids(ids, 0.2, seed=4)
    assert {i for i, v in other.items() if v == "val"} != val
    assert len([v for v in split_ids(ids, 0.5, 0).values() if v == "val"]) == 40
    assert set(split_ids(ids, 0.0, 0).values()) == {"train"}
    # at least one of each once there are two ids and a positive fraction
    assert sorted(split_ids(["a", "b"], 0.01, 0).values()) == ["train", "val"]
    assert sorted(split_ids(["a", "b", "c"], 0.9, 0).values()) == ["train", "val", "val"]
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            split_ids(ids, bad, 0)


# ---------------------------------------------------------------- allocate
def _cells(spec):
    """spec: (split, label, count) per cell."""
    return [Cell(entry=i, split=sp, label=lab, count=n) for i, (sp, lab, n) in enumerate(spec)]


def _taken(cells, split, label):
    return sum(c.take for c in cells if c.split == split and c.label == label)


def test_allocate_balances_labels():
    cells = _cells([("train", 0, 30), ("train", 0, 25), ("train", 1, 5), ("train", 1, 100), ("train", 2, 41),
                    ("val", 0, 50), ("val", 1, 3), ("val", 1, 4), ("val", 2, 9), ("val", 2, 9)])
    plan = allocate(cells, per_label=50, val_fraction=0.2)  # 50 positions: 40 train, 10 val
    assert plan == {"train": {0: 40, 1: 40, 2: 40}, "val": {0: 7, 1: 7, 2: 7}}  # val: label 1 has only 7
    for split in SPLITS:
        for lab in (0, 1, 2):
            assert _taken(cells, split, lab) == plan[split][lab]
    assert all(0 <= c.take <= c.count for c in cells)
    assert [c.take for c in cells] == [20, 20, 5, 35, 40, 7, 3, 4, 4, 3]


def test_allocate_cuts_every_label_to_the_shortest():
    cells = _cells([("train", 0, 500), ("train", 1, 6), ("train", 1, 5), ("val", 0, 500), ("val", 1, 500)])
    plan = allocate(cells, per_label=15, val_fraction=0.4)  # 15 positions: 9 train, 6 val
    assert plan == {"train": {0: 9, 1: 9}, "val": {0: 6, 1: 6}}
    assert [c.take for c in cells] == [9, 5, 4, 6, 6]
    cells = _cells([("train", 0, 500), ("train", 1, 2), ("train", 1, 1), ("val", 0, 10)])
    plan = allocate(cells, per_label=20, val_fraction=0.5)
    assert plan == {"train": {0: 3, 1: 3}, "val": {0: 0, 1: 0}}  # label 1 has no val image at all
    assert [c.take for c in cells] == [3, 2, 1, 0]


# ---------------------------------------------------------------- extract_rotated
@pytest.fixture(scope="module")
def photo():
    return np.random.default_rng(5).integers(0, 256, (90, 100, 3), dtype=np.uint8)


def test_extract_rotated_quarter_turns(photo):
    ys, xs = np.array([29, 45, 60, 40]), np.array([29, 50, 70, 33])
    zero = extract_rotated(photo, ys, xs, np.zeros(4, int))
    assert zero.shape == (4, PATCH, PATCH, 3) and zero.dtype == np.uint8
    np.testing.assert_array_equal(zero, extract_patches(photo, ys - 20, xs - 20))
    for k in range(4):
        np.testing.assert_array_equal(zero[k], photo[ys[k] - 20 : ys[k] + 21, xs[k] - 20 : xs[k] + 21])
    for angle, turns in ((90, 1), (180, 2), (-90, 3), (270, 3), (360, 0), (-180, 2)):
        rot = extract_rotated(photo, ys, xs, np.full(4, angle))
        for k in range(4):
            np.testing.assert_array_equal(rot[k], np.rot90(zero[k], turns))
    half = extract_rotated(photo, ys, xs, np.full(4, 180))
    np.testing.assert_array_equal(half, zero[:, ::-1, ::-1])
    # angles mixed in one call
    mixed = extract_rotated(photo, ys, xs, np.array([0, 90, 180, 270]))
    for k in range(4):
        np.testing.assert_array_equal(mixed[k], np.rot90(zero[k], k))


def test_extract_rotated_other_angles(photo):
    ys, xs = np.array([30, 44, 60]), np.array([60, 50, 70])
    for angle in (60, -30, 135, 17.5):
        rot = extract_rotated(photo, ys, xs, np.full(3, angle))
        assert rot.shape == (3, PATCH, PATCH, 3) and rot.dtype == np.uint8
        for k in range(3):
            diff = np.abs(rot[k, 20, 20].astype(int) - photo[ys[k], xs[k]].astype(int))
            assert diff.max() <= 1


def test_extract_rotated_samples_the_rotated_grid():
    # on a linear image bilinear interpolation is exact, so the rotated patch is known in closed form;
    # counter-clockwise as displayed, the same sense as the exact quarter turns (np.rot90)
    yy, xx = np.mgrid[0:100, 0:110].astype(np.float64)
    f = lambda y, x: np.stack([0.01 * y + 0.02 * x + 0.1, 0.03 * y - 0.01 * x + 2.0], axis=-1)  # noqa: E731
    img = f(yy, xx).astype(np.float32)
    d = np.arange(PATCH) - 20.0
    di, dj = d[:, None], d[None, :]
    for angle in (90, 60, -30, 135, 200):
        t = math.radians(angle)
        expect = f(50 + di * math.cos(t) + dj * math.sin(t), 55 - di * math.sin(t) + dj * math.cos(t))
        got = extract_rotated(img, np.array([50]), np.array([55]), np.array([angle]))[0]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expect, atol=2e-3)  # OpenCV quantises positions to 1/32 px


def test_extract_rotated_rejects_centres_near_the_border(photo):
    h, w = photo.shape[:2]
    m = ROT_MARGIN
    extract_rotated(photo, np.array([m, h - m - 1]), np.array([m, w - m - 1]), np.array([30, 30]))
    for y, x in ((m - 1, 50), (50, m - 1), (h - m, 50), (50, w - m)):
        with pytest.raises(ValueError, match="inside"):
            extract_rotated(photo, np.array([50, y]), np.array([50, x]), np.array([0, 0]))
    assert extract_rotated(photo, np.array([], int), np.array([], int), np.array([], int)).shape == (0, 41, 41, 3)


# ---------------------------------------------------------------- write_patch_set
ORIENTATIONS = (0, -90, -30, 60, 135, 180)


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(9)
    images, masks = [], []
    for shape in ((80, 90), (84, 88), (96, 72), (72, 100)):
        images.append(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        masks.append(inner(rng.random(shape) < 0.08))
    load = lambda e: (images[e], masks[e])  # noqa: E731
    return images, masks, load


def _plan(masks, images):
    spec = [("train", 0), ("train", 1), ("val", 0), ("val", 1)]
    cells = [Cell(entry=e, split=sp, label=lab, count=int(masks[e].sum()), shape=images[e].shape)
             for e, (sp, lab) in enumerate(spec)]
    plan = allocate(cells, per_label=30, val_fraction=0.4)
    return cells, plan


def test_inner_clears_the_rotation_margin():
    m = inner(np.ones((70, 80), np.uint8))
    assert m.dtype == bool
    assert m.sum() == (70 - 2 * ROT_MARGIN) * (80 - 2 * ROT_MARGIN)
    assert m[ROT_MARGIN, ROT_MARGIN] and not m[ROT_MARGIN - 1, 40] and not m[35, 80 - ROT_MARGIN]
    assert margin_for("symmetries") == 20 and margin_for("rotations") == ROT_MARGIN
    with pytest.raises(ValueError, match="augment"):
        margin_for("flips")


def test_write_patch_set(tmp_path, source):
    images, masks, load = source
    cells, plan = _plan(masks, images)
    assert plan == {"train": {0: 18, 1: 18}, "val": {0: 12, 1: 12}}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "stale.npy").write_bytes(b"old")  # an existing folder is replaced
    sizes = write_patch_set(tmp_path / "a", cells, load, seed=1, progress=False)
    assert sizes == {"train": 36, "val": 24}
    write_patch_set(tmp_path / "b", cells, load, seed=1, progress=False)
    names = sorted(["train_pixels.npy", "train_images.npy", "train_pos.npy", "train_y.npy", "train_meta.npy",
                    "val_x.npy", "val_y.npy", "val_meta.npy"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no .tmp folder left
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    label_of = {c.entry: (c.split, c.label) for c in cells}
    # training split: the two training images stored whole, positions into them
    table = np.load(tmp_path / "a" / "train_images.npy")
    pixels = np.load(tmp_path / "a" / "train_pixels.npy")
    assert pixels.size == images[0].size + images[1].size
    np.testing.assert_array_equal(table, [[0, 80, 90], [images[0].size, 84, 88]])
    samples = TrainingSet(tmp_path / "a", batch_size=36)
    assert len(samples) == 36 and samples.steps_per_epoch == 1
    meta = np.load(tmp_path / "a" / "train_meta.npy")
    np.testing.assert_array_equal(samples.cut(np.arange(36)),
                                  [extract_patches(np.pad(images[e], ((20, 20), (20, 20), (0, 0))), [yy], [xx])[0]
                                   for e, yy, xx in meta])
    for split in SPLITS:
        y = np.load(tmp_path / "a" / f"{split}_y.npy")
        meta = np.load(tmp_path / "a" / f"{split}_meta.npy")
        n = sizes[split]
        assert y.shape == (n,) and y.dtype == np.uint8 and meta.shape == (n, 3) and meta.dtype == np.int32
        assert Counter(y.tolist()) == plan[split]
        assert len({tuple(r) for r in meta.tolist()}) == n  # distinct positions
        for entry, yy, xx in meta:
            assert masks[entry][yy, xx] and 20 <= yy < images[entry].shape[0] - 20
        for row in range(n):
            assert label_of[meta[row, 0]] == (split, y[row])
        for c in cells:
            if c.split == split:
                assert (meta[:, 0] == c.entry).sum() == c.take
        assert (np.diff(meta[:, 0]) != 0).sum() > 2  # stored in shuffled order, not entry by entry
    x = np.load(tmp_path / "a" / "val_x.npy")
    assert x.shape == (24, PATCH, PATCH, 3) and x.dtype == np.uint8
    for row, (entry, yy, xx) in enumerate(np.load(tmp_path / "a" / "val_meta.npy")):
        np.testing.assert_array_equal(x[row], images[entry][yy - 20 : yy + 21, xx - 20 : xx + 21])
    other = write_patch_set(tmp_path / "c", cells, load, seed=2, progress=False)
    assert other == sizes
    assert (tmp_path / "c" / "train_pos.npy").read_bytes() != (tmp_path / "a" / "train_pos.npy").read_bytes()
    with pytest.raises(ValueError, match="shape"):
        write_patch_set(tmp_path / "d", [Cell(0, "train", 0, 5, 2)], load, seed=0, progress=False)


def test_symmetries_are_the_eight_of_the_square():
    x = np.arange(2 * 5 * 5 * 1).reshape(2, 5, 5, 1)
    outs = [symmetries(x, np.full(2, k)) for k in range(8)]
    np.testing.assert_array_equal(outs[0], x)
    np.testing.assert_array_equal(outs[1][0, :, :, 0], np.rot90(x[0, :, :, 0]))
    np.testing.assert_array_equal(outs[4][0, :, :, 0], x[0, :, :, 0].T)
    assert len({o[0].tobytes() for o in outs}) == 8  # all different
    for o in outs:  # permutations of the pixels: nothing resampled
        assert sorted(o[0].ravel().tolist()) == sorted(x[0].ravel().tolist())
    mixed = symmetries(x, np.array([3, 6]))
    np.testing.assert_array_equal(mixed[0], outs[3][0])
    np.testing.assert_array_equal(mixed[1], outs[6][1])


def test_training_batches_are_a_function_of_the_batch_number(tmp_path, source):
    images, masks, load = source
    cells, _ = _plan(masks, images)
    write_patch_set(tmp_path / "p", cells, load, seed=1, progress=False)
    a = TrainingSet(tmp_path / "p", seed=4, batch_size=10)
    b = TrainingSet(tmp_path / "p", seed=4, batch_size=10)
    assert a.steps_per_epoch == 4
    plain = a.cut(np.arange(36))
    key = {p.tobytes(): i for i, p in enumerate(plain)}
    seen = []
    for g in range(8):
        xa, ya = a.batch(g)
        xb, yb = b.batch(7 - g if g >= 4 else g)  # another order of asking
        if g < 4:
            np.testing.assert_array_equal(xa, xb)
        assert len(xa) == (6 if g % 4 == 3 else 10)
        # each drawn patch is a symmetry of one stored position's patch, with its label
        for x, y in zip(xa, ya):
            found = [i for k in range(8) for i in [key.get(symmetries(x[None], [k])[0].tobytes())] if i is not None]
            assert found and a.y[found[0]] == y
            seen.append(found[0])
    assert sorted(seen) == sorted(list(range(36)) * 2)  # every epoch draws every sample once
    np.testing.assert_array_equal(a.batch(3)[0], b.batch(3)[0])
    assert not np.array_equal(a.batch(0)[1], a.batch(4)[1]) or not np.array_equal(a.batch(0)[0], a.batch(4)[0])
    rot = TrainingSet(tmp_path / "p", "rotations", (90, 30), seed=4, batch_size=10)
    assert rot.batch(0)[0].shape == (10, PATCH, PATCH, 3)
    with pytest.raises(ValueError, match="not a patch set"):
        TrainingSet(tmp_path / "missing")


def test_open_split_and_row_batches(tmp_path, source):
    images, masks, load = source
    cells, _ = _plan(masks, images)
    write_patch_set(tmp_path / "p", cells, load, seed=1, progress=False)
    x, y = open_split(tmp_path / "p", "val")
    assert isinstance(x, np.memmap) and not x.flags.writeable
    rows = Counter(a.tobytes() + bytes([b]) for a, b in zip(np.asarray(x), np.asarray(y)))
    for seed, block, batch in ((None, 4096, 5), (None, 7, 5), (3, 7, 5), (3, 10, 4), (0, 24, 24)):
        got = Counter()
        for idx in row_batches(len(y), batch, seed=seed, block=block):
            assert 1 <= len(idx) <= batch and np.ptp(idx) < block  # a batch lies within one block
            xb, yb = x[idx], y[idx]
            assert xb.dtype == np.uint8 and xb.shape[1:] == (PATCH, PATCH, 3)
            got.update(a.tobytes() + bytes([b]) for a, b in zip(xb, yb))
        assert got == rows
    # without a seed, the file order; with one, shuffled but reproducible
    ids = np.arange(1000)
    np.testing.assert_array_equal(np.concatenate(row_batches(1000, 64, block=100)), ids)
    a = np.concatenate(row_batches(1000, 64, seed=5, block=100))
    b = np.concatenate(row_batches(1000, 64, seed=5, block=100))
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == ids.tolist() and not np.array_equal(a, ids)
    assert not np.array_equal(np.concatenate(row_batches(1000, 64, seed=6, block=100)), a)
    np.save(tmp_path / "p" / "val_y.npy", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="differ in length"):
        open_split(tmp_path / "p", "val")


# ---------------------------------------------------------------- tiles
def test_rot_margin():
    from defocus.patches import rot_margin

    assert rot_margin(41) == ROT_MARGIN == 29
    assert rot_margin(73) == 51  # ceil(36 * sqrt(2))
    assert rot_margin(1) == 0


def test_extract_rotated_sizes_and_masks():
    import cv2

    photo = np.random.default_rng(6).integers(0, 256, (130, 140, 3), dtype=np.uint8)
    ys, xs = np.array([60, 70]), np.array([80, 75])
    big = extract_rotated(photo, ys, xs, np.array([0, 90]), size=73)
    assert big.shape == (2, 73, 73, 3)
    np.testing.assert_array_equal(big[0], photo[60 - 36 : 60 + 37, 80 - 36 : 80 + 37])
    np.testing.assert_array_equal(big[1], np.rot90(photo[70 - 36 : 70 + 37, 75 - 36 : 75 + 37]))
    # the 41 px patch is the centre of the 73 px one, at any angle (up to OpenCV's 1/32 px
    # fixed-point sampling grid: at most 255 / 32 grey levels on this noise)
    for angle in (0, 30, -135):
        a = extract_rotated(photo, ys, xs, np.full(2, angle), size=73)[:, 16:57, 16:57].astype(int)
        b = extract_rotated(photo, ys, xs, np.full(2, angle)).astype(int)
        assert np.abs(a - b).max() <= 8 and np.abs(a - b).mean() < 0.2
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[60, 70:90] = 1
    got = extract_rotated(mask, np.array([60]), np.array([80]), np.array([30]), size=21, interpolation=cv2.INTER_NEAREST)
    assert got.shape == (1, 21, 21) and set(np.unique(got)) == {0, 1} and got[0, 10, 10] == 1
    with pytest.raises(ValueError, match="odd"):
        extract_rotated(photo, ys, xs, np.zeros(2, int), size=40)


def test_cut_tiles_labels_edge_pixels():
    from defocus.patchsets import cut_tiles

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 130, 3), dtype=np.uint8)
    edges = np.zeros((120, 130), bool)
    edges[60, :] = True  # a horizontal line of 11 pixels inside an 11 px tile ...
    edges[:, 65] = True  # ... and a vertical one: 21 labelled pixels at angle 0
    ys, xs, angles = np.array([60, 60]), np.array([65, 65]), np.array([0, 90])
    x, pos, w = cut_tiles(image, edges, ys, xs, angles, tile=11, per_tile=30, rng=rng)
    assert x.shape == (2, 51, 51, 3) and pos.shape == (2, 30, 2) and w.shape == (2, 30)
    np.testing.assert_array_equal(x[0], image[60 - 25 : 60 + 26, 65 - 25 : 65 + 26])
    assert w.sum(axis=1).tolist() == [21, 21]
    for b in range(2):
        got = {tuple(p) for p in pos[b][w[b] == 1].tolist()}
        assert got == {(5, j) for j in range(11)} | {(i, 5) for i in range(11)}
        assert (pos[b][w[b] == 0] == 5).all()  # padding points at the centre, with weight 0
    x, pos, w = cut_tiles(image, edges, ys, xs, angles, tile=11, per_tile=8, rng=rng)
    assert w.all() and len({tuple(p) for p in pos[0].tolist()}) == 8  # a random subset, no repeats
    assert all(p[0] == 5 or p[1] == 5 for p in pos.reshape(-1, 2).tolist())


def test_write_tile_set(tmp_path, source):
    from defocus.patchsets import TILE_ARRAYS, cut_tiles, open_tiles, tile_margin, write_tile_set

    images, masks, load = source
    tile = 7
    m = tile_margin(tile)
    assert m == 33
    cells = [Cell(entry=e, split=sp, label=lab, count=int(inner(masks[e], m).sum()), take=t)
             for e, (sp, lab, t) in enumerate([("train", 0, 3), ("train", 1, 2), ("val", 0, 4), ("train", 1, 0)])]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        assert write_tile_set(tmp_path / name, cells, load, ORIENTATIONS, tile, 5, seed=1, progress=False) == 5
    assert open_tiles(tmp_path / "empty") is None
    t = open_tiles(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(f"train_tiles_{k}.npy" for k in TILE_ARRAYS)
    for k in TILE_ARRAYS:
        assert (tmp_path / "a" / f"train_tiles_{k}.npy").read_bytes() == (tmp_path / "b" / f"train_tiles_{k}.npy").read_bytes()
    assert t["x"].shape == (5, 47, 47, 3) and t["pos"].shape == (5, 5, 2) and t["w"].shape == (5, 5)
    assert Counter(t["y"].tolist()) == {0: 3, 1: 2}
    for row in range(5):
        entry, yy, xx, angle = t["meta"][row]
        assert cells[entry].split == "train" and cells[entry].label == t["y"][row]
        assert masks[entry][yy, xx] and m <= yy < images[entry].shape[0] - m and angle in ORIENTATIONS
        assert t["w"][row].sum() >= 1
        x1, _, _ = cut_tiles(images[entry], masks[entry], [yy], [xx], [angle], tile, 5, np.random.default_rng(0))
        np.testing.assert_array_equal(t["x"][row], x1[0])
    with pytest.raises(ValueError, match="odd"):
        write_tile_set(tmp_path / "a", cells, load, ORIENTATIONS, 8, 5, seed=1, progress=False)
