"""Dense evaluation of B-NET and E-NET: the same class probabilities as running
the networks patch by patch, at a fraction of the cost.

Everything before the 7 x 7 merge depends only on image content, so it is
computed once per image (in tiles) instead of once per edge pixel:

* 41 branch: conv1 at every pixel, the 3 x 3 / 3 max-pool becomes a stride-1
  pool, and the convs after it become convs dilated by 3;
* 27 branch: convs 1-3 at every pixel, stride-1 pool, 1 x 1 conv;
* 15 branch: four convs at every pixel.

The first trunk conv (b-NET / e-NET conv1) is linear in the concatenated maps,
so it too is split per branch and computed densely (dilated by 3 for the 41 and
27 branches, which are sampled every 3 px inside a patch). For an edge pixel
(y, x) the trunk's 5 x 5 input is then gathered as::

    A[u, v] = relu(E41[y + 3u, x + 3v] + E27[y + 8 + 3u, x + 8 + 3v] + E15[y + 14 + u, x + 14 + v])

(padded-image coordinates) and only the rest of the trunk and the head run per
edge pixel. The image is processed in tiles with a 40 px overlap (the
receptive field), so peak memory depends on the tile size, not the image size.

``precision="bfloat16"`` (an option, not the default) runs every convolution and
matrix product in bfloat16 (the softmax in float32): 1.6-2.1x faster measured where the
CPU computes bfloat16 natively (a Zen 5 pair, AVX512-BF16 through oneDNN; a GPU is
not measured yet), and not the per-patch path's probabilities any more (``defocus
bench`` measures how far).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import backend
from .hardware import DENSE_PRECISIONS
from .backend import keras
from .levels import DEPTH
from .nets import find_layer
from .patches import CROP_15, CROP_27, padded_window

OFF_27, OFF_15 = CROP_27[0], CROP_15[0]
ops = keras.ops


def _w(net, name, dtype="float32"):
    return [ops.cast(ops.convert_to_tensor(w), dtype) for w in find_layer(net, name).get_weights()]


def _conv(x, w, dilation=1):
    return backend.conv(x, w, dilation)


def trainable_conv():
    """The convolution for training (the backend's, with a gradient for every dilation)."""
    return backend.trainable_conv()


def _relu_conv(x, w, dilation=1, conv=_conv):
    return ops.relu(conv(x, w, dilation))


def _pool(x):
    return ops.max_pool(x, 3, strides=1, padding="valid")


def gather_trunk_input(e3, e1, yx):
    """Trunk input (B, n, 5, 5, C) at tile-local pixels yx (B, n, 2) of B tiles: ``e3``
    (B, h, w, C) (the 41 and 27 contributions, summed) is read every 3 px, ``e1`` (the
    15 branch) every px."""
    g = np.arange(5, dtype=np.int32)
    uu, vv = np.meshgrid(g, g, indexing="ij")

    def take(m, step):
        b, h, w, c = (ops.shape(m)[i] for i in range(4))
        rows = ops.reshape(m, (-1, m.shape[-1]))
        first = ops.reshape(ops.arange(b, dtype="int32") * (h * w), (-1, 1, 1, 1))
        flat = (first + (yx[:, :, None, None, 0] + step * uu) * w + yx[:, :, None, None, 1] + step * vv)
        return ops.take(rows, flat, axis=0)

    return take(e3, 3) + take(e1, 1)


def f1_maps(x, k, th, tw, conv=_conv):
    """Dense maps of the three f1 branches over a batch of padded tiles.

    Parameters
    ----------
    x : (B, th + 40, tw + 40, 3) tensor, the padded tiles
    k : {"41", "27", "15"}: lists of the four conv kernels of each branch
    conv : the convolution (``_conv``, or :func:`trainable_conv` where gradients are needed)

    Returns
    -------
    d41 : (B, th + 18, tw + 18, 64); d27 : (B, th + 18, tw + 18, 64) (same local
    indexing as d41); d15 : (B, th + 6, tw + 6, 64)
    """
    d41 = _Branch41(k["41"], conv)(x)
    c = x[:, OFF_27 : th + 34, OFF_27 : tw + 34]
    for kk in k["27"][:3]:
        c = _relu_conv(c, kk, conv=conv)
    d27 = _relu_conv(_pool(c), k["27"][3], conv=conv)
    c = x[:, OFF_15 : th + 28, OFF_15 : tw + 28]
    for kk in k["15"]:
        c = _relu_conv(c, kk, conv=conv)
    return d41, d27, c


@dataclass
class _Branch41:
    k: list  # conv1..conv4 kernels
    conv: object = _conv

    def __call__(self, x):  # x: (1, th + 40, tw + 40, 3) -> (1, th + 18, tw + 18, 64)
        c = _pool(_relu_conv(x, self.k[0], conv=self.conv))
        for k in self.k[1:]:
            c = _relu_conv(c, k, 3, conv=self.conv)
        return c


class _Head:
    """Trunk (after conv1) and classification head of one network, per edge pixel."""

    def __init__(self, net, prefix, dtype="float32"):
        self.convs = [_w(net, f"{prefix}_conv{i}", dtype)[0] for i in (2, 3, 4)]
        self.dense = [_w(net, f"{prefix}_{n}", dtype) for n in ("dense1", "dense2", "out")]

    def __call__(self, a):  # a: (n, 5, 5, 64) after relu -> float32 probabilities
        for k in self.convs:
            a = _relu_conv(a, k)
        h = ops.reshape(a, (-1, a.shape[-1]))
        for i, (w, b) in enumerate(self.dense):
            h = ops.matmul(h, w) + b
            h = ops.relu(h) if i < 2 else ops.softmax(ops.cast(h, "float32"))
        return h


class DenseModel:
    """Dense evaluator built from a :class:`defocus.weights.Model`.

    Parameters
    ----------
    model : defocus.weights.Model
    tile : int
        Output tile side in px; the feature maps of one tile, about
        ``(tile + 40) ** 2`` px x 64 channels each, bound the memory.
    precision : {"float32", "bfloat16"}
        Compute dtype of the convolutions and matrix products (see the module's notes).
    """

    def __init__(self, model, tile: int, precision: str = "float32"):
        self.tile = int(tile)
        if self.tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        if precision not in DENSE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(DENSE_PRECISIONS)}; got {precision!r}")
        self.precision = dt = precision
        b, e = model.bnet, model.enet
        f1 = {net: {s: [find_layer(net, f"f1_{s}_conv{i}").get_weights()[0] for i in range(1, 5)]
                    for s in ("41", "27", "15")} for net in (b, e)}
        self.shared_f1 = all(
            all(np.array_equal(x, y) for x, y in zip(f1[b][s], f1[e][s], strict=True)) for s in ("41", "27", "15")
        )
        self.f1 = {net: {s: [ops.cast(ops.convert_to_tensor(k), dt) for k in ks] for s, ks in f1[net].items()}
                   for net in (b, e)}
        self.f2 = _Branch41([_w(e, f"f2_41_conv{i}", dt)[0] for i in range(1, 5)])
        kb, ke = _w(b, "b_conv1", dt)[0], _w(e, "e_conv1", dt)[0]
        # split the first trunk kernel by merged branch: B [41, 27, 15], E [f2-41, 41, 27, 15]
        self.kb = {s: kb[:, :, 64 * i : 64 * (i + 1)] for i, s in enumerate(("41", "27", "15"))}
        self.ke = {s: ke[:, :, 64 * i : 64 * (i + 1)] for i, s in enumerate(("f2", "41", "27", "15"))}
        self.head_b, self.head_e = _Head(b, "b", dt), _Head(e, "e", dt)
        self._bnet, self._enet = b, e
        spec_i = ((None, 2), "int32")
        spec_m = ((1, None, None, 64), dt)
        self._enet_fn = backend.compile_fn(self._enet_tile, [((1, None, None, 3), "float32"), spec_i])
        self._bnet_fn = backend.compile_fn(self._bnet_tile, [spec_m, spec_m, spec_m, spec_i])

    # -- dense maps ---------------------------------------------------------------
    _f1_maps = staticmethod(f1_maps)

    @staticmethod
    def _gather(e3, e1, yx):
        return gather_trunk_input(e3, e1, yx[None])[0]

    def _enet_tile(self, x, yx):
        """E-NET probabilities at tile-local pixels yx, and the f1 maps for B-NET."""
        th = ops.shape(x)[1] - 40
        tw = ops.shape(x)[2] - 40
        x = ops.cast(x, self.precision)
        f1e = self._f1_maps(x, self.f1[self._enet], th, tw)
        f1b = f1e if self.shared_f1 else self._f1_maps(x, self.f1[self._bnet], th, tw)
        ke = self.ke
        # the 41 and 27 maps have the same local indexing (see _f1_maps), so they add up before the gather
        e3 = _conv(self.f2(x), ke["f2"], 3) + _conv(f1e[0], ke["41"], 3) + _conv(f1e[1], ke["27"], 3)
        a = self._gather(e3, _conv(f1e[2], ke["15"]), yx)
        return self.head_e(ops.relu(a)), f1b

    def _bnet_tile(self, d41, d27, d15, yx):
        """B-NET probabilities at tile-local pixels yx from the f1 maps."""
        kb = self.kb
        a = self._gather(_conv(d41, kb["41"], 3) + _conv(d27, kb["27"], 3), _conv(d15, kb["15"]), yx)
        return self.head_b(ops.relu(a))

    # -- public -----------------------------------------------------------------
    def classify(self, image, ys, xs, blur_at=None, progress=None, timings=None):
        """E-NET probabilities at (ys, xs), and B-NET probabilities at pattern edges.

        Parameters
        ----------
        image : ndarray, (H, W, 3), RGB in [0, 1]
        ys, xs : int arrays, (N,)
            Edge pixels.
        blur_at : bool array (N,), optional
            Evaluate B-NET at these pixels instead of at the pixels E-NET calls
            pattern edges (used to compare with the per-patch path).
        progress : callable, optional
            Called with the number of pixels done after each tile.
        timings : dict, optional
            Seconds spent are added to its ``"enet"`` (shared features + E-NET)
            and ``"bnet"`` keys.

        Returns
        -------
        p_edge : ndarray, (N, 2) float32
        blur_idx : ndarray, (M,) int
            Indices into (ys, xs) where B-NET was evaluated, ascending.
        p_blur : ndarray, (M, 23) float32
        """
        ys, xs = np.asarray(ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)
        p_edge = np.zeros((len(ys), 2), np.float32)
        blur_rows, blur_idx = [], []
        for idx, pe, chosen, pb in self._tiles(image, ys, xs, blur_at, progress, timings):
            p_edge[idx] = pe
            blur_idx.append(chosen)
            blur_rows.append(pb)
        if not blur_idx:
            return p_edge, np.zeros(0, np.int64), np.zeros((0, 23), np.float32)
        bi, pb = np.concatenate(blur_idx), np.concatenate(blur_rows)
        o = np.argsort(bi, kind="stable")
        return p_edge, bi[o], pb[o]

    def decide(self, image, ys, xs, progress=None, timings=None):
        """What :func:`defocus.estimate.estimate_blur` needs of :meth:`classify`: the most likely
        class of each edge pixel, without keeping the probabilities (1 byte a pixel instead of
        100: about 150 MB less at 12 MP).

        Returns
        -------
        is_depth : ndarray, (N,) bool
            E-NET calls the pixel a depth edge (``p_edge.argmax(axis=1) == DEPTH``).
        blur_idx : ndarray, (M,) int
            The other pixels, ascending (B-NET was evaluated there).
        levels : ndarray, (M,) int
            B-NET's class at ``blur_idx`` (``p_blur.argmax(axis=1)``).
        """
        ys, xs = np.asarray(ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)
        is_depth = np.zeros(len(ys), bool)
        level = np.zeros(len(ys), np.int8)
        for idx, pe, chosen, pb in self._tiles(image, ys, xs, None, progress, timings):
            is_depth[idx] = pe.argmax(axis=1) == DEPTH
            level[chosen] = pb.argmax(axis=1)
        blur_idx = np.flatnonzero(~is_depth)
        return is_depth, blur_idx, level[blur_idx].astype(np.int64)

    def _tile_groups(self, shape, ys, xs):
        """The tiles with edge pixels: (idx into (ys, xs), r0, r1, c0, c1) of each. With static
        shapes every tile is the same size (zeros beyond the image change no edge pixel's output)."""
        if len(ys) == 0:
            return
        h, w = shape
        t = self.tile
        static = backend.STATIC_SHAPES
        order = np.lexsort((xs // t, ys // t))
        keys = (ys[order] // t) * ((w + t - 1) // t) + xs[order] // t
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        for s, e_ in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            idx = order[s:e_]
            r0, c0 = (ys[idx[0]] // t) * t, (xs[idx[0]] // t) * t
            r1, c1 = (r0 + t, c0 + t) if static else (min(r0 + t, h), min(c0 + t, w))
            yield idx, r0, r1, c0, c1

    def macs(self, shape, ys, xs, n_blur: int) -> int:
        """Multiply-adds of :meth:`decide` on an image of ``shape`` (H, W) with edge pixels
        (ys, xs), ``n_blur`` of them pattern edges: the dense maps of every tile with edges
        (:func:`tile_macs`) and the heads at the edge pixels (:func:`head_macs`)."""
        ys, xs = np.asarray(ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)
        maps = sum(tile_macs(r1 - r0, c1 - c0, self.shared_f1) for _, r0, r1, c0, c1 in self._tile_groups(shape, ys, xs))
        return int(maps + len(ys) * head_macs(2) + n_blur * head_macs(23))

    def _tiles(self, image, ys, xs, blur_at, progress, timings):
        """Per tile with edge pixels: (idx, p_edge, chosen, p_blur), ``idx`` the tile's indices
        into (ys, xs), ``chosen`` those where B-NET ran (see :meth:`classify`)."""
        image = np.asarray(image, dtype=np.float32)
        for idx, r0, r1, c0, c1 in self._tile_groups(image.shape[:2], ys, xs):
            # each tile's window is cut and padded on its own (no padded copy of a large photo)
            x = padded_window(image, r0, r1 + 40, c0, c1 + 40)[None]
            yx = np.stack([ys[idx] - r0, xs[idx] - c0], axis=1).astype(np.int32)
            t0 = time.perf_counter()
            pe, maps = self._enet_fn(x, _padded(yx))
            pe = np.asarray(ops.convert_to_numpy(pe))[: len(idx)]
            t1 = time.perf_counter()
            keep = pe.argmax(axis=1) != DEPTH if blur_at is None else np.asarray(blur_at)[idx]
            chosen = idx[keep]
            pb = np.asarray(ops.convert_to_numpy(self._bnet_fn(*maps, _padded(yx[keep]))))[: len(chosen)]
            if timings is not None:
                timings["enet"] = timings.get("enet", 0.0) + t1 - t0
                timings["bnet"] = timings.get("bnet", 0.0) + time.perf_counter() - t1
            yield idx, pe, chosen, pb
            if progress is not None:
                progress(len(idx))


def tile_macs(th: int, tw: int, shared_f1: bool = True) -> int:
    """Multiply-adds of the dense maps of one ``th`` x ``tw`` px tile (:meth:`DenseModel._enet_tile`
    and :meth:`DenseModel._bnet_tile` without the per-pixel heads; see :func:`head_macs`).

    Every convolution's output size follows from the padded tile (``th + 40`` px) as in
    :func:`f1_maps`: 3 x 3 convolutions take ``3 * 3 * 64`` multiply-adds per output channel and
    pixel (``3 * 3 * 3`` for the first of each branch), a dilated one shrinks its map by 6 px.
    """
    k3, k1, first = 9 * 64 * 64, 64 * 64, 9 * 3 * 64

    def area(d):  # pixels of a map with a margin of d px around the tile's th x tw
        return (th + d) * (tw + d)

    b41 = first * area(38) + k3 * (area(30) + area(24) + area(18))  # conv1, pool, three dilated convs
    b27 = first * area(24) + k3 * (area(22) + area(20)) + k1 * area(18)
    b15 = first * area(12) + k3 * (area(10) + area(8) + area(6))
    f1 = b41 + b27 + b15
    trunk_e = k3 * (3 * area(12) + area(4))  # f2-41, f1-41, f1-27 (dilated) and f1-15
    trunk_b = k3 * (2 * area(12) + area(4))
    return (1 if shared_f1 else 2) * f1 + b41 + trunk_e + trunk_b


def head_macs(n_classes: int) -> int:
    """Multiply-adds per edge pixel of one network's head after the first trunk layer: trunk
    conv2 (3 x 3 outputs) and conv3 (1 x 1), the 1 x 1 conv4, the dense layers."""
    from .nets import HEAD_UNITS, WIDTH

    k3 = 9 * WIDTH * WIDTH
    units = (WIDTH, *HEAD_UNITS, n_classes)
    return 9 * k3 + k3 + WIDTH * WIDTH + sum(a * b for a, b in zip(units[:-1], units[1:], strict=False))


def _padded(yx):
    """``yx`` padded with (0, 0) rows to the backend's size for it (:func:`defocus.backend.bucket`:
    one of a few sizes where compiled functions are specialised to shapes, else as it is)."""
    n = backend.bucket(len(yx))
    if n == len(yx):
        return yx
    out = np.zeros((n, 2), np.int32)
    out[: len(yx)] = yx
    return out


# ---------------------------------------------------------------- dense training
class DenseTrainer(keras.Model):
    """Trains a B-NET or E-NET on tiles: one dense pass per tile, the loss at K edge pixels.

    The network's own layers (and so its weights, trainable or frozen) are used;
    the dense pass is the same computation as :class:`DenseModel`, so the output at
    a pixel equals the patch network's output on that pixel's 41 x 41 patch (the
    tests check this), and so do the gradients. A 41 x 41 patch is a tile of side 1,
    so the validation patches go through the same model.

    Inputs are ``(x, pos)``: x (B, t + 40, t + 40, 3) uint8 tiles, pos (B, K, 2)
    int tile-local pixels; the output is (B, K, classes) probabilities.

    Parameters
    ----------
    net : keras.Model, a B-NET (:func:`defocus.nets.build_bnet`) or an E-NET
    """

    def __init__(self, net: keras.Model, conv=None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.kind = "e" if net.name == "enet" else "b"
        self.conv = conv or trainable_conv()

    def _kernel(self, name):
        return ops.cast(find_layer(self.net, name).kernel, self.compute_dtype)

    def call(self, inputs, training=False):
        x, pos = inputs
        x = ops.cast(x, self.compute_dtype) / 255.0
        th, tw = ops.shape(x)[1] - 40, ops.shape(x)[2] - 40
        k = {s: [self._kernel(f"f1_{s}_conv{i}") for i in range(1, 5)] for s in ("41", "27", "15")}
        conv = self.conv
        d41, d27, d15 = f1_maps(x, k, th, tw, conv)
        p = self.kind
        k1 = self._kernel(f"{p}_conv1")
        parts = (["f2"] if p == "e" else []) + ["41", "27", "15"]
        k1 = {s: k1[:, :, 64 * i : 64 * (i + 1)] for i, s in enumerate(parts)}
        e3 = conv(d41, k1["41"], 3) + conv(d27, k1["27"], 3)
        if p == "e":
            f2 = _Branch41([self._kernel(f"f2_41_conv{i}") for i in range(1, 5)], conv)
            e3 += conv(f2(x), k1["f2"], 3)
        pos = ops.cast(pos, "int32")
        a = ops.relu(gather_trunk_input(e3, conv(d15, k1["15"]), pos))
        a = ops.reshape(a, (-1, 5, 5, a.shape[-1]))
        for name in ("conv2", "conv3", "conv4", "flatten", "dense1", "dropout1", "dense2", "dropout2", "out"):
            layer = find_layer(self.net, f"{p}_{name}")
            a = layer(a, training=training) if name.startswith("dropout") else layer(a)
        return ops.reshape(a, (ops.shape(pos)[0], ops.shape(pos)[1], a.shape[-1]))
