"""Keras 3 definitions of B-NET and E-NET (Karaali, Harte & Jung, TIP 2022).

All networks take one input: an RGB patch of 41 x 41 px centred on an edge pixel,
float32 in [0, 1] (uint8 / 255). The 27 and 15 px scales are cut out of it inside
the network (``P27 = P41[8:35, 8:35]``, ``P15 = P41[14:29, 14:29]``, exactly as the
published code does), so a model never needs three separate inputs.

Every convolution is 3 x 3 (or 1 x 1), stride 1, VALID, bias-free, followed by a
ReLU; every max-pool is 3 x 3, stride 3, SAME. The branches meet at 7 x 7.

=========  ==========================================================  ==========
network    structure                                                    parameters
=========  ==========================================================  ==========
B-NET      f1-NET [41, 27, 15] -> b-NET -> head (23 classes)            560,731
E-NET      [f2-41, f1-41, f1-27, f1-15] -> e-NET -> head (2 classes)    706,744
=========  ==========================================================  ==========

Class ``k`` of B-NET is the disk radius ``0.5 + 0.25 k`` px (see
:data:`defocus.levels.BLUR_RADII`); class 0 of E-NET is a pattern edge, class 1 a depth edge.
"""

from __future__ import annotations

from .backend import keras
from .levels import BLUR_RADII, DEPTH, N_BLUR, PATTERN  # noqa: F401 (re-exported)
from .patches import CROP_15, CROP_27, PATCH

layers = keras.layers

#: Layer plan of each branch: ("c", k) a k x k conv to 64 channels, ("p",) a max-pool.
BRANCH_PLAN = {
    "41": (("c", 3), ("p",), ("c", 3), ("c", 3), ("c", 3)),
    "27": (("c", 3), ("c", 3), ("c", 3), ("p",), ("c", 1)),
    "15": (("c", 3), ("c", 3), ("c", 3), ("c", 3)),
}
TRUNK_PLAN = (("c", 3), ("c", 3), ("c", 3), ("c", 1))
WIDTH = 64
HEAD_UNITS = (300, 150)


def _conv(k: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(WIDTH, k, padding="valid", use_bias=False, activation="relu", name=name)


def _branch(x, scale: str, prefix: str):
    """Apply the layers of one branch (``scale`` in 41/27/15) to a tensor."""
    n = 0
    for step in BRANCH_PLAN[scale]:
        if step[0] == "p":
            x = layers.MaxPooling2D(3, strides=3, padding="same", name=f"{prefix}_{scale}_pool")(x)
        else:
            n += 1
            x = _conv(step[1], f"{prefix}_{scale}_conv{n}")(x)
    return x


def _crops(inp):
    p27 = layers.Cropping2D((CROP_27, CROP_27), name="crop27")(inp)
    p15 = layers.Cropping2D((CROP_15, CROP_15), name="crop15")(inp)
    return inp, p27, p15


def build_f1(name: str = "f1_net") -> keras.Model:
    """f1-NET: the three-scale feature extractor shared by B-NET and E-NET.

    Returns a model mapping a (41, 41, 3) patch to three (7, 7, 64) maps, in the
    order [41, 27, 15].
    """
    inp = keras.Input((PATCH, PATCH, 3), name="patch")
    p41, p27, p15 = _crops(inp)
    outs = [_branch(p, s, "f1") for p, s in ((p41, "41"), (p27, "27"), (p15, "15"))]
    return keras.Model(inp, outs, name=name)


def _trunk_and_head(x, prefix: str, n_classes: int, dropout: float):
    for i, step in enumerate(TRUNK_PLAN, 1):
        x = _conv(step[1], f"{prefix}_conv{i}")(x)
    x = layers.Flatten(name=f"{prefix}_flatten")(x)
    for i, units in enumerate(HEAD_UNITS, 1):
        x = layers.Dense(units, activation="relu", name=f"{prefix}_dense{i}")(x)
        x = layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(x)
    return layers.Dense(n_classes, activation="softmax", name=f"{prefix}_out")(x)


def build_bnet(f1: keras.Model | None = None, dropout: float = 0.5) -> keras.Model:
    """B-NET: 23-class blur classifier (560,731 parameters).

    Parameters
    ----------
    f1 : keras.Model, optional
        An existing f1-NET to use (weights shared); a new one is built if omitted.
    dropout : float
        Dropout rate in the classification head (training only).
    """
    f1 = f1 or build_f1()
    inp = keras.Input((PATCH, PATCH, 3), name="patch")
    x = layers.Concatenate(name="merge")(f1(inp))
    out = _trunk_and_head(x, "b", N_BLUR, dropout)
    return keras.Model(inp, out, name="bnet")


def build_enet(f1: keras.Model | None = None, dropout: float = 0.5) -> keras.Model:
    """E-NET: pattern (0) / depth (1) edge classifier (706,744 parameters).

    Parameters
    ----------
    f1 : keras.Model, optional
        The f1-NET of a trained B-NET (shared, and frozen by the caller while E-NET
        trains). A new one is built if omitted.
    dropout : float
        Dropout rate in the classification head (training only).
    """
    f1 = f1 or build_f1()
    inp = keras.Input((PATCH, PATCH, 3), name="patch")
    f2_41 = _branch(inp, "41", "f2")
    x = layers.Concatenate(name="merge")([f2_41, *f1(inp)])
    out = _trunk_and_head(x, "e", 2, dropout)
    return keras.Model(inp, out, name="enet")


def f1_of(model: keras.Model) -> keras.Model:
    """The f1-NET sub-model inside a B-NET or E-NET."""
    return model.get_layer("f1_net")


def find_layer(model: keras.Model, name: str):
    """The layer called ``name`` in ``model`` or in any sub-model (KeyError if none)."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return find_layer(layer, name)
            except KeyError:
                pass
    raise KeyError(name)


def conv_layers(model: keras.Model, prefix: str) -> list[layers.Conv2D]:
    """Conv layers of ``model`` (searched recursively) whose names start with ``prefix``,
    in network order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += conv_layers(layer, prefix)
        elif isinstance(layer, layers.Conv2D) and layer.name.startswith(prefix):
            found.append(layer)
    return found
