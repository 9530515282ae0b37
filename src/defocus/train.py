"""Training B-NET and E-NET on the patch sets (paper, Section IV-A).

Softmax cross-entropy, Adam, batch 256, learning rate 1e-3 divided by 10 every
``lr_step`` epochs (params.yaml; the paper: 10 for B-NET, 5 for E-NET). E-NET gets the f1-NET of the
trained B-NET, frozen. Training runs in the backend's training scope (all local
devices: :func:`defocus.backend.training_scope`), logs every epoch
with dvclive, and can be killed at any time: Keras' ``BackupAndRestore`` keeps a
checkpoint at each epoch end and a re-run continues from it.

When the patch set has training tiles (``patches.tile`` > 0), training is
*dense*: each step runs the network once over a few tiles and takes the loss at
up to K edge pixels of each (:class:`defocus.dense.DenseTrainer`), which shares
the computation of neighbouring patches. Validation is on the same 41 x 41
validation patches either way.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .backend import keras
from .patchsets import TrainingSet, open_split, open_tiles, row_batches

ops = keras.ops


# ---------------------------------------------------------------- pieces
def lr_at(epoch: int, lr: float, step: int) -> float:
    """Learning rate of a 0-based epoch: ``lr / 10 ** (epoch // step)``."""
    return float(lr) * 0.1 ** (epoch // int(step))


def tolerance_accuracy(y_true, y_pred):
    """1 where the prediction is within one class (blur level) of the truth, else 0,
    per sample (Keras averages it, with sample weights if any)."""
    pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(pred))
    return ops.cast(ops.abs(pred - true) <= 1, "float32")


class SplitBatches(keras.utils.PyDataset):
    """One split of a patch set in file order, ``batch_size`` rows a batch: float32
    patches in [0, 1] and int32 labels (validation, test).

    With ``as_tiles``, the batches are what :class:`~defocus.dense.DenseTrainer`
    takes: ``((uint8 patches, pos (B, 1, 2) zeros), labels (B, 1))``, a patch being
    a tile of side 1.
    """

    def __init__(self, folder: Path, split: str, batch_size: int, as_tiles: bool = False):
        super().__init__()
        self.x, self.y = open_split(folder, split)
        self.batch_size, self.as_tiles = int(batch_size), as_tiles

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, i: int):
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x, y = np.asarray(self.x[rows]), np.asarray(self.y[rows]).astype(np.int32)
        if self.as_tiles:
            return (x, np.zeros((len(x), 1, 2), np.int16)), y[:, None]
        return x.astype(np.float32) / np.float32(255.0), y


class PatchBatches(keras.utils.PyDataset):
    """Batches ``start``, ``start + 1``, ... ``steps - 1`` of a :class:`~defocus.patchsets.TrainingSet`
    as (float32 patches in [0, 1], int32 labels): what ``fit`` takes, under any Keras backend.

    Batch ``g`` is a function of ``g`` and the set's seed (epoch ``g // steps_per_epoch``),
    so a run resumed at batch ``start`` sees what an uninterrupted run would have.
    """

    def __init__(self, samples: TrainingSet, steps: int, start: int = 0):
        super().__init__()
        self.samples, self.steps, self.start = samples, int(steps), int(start)

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int):
        x, y = self.samples.batch(self.start + i)
        return x.astype(np.float32) / np.float32(255.0), y.astype(np.int32)


class TileBatches(keras.utils.PyDataset):
    """Batches of training tiles: ``((uint8 tiles, pos), labels (B, K), weights (B, K))``,
    ``ceil(batch_size / K)`` tiles each (``batch_size`` counts labelled pixels).

    Epoch ``e`` reads the (already shuffled) file in the block order of seed ``seed + e``
    (:func:`~defocus.patchsets.row_batches`); batch ``g`` is batch ``g % steps_per_epoch``
    of epoch ``g // steps_per_epoch``; the batches start at epoch ``first_epoch``, so a run
    resumed there sees what an uninterrupted one would have.
    """

    def __init__(self, tiles: dict, batch_size: int, seed: int | None, epochs: int = 1, first_epoch: int = 0):
        super().__init__()
        self.tiles, self.seed = tiles, seed
        self.k = tiles["pos"].shape[1]
        self.per_batch = max(1, math.ceil(int(batch_size) / self.k))
        self.steps_per_epoch = math.ceil(len(tiles["y"]) / self.per_batch)
        self.steps, self.start = int(epochs) * self.steps_per_epoch, int(first_epoch) * self.steps_per_epoch
        self._epoch, self._rows = None, None
        self.pixels = int(np.asarray(tiles["w"], dtype=np.int64).sum())

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int):
        epoch, b = divmod(self.start + i, self.steps_per_epoch)
        if epoch != self._epoch:
            s = None if self.seed is None else self.seed + epoch
            self._epoch, self._rows = epoch, row_batches(len(self.tiles["y"]), self.per_batch, s)
        rows = self._rows[b]
        x, pos, w, y = (np.asarray(self.tiles[n][rows]) for n in ("x", "pos", "w", "y"))
        return (x, pos), np.broadcast_to(y.astype(np.int32)[:, None], w.shape).copy(), w.astype(np.float32)


class LiveLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics and learning rate with dvclive, step = epoch (no timings:
    what dvclive writes is a DVC output, the same bytes on every run)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch, logs=None):
        self.live.step = epoch
        for name, value in (logs or {}).items():
            if name != "learning_rate":
                self.live.log_metric(name if name.startswith("val_") else f"train_{name}", float(value))
        self.live.log_metric("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.live.next_step()


def compile_net(model: keras.Model, lr: float, tolerance: bool) -> None:
    """Adam, softmax cross-entropy; accuracy (and tolerance accuracy), weighted by the
    sample weights where there are any (the padding of tiles)."""
    metrics = ["accuracy"] + ([tolerance_accuracy] if tolerance else [])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", weighted_metrics=metrics)


def fit(model: keras.Model, patches: Path, params: dict, seed: int, live_dir: Path, checkpoint_dir: Path,
        progress: bool = True, augment: str = "symmetries", rotations=(), callbacks=()) -> dict:
    """Train ``model`` (already built and compiled under the strategy) on a patch set.

    Parameters
    ----------
    model : the network, or a :class:`~defocus.dense.DenseTrainer` of it to train
        on the patch set's tiles (``train_samples`` then counts labelled pixels)
    params : the stage's section: ``epochs``, ``lr``, ``lr_step``, ``batch_size``
    augment, rotations : how training patches are augmented when drawn
        (:class:`~defocus.patchsets.TrainingSet`)
    live_dir : dvclive folder (metrics.json, plots/metrics/*.tsv)
    callbacks : further Keras callbacks (after the pipeline's own)
    checkpoint_dir : BackupAndRestore folder; a run killed before the end
        continues from its last finished epoch. Removed when training completes.

    Returns
    -------
    summary : the last epoch's validation metrics, samples per second, seconds
    """
    from dvclive import Live

    from .dense import DenseTrainer

    # a checkpoint left by a run with other settings or data (or the other mode) is not resumed
    stamp = json.dumps({"mode": "dense" if isinstance(model, DenseTrainer) else "patch", "params": params,
                        "augment": [augment, list(rotations)],
                        "seed": seed, "data": sorted((f.name, f.stat().st_size) for f in Path(patches).glob("*.npy"))},
                       sort_keys=True, default=str)
    stamp_file = Path(checkpoint_dir) / "run.json"
    if checkpoint_dir.exists() and (not stamp_file.exists() or stamp_file.read_text() != stamp):
        print(f"{checkpoint_dir}: checkpoint of a run with other settings or data: starting afresh", flush=True)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    resuming = any(f.name != "run.json" for f in checkpoint_dir.iterdir())
    if not resuming:
        shutil.rmtree(live_dir, ignore_errors=True)
    batch = int(params["batch_size"])
    dense = isinstance(model, DenseTrainer)
    first = _resumed_epoch(checkpoint_dir) if resuming else 0  # the epoch BackupAndRestore restores
    if dense:
        tiles = open_tiles(patches)
        if tiles is None:
            raise ValueError(f"{patches}: no training tiles (train_tiles_*.npy) for dense training")
        train = TileBatches(tiles, batch, seed, epochs=int(params["epochs"]), first_epoch=first)
        n_train, steps = train.pixels, train.steps_per_epoch
        if not model.built:  # BackupAndRestore wants a built model; the call creates no variables
            side, k = tiles["x"].shape[1], tiles["pos"].shape[1]
            model((np.zeros((1, side, side, 3), np.uint8), np.zeros((1, k, 2), np.int16)))
    else:
        samples = TrainingSet(patches, augment, rotations, seed=seed, batch_size=batch)
        n_train, steps = len(samples), samples.steps_per_epoch
        train = PatchBatches(samples, int(params["epochs"]) * steps, start=first * steps)
    val = SplitBatches(patches, "val", batch, as_tiles=dense)
    n_val = len(val.y)
    if n_train == 0:
        raise ValueError(f"{patches}: the training split is empty")
    val_steps = math.ceil(n_val / batch) if n_val else None
    if resuming:  # the curves continue from the epoch training resumes at, without repeated steps
        _truncate_curves(live_dir, first)
    live = Live(str(live_dir), resume=resuming, dvcyaml=None, save_dvc_exp=False, report=None)
    schedule = keras.callbacks.LearningRateScheduler(lambda e, _lr: lr_at(e, params["lr"], params["lr_step"]))
    backup = keras.callbacks.BackupAndRestore(str(checkpoint_dir), save_freq="epoch", delete_checkpoint=True)
    timer = _Throughput(n_train)
    t0 = time.perf_counter()
    hist = model.fit(
        train, validation_data=val if n_val else None, epochs=int(params["epochs"]),
        steps_per_epoch=steps, validation_steps=val_steps,
        callbacks=[SeedStates(checkpoint_dir), backup, schedule, timer, LiveLogger(live), *callbacks],
        shuffle=False,  # the order is the data's own (PatchBatches)
        verbose=2 if progress else 0,
    )
    live.end()
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # finished: nothing to resume
    summary = {k: float(v[-1]) for k, v in hist.history.items() if k.startswith("val_")}
    summary.update(mode="dense" if dense else "patch", train_samples=n_train, val_samples=n_val,
                   epochs=int(params["epochs"]),
                   seconds=round(time.perf_counter() - t0, 1),
                   samples_per_second=round(timer.rate(), 1) if timer.rate() else None)
    return summary


class SeedStates(keras.callbacks.Callback):
    """Saves the dropout layers' random-generator states with each epoch's checkpoint and
    restores them on resume, so a resumed run draws the dropout masks an uninterrupted run
    would (Keras' ``BackupAndRestore`` keeps weights and optimizer, not these states).

    Listed before ``BackupAndRestore``: at an epoch end the states are written first, tagged
    with the epoch the checkpoint resumes at, and restored only when that tag matches.
    """

    def __init__(self, checkpoint_dir: Path):
        super().__init__()
        self.file = Path(checkpoint_dir) / "seed_states.npz"

    def _states(self):
        return [v for v in self.model.variables if "seed_generator" in v.path]

    def on_train_begin(self, logs=None):
        if not self.file.exists():
            return
        with np.load(self.file) as f:
            tag, values = int(f["epoch"]), [f[f"s{i:03d}"] for i in range(len(f.files) - 1)]
        states = self._states()
        # tags start at 1; no BackupAndRestore checkpoint (resumed epoch 0): nothing to restore
        if tag == _resumed_epoch(self.file.parent) and len(values) == len(states):
            for var, value in zip(states, values, strict=True):
                var.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        arrays = {f"s{i:03d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self._states())}
        tmp = self.file.with_name(".seed_states.tmp.npz")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, epoch=np.int64(epoch + 1), **arrays)
        os.replace(tmp, self.file)


def _truncate_curves(live_dir: Path, epoch: int) -> None:
    """Drop the dvclive rows of steps >= ``epoch`` (epochs a resumed run trains again)."""
    for tsv in Path(live_dir).glob("plots/metrics/**/*.tsv"):
        lines = tsv.read_text().splitlines()
        keep = lines[:1] + [r for r in lines[1:] if int(r.split("\t")[0]) < epoch]
        tsv.write_text("\n".join(keep) + "\n")


def _resumed_epoch(checkpoint_dir: Path) -> int:
    """The epoch ``BackupAndRestore`` restores from ``checkpoint_dir`` (0 if none)."""
    meta = Path(checkpoint_dir) / "training_metadata.json"
    return int(json.loads(meta.read_text())["epoch"]) if meta.exists() else 0


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


# ---------------------------------------------------------------- resumable long runs
def save_state(path: Path, model: keras.Model, progress: dict) -> None:
    """Write a training state to one ``.npz`` file, atomically (a temporary file, then renamed).

    It holds the model's variables (weights and the dropout layers' seed state), the
    optimizer's (step count, Adam moments) and ``progress`` (JSON: step, samples,
    schedule, data, precision, learning curve).
    """
    path = Path(path)
    arrays = {f"w{i:03d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"o{i:03d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    arrays["progress"] = np.frombuffer(json.dumps(progress, sort_keys=True).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: Path, model: keras.Model) -> dict:
    """Restore what :func:`save_state` wrote into ``model`` (compiled, same architecture and
    optimizer) and return its progress record."""
    with np.load(Path(path)) as f:
        weights = [f[k] for k in sorted(k for k in f.files if k.startswith("w"))]
        opt = [f[k] for k in sorted(k for k in f.files if k.startswith("o"))]
        progress = json.loads(bytes(f["progress"]).decode())
    if len(weights) != len(model.variables):
        raise ValueError(f"{path}: {len(weights)} model variables stored, the model has {len(model.variables)}")
    for var, value in zip(model.variables, weights):
        var.assign(value)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if len(opt) != len(model.optimizer.variables):
        raise ValueError(f"{path}: {len(opt)} optimizer variables stored, the optimizer has "
                         f"{len(model.optimizer.variables)}")
    for var, value in zip(model.optimizer.variables, opt):
        var.assign(value)
    return progress
