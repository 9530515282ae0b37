"""The networks' benchmark set: fixed test patches from photos and objects no profile trains on.

The download stage reserves the last files of each sharp-photo and salient-object
listing (``download.benchmark``); the ``benchmark`` stage makes from them, with the
constants below (not the profile's parameters), two patch sets whose validation split
is the benchmark (unrotated 41 x 41 patches, :func:`defocus.patchsets.write_patch_set`):

- B-NET: every benchmark photo blurred with each of the 23 disk radii, patches at
  Canny edges, equally many per blur level;
- E-NET: depth edges of two-layer composites (each benchmark object over a benchmark
  photo, every radius pair below) and pattern edges of the photos blurred uniformly,
  gradually and step-wise, equally many per class.

:func:`accuracy` scores a network on them; every accuracy the project reports for a
network (this run's, the shipped model's, the published weights', a long run's) is
measured here.
"""

from __future__ import annotations

import numpy as np

#: Seed of every random choice of the benchmark (independent of the pipeline's ``seed``).
SEED = 2022
#: (object radius, background radius) of the composites, px: synth_enet's default pairs.
RADIUS_PAIRS = ((0.0, 1.0), (0.0, 3.0), (0.0, 5.0), (1.0, 3.0), (1.0, 5.0), (3.0, 5.0))
#: px beyond ``ceil(r_fg)`` around the object's boundary where a Canny edge is a depth edge.
DEPTH_BAND = 2
#: bands of the step-wise pattern images.
PATTERN_STEPS = 4


def accuracy(net, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> dict:
    """Exact and within-one-class accuracy of a Keras network on uint8 patches.

    Parameters
    ----------
    net : keras.Model, (N, 41, 41, 3) float32 in [0, 1] -> class probabilities
    x : uint8 array (N, 41, 41, 3), e.g. a memory map
    y : int array (N,)

    Returns
    -------
    {"accuracy", "tolerance_accuracy" (prediction within one class), "samples"}
    """
    from .backend import keras

    pred = []
    for i in range(0, len(y), batch_size):
        xb = np.asarray(x[i : i + batch_size], dtype=np.float32) / np.float32(255.0)
        pred.append(np.argmax(keras.ops.convert_to_numpy(net(xb, training=False)), axis=-1))
    y = np.asarray(y, dtype=np.int64)
    if not len(y):
        return {"accuracy": None, "tolerance_accuracy": None, "samples": 0}
    pred = np.concatenate(pred)
    return {"accuracy": float(np.mean(pred == y)), "tolerance_accuracy": float(np.mean(np.abs(pred - y) <= 1)),
            "samples": int(len(y))}
