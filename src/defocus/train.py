"""Training B-NET and E-NET on the patch sets (paper, Section IV-A).

Softmax cross-entropy, Adam, batch 256, learning rate 1e-3 divided by 10 every
``lr_step`` epochs (10 for B-NET, 5 for E-NET). E-NET gets the f1-NET of the
trained B-NET, frozen. Training runs under a ``tf.distribute`` strategy (all
local GPUs, or several machines when ``TF_CONFIG`` is set), logs every epoch
with dvclive, and can be killed at any time: Keras' ``BackupAndRestore`` keeps a
checkpoint at each epoch end and a re-run continues from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ._tf import keras, tf
from .patchsets import iter_batches, open_split


# ---------------------------------------------------------------- pieces
def lr_at(epoch: int, lr: float, step: int) -> float:
    """Learning rate of a 0-based epoch: ``lr / 10 ** (epoch // step)``."""
    return float(lr) * 0.1 ** (epoch // int(step))


def tolerance_accuracy(y_true, y_pred):
    """Share of predictions within one class (blur level) of the truth."""
    pred = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    true = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    return tf.reduce_mean(tf.cast(tf.abs(pred - true) <= 1, tf.float32))


def strategy() -> tf.distribute.Strategy:
    """The distribution strategy: multi-worker if ``TF_CONFIG`` names several
    workers, else mirrored over the local GPUs, else the default (CPU)."""
    if "TF_CONFIG" in os.environ and len(json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 0:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def patch_dataset(folder: Path, split: str, batch_size: int, seed: int | None) -> tuple[tf.data.Dataset, int]:
    """A tf.data pipeline streaming one split of a patch set: float32 patches in [0, 1], labels.

    With a seed, every epoch reads the (already shuffled) file in a different
    block order (seed + epoch). Returns the dataset and its number of samples.
    """
    x, y = open_split(folder, split)
    n = len(y)
    epoch = [0]

    def gen():
        s = None if seed is None else seed + epoch[0]
        epoch[0] += 1
        yield from iter_batches(x, y, batch_size, seed=s)

    sig = (tf.TensorSpec((None, 41, 41, 3), tf.uint8), tf.TensorSpec((None,), tf.uint8))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, tf.cast(b, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(2), n


class LiveLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics and learning rate with dvclive, step = epoch."""

    def __init__(self, live):
        super().__init__()
        self.live = live
        self.t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.live.step = epoch
        for name, value in (logs or {}).items():
            if name != "learning_rate":
                self.live.log_metric(name if name.startswith("val_") else f"train_{name}", float(value))
        self.live.log_metric("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        if self.t0 is not None:
            self.live.log_metric("epoch_seconds", round(time.perf_counter() - self.t0, 2), plot=False)
        self.live.next_step()


def compile_net(model: keras.Model, lr: float, tolerance: bool) -> None:
    metrics = ["accuracy"] + ([tolerance_accuracy] if tolerance else [])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=metrics)


def fit(model: keras.Model, patches: Path, params: dict, seed: int, live_dir: Path, checkpoint_dir: Path,
        tolerance: bool, progress: bool = True) -> dict:
    """Train ``model`` (already built and compiled under the strategy) on a patch set.

    Parameters
    ----------
    params : the stage's section: ``epochs``, ``lr``, ``lr_step``, ``batch_size``
    live_dir : dvclive folder (metrics.json, plots/metrics/*.tsv)
    checkpoint_dir : BackupAndRestore folder; a run killed before the end
        continues from its last finished epoch. Removed when training completes.

    Returns
    -------
    summary : the last epoch's validation metrics, samples per second, seconds
    """
    from dvclive import Live

    resuming = checkpoint_dir.exists() and any(checkpoint_dir.iterdir())
    if not resuming:
        shutil.rmtree(live_dir, ignore_errors=True)
    batch = int(params["batch_size"])
    train, n_train = patch_dataset(patches, "train", batch, seed)
    val, n_val = patch_dataset(patches, "val", batch, None)
    if n_train == 0:
        raise ValueError(f"{patches}: the training split is empty")
    steps = math.ceil(n_train / batch)
    val_steps = math.ceil(n_val / batch) if n_val else None
    live = Live(str(live_dir), resume=resuming, dvcyaml=None, save_dvc_exp=False, report=None)
    schedule = keras.callbacks.LearningRateScheduler(lambda e, _lr: lr_at(e, params["lr"], params["lr_step"]))
    backup = keras.callbacks.BackupAndRestore(str(checkpoint_dir), save_freq="epoch", delete_checkpoint=True)
    timer = _Throughput(n_train)
    t0 = time.perf_counter()
    hist = model.fit(
        train.repeat(), validation_data=val.repeat() if n_val else None, epochs=int(params["epochs"]),
        steps_per_epoch=steps, validation_steps=val_steps, callbacks=[backup, schedule, timer, LiveLogger(live)],
        verbose=2 if progress else 0,
    )
    live.end()
    summary = {k: float(v[-1]) for k, v in hist.history.items() if k.startswith("val_")}
    summary.update(train_samples=n_train, val_samples=n_val, epochs=int(params["epochs"]),
                   seconds=round(time.perf_counter() - t0, 1),
                   samples_per_second=round(timer.rate(), 1) if timer.rate() else None)
    return summary


class _Throughput(keras.callbacks.Callback):
    """Median training samples per second over epochs (training part only)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.rates, self.t0 = n, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self.t0 is not None:
            self.rates.append(self.n / (time.perf_counter() - self.t0))
            self.t0 = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()

    def rate(self) -> float | None:
        return float(np.median(self.rates)) if self.rates else None


def freeze_f1_from(enet: keras.Model, bnet: keras.Model) -> None:
    """Copy B-NET's f1-NET weights into E-NET's and freeze them."""
    from .nets import f1_of

    f1 = f1_of(enet)
    f1.set_weights(f1_of(bnet).get_weights())
    f1.trainable = False
