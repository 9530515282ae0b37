"""The training loop on a small patch set: per patch and dense (tiles), plus the training benchmark."""

import json

import numpy as np
import pytest

from defocus.patchsets import Cell, write_patch_set, write_tile_set

ORIENTATIONS = (0, -90, -30, 60, 135, 180)


@pytest.fixture(scope="module")
def patch_set(tmp_path_factory):
    """Three classes of random-texture images blurred by different amounts, with patches and 9 px tiles."""
    import cv2

    rng = np.random.default_rng(3)
    images, masks = [], []
    for i in range(6):
        img = rng.integers(0, 256, (110, 120, 3), dtype=np.uint8)
        k = 2 * (i % 3) + 1
        images.append(cv2.GaussianBlur(img, (0, 0), k) if i % 3 else img)
        masks.append(rng.random((110, 120)) < 0.1)
    load = lambda e: (images[e], masks[e])  # noqa: E731
    cells = [Cell(entry=e, split="train" if e < 3 else "val", label=e % 3, take=12, shape=(110, 120, 3))
             for e in range(6)]
    folder = tmp_path_factory.mktemp("patches") / "bnet"
    write_patch_set(folder, cells, load, seed=0, progress=False)
    write_tile_set(folder, cells, load, ORIENTATIONS, tile=9, per_tile=8, seed=0, progress=False)
    return folder


@pytest.mark.backends
@pytest.mark.parametrize("mode", ["patch", "dense"])
def test_fit_both_modes(patch_set, tmp_path, mode):
    from defocus import nets
    from defocus.backend import keras
    from defocus.dense import DenseTrainer
    from defocus.train import compile_net, fit

    keras.utils.set_random_seed(0)
    net = nets.build_bnet()
    model = DenseTrainer(net) if mode == "dense" else net
    compile_net(model, 1e-3, tolerance=True)
    before = [w.copy() for w in net.get_weights()]
    params = {"epochs": 2, "lr": 1e-3, "lr_step": 1, "batch_size": 32}
    summary = fit(model, patch_set, params, 0, tmp_path / "live", tmp_path / "ckpt", progress=False)
    w = np.load(patch_set / "train_tiles_w.npy")
    assert summary["mode"] == mode
    assert summary["train_samples"] == (int(w.sum()) if mode == "dense" else 36)
    assert summary["val_samples"] == 36 and summary["epochs"] == 2
    assert 0 <= summary["val_accuracy"] <= summary["val_tolerance_accuracy"] <= 1
    assert summary["samples_per_second"] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, net.get_weights()))  # the network itself trained
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["step"] == 1 and metrics["learning_rate"] == pytest.approx(1e-4)
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


@pytest.mark.backends  # under JAX too, with TensorFlow unimportable (test.sh)
def test_bench_train(patch_set, tmp_path, capsys):
    from defocus.cli import main

    out = tmp_path / "bench_train.json"
    assert main(["bench-train", "--patches", str(patch_set), "--steps", "2", "--batch-size", "32",
                 "--precision", "float32", "--backends", "this", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["tile"] == 9 and rep["tile_edges"] == 8 and rep["network"] == "bnet"
    assert 32 < rep["patch"]["samples"] <= 64  # 2 steps of up to 32 patches (an epoch ends with a short one)
    assert 0 < rep["dense"]["samples"] <= 2 * 4 * 8  # 2 steps of 4 tiles, up to 8 labelled pixels each
    assert rep["speedup"] == pytest.approx(rep["dense"]["samples_per_s"] / rep["patch"]["samples_per_s"])
    assert "samples/s" in capsys.readouterr().out
    assert main(["bench-train", "--patches", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_fit_discards_a_checkpoint_of_other_settings(patch_set, tmp_path, capsys):
    from defocus import nets
    from defocus.train import compile_net, fit

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "latest.weights.h5").write_bytes(b"left by a run in the other mode")
    net = nets.build_bnet()
    compile_net(net, 1e-3, tolerance=True)
    params = {"epochs": 1, "lr": 1e-3, "lr_step": 1, "batch_size": 32}
    summary = fit(net, patch_set, params, 0, tmp_path / "live", ckpt, progress=False)
    assert summary["epochs"] == 1 and "starting afresh" in capsys.readouterr().out
    assert not ckpt.exists()


def test_bench_train_without_tiles(patch_set, tmp_path):
    """A patch set without training tiles (the default, patches.tile: 0) is timed per patch only."""
    import shutil

    from defocus.cli import main

    plain = tmp_path / "plain"
    shutil.copytree(patch_set, plain, ignore=shutil.ignore_patterns("train_tiles_*"))
    out = tmp_path / "bench_train.json"
    assert main(["bench-train", "--patches", str(plain), "--steps", "2", "--batch-size", "16",
                 "--precision", "float32", "--backends", "this", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["tile"] is None and "dense" not in rep and "speedup" not in rep
    assert rep["patch"]["samples"] == 32 and rep["patch"]["samples_per_s"] > 0


def test_bench_train_time_to_accuracy(patch_set, tmp_path):
    """--benchmark trains until the target accuracy (or the cap) and reports when it got there."""
    from defocus.cli import main

    out = tmp_path / "tta.json"
    args = ["bench-train", "--patches", str(patch_set), "--steps", "1", "--batch-size", "16", "--precision",
            "float32", "--benchmark", str(patch_set), "--eval-every", "0.5", "--backends", "this", "--out", str(out)]
    assert main([*args, "--target", "0.0"]) == 0  # any accuracy reaches 0: at the first measurement
    tta = json.loads(out.read_text())["time_to_accuracy"]
    assert tta["reached"]["samples"] > 0 and tta["curve"][0]["accuracy"] >= 0 and tta["eval_samples"] == 36
    assert main([*args, "--target", "1.1", "--cap-minutes", "0.02"]) == 0  # unreachable: stops at the cap
    tta = json.loads(out.read_text())["time_to_accuracy"]
    assert tta["reached"] is None and 0 <= tta["accuracy"] <= 1 and tta["curve"][-1]["seconds"] >= 1.2
    assert main([*args, "--benchmark", str(tmp_path / "none")]) == 2


def test_an_interrupted_fit_resumes_to_the_uninterrupted_weights(patch_set, tmp_path):
    """Killed after its first epoch, `fit` resumes (weights, Adam, the dropout masks' random
    state, the data order) and ends where an uninterrupted run ends; the curves have each epoch once."""
    from defocus import nets
    from defocus.backend import keras
    from defocus.train import compile_net, fit

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("killed")

    params = {"epochs": 2, "lr": 1e-3, "lr_step": 1, "batch_size": 32}

    def run(name, callbacks=()):
        keras.utils.set_random_seed(0)
        net = nets.build_bnet()  # dropout 0.5: the masks depend on the generators' state
        compile_net(net, 1e-3, tolerance=True)
        fit(net, patch_set, params, 0, tmp_path / f"live_{name}", tmp_path / f"ckpt_{name}", progress=False,
            callbacks=callbacks)
        return net.get_weights()

    whole = run("a")
    with pytest.raises(KeyboardInterrupt):
        run("b", [Stop()])
    assert (tmp_path / "ckpt_b" / "seed_states.npz").exists()
    resumed = run("b")
    for u, v in zip(whole, resumed, strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-6)
    for tsv in (tmp_path / "live_b" / "plots" / "metrics").glob("*.tsv"):
        assert [r.split("\t")[0] for r in tsv.read_text().splitlines()[1:]] == ["0", "1"], tsv.name
