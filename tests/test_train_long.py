"""The resumable long run (scripts/train_long.py): killed mid-epoch, it continues to the same state."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defocus.patchsets import Cell, write_patch_set

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def patch_set(tmp_path_factory):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (90, 100, 3), dtype=np.uint8) for _ in range(4)]
    masks = [rng.random((90, 100)) < 0.2 for _ in range(4)]
    cells = [Cell(e, "train" if e < 3 else "val", e % 3, take=30, shape=(90, 100, 3)) for e in range(4)]
    folder = tmp_path_factory.mktemp("long") / "bnet"
    write_patch_set(folder, cells, lambda e: (images[e], masks[e]), seed=0, progress=False)
    return folder


@pytest.fixture(scope="module")
def short_run(patch_set, tmp_path_factory):
    """A run stopped after 5 steps (one subprocess for the tests that only read or continue it)."""
    state = tmp_path_factory.mktemp("short") / "s"
    assert _run(patch_set, state, "--max-steps", "5").returncode == 0
    return state


def _run(patches, state, *extra):
    cmd = [sys.executable, str(ROOT / "scripts" / "train_long.py"), "--patches", str(patches), "--state", str(state),
           "--batch-size", "16", "--epochs", "3", "--lr-step", "2", "--checkpoint-steps", "4", "--val", "10", *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _state(state):
    with np.load(state / "state.npz") as f:
        return {k: f[k] for k in f.files if k != "progress"}, json.loads(bytes(f["progress"]).decode())


def test_a_killed_run_resumes_to_the_same_step_and_loss(patch_set, tmp_path):
    whole = _run(patch_set, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert "end of the schedule" in whole.stdout
    ref, ref_prog = _state(tmp_path / "whole")
    assert ref_prog["step"] == ref_prog["total_steps"] == 18  # 90 positions, batch 16: 6 steps per epoch
    assert ref_prog["samples"] == 3 * 90

    killed = _run(patch_set, tmp_path / "split", "--die-at-step", "10")  # mid-epoch 1, last checkpoint at step 8
    assert killed.returncode != 0
    _, mid = _state(tmp_path / "split")
    assert mid["step"] == 8 and mid["samples"] == 90 + 2 * 16  # epoch 0 ends with a batch of 10
    again = _run(patch_set, tmp_path / "split")
    assert again.returncode == 0, again.stderr
    assert "continuing at step 8 of 18" in again.stdout
    got, prog = _state(tmp_path / "split")
    assert prog["step"] == 18 and prog["samples"] == ref_prog["samples"]
    assert [(p["start_step"], p["end_step"]) for p in prog["pieces"]] == [(0, 8), (8, 18)]
    assert prog["last_loss"] == pytest.approx(ref_prog["last_loss"], rel=1e-5)
    assert sorted(got) == sorted(ref)
    for k in ref:  # weights, dropout seeds, Adam moments and step count
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert json.loads((tmp_path / "split" / "progress.json").read_text())["step"] == 18


def test_status_and_a_finished_run(patch_set, short_run, tmp_path):
    shutil.copytree(short_run, tmp_path / "s")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_long.py"), "--state", str(tmp_path / "s"),
                          "--status"], capture_output=True, text=True, timeout=60)
    assert '"step": 5' in out.stdout
    size = (tmp_path / "s" / "state.npz").stat().st_size
    assert 6e6 < size < 10e6  # B-NET's state: weights, Adam's moments (issue: at most about 10 MB)
    # --lr-drop-step moves the run's lr / 10 (a CPU budget far short of the schedule): recorded, and
    # kept in the run's configuration, which later pieces read
    moved = _run(patch_set, tmp_path / "s", "--max-steps", "2", "--lr-drop-step", "6")
    assert moved.returncode == 0, moved.stderr
    assert "/ 10 from step 6" in moved.stdout
    _, prog = _state(tmp_path / "s")
    assert prog["config"]["lr_drop_step"] == 6 and prog["step"] == 7
    assert {"step": 5, "event": "lr / 10 from step 6"} in prog["events"]
    again = _run(patch_set, tmp_path / "s", "--max-steps", "1")
    assert again.returncode == 0, again.stderr
    assert "/ 10 from step 6" in again.stdout  # without the option: the run's own (moved) schedule
    _, prog = _state(tmp_path / "s")
    assert len([e for e in prog["events"] if e["event"].startswith("lr")]) == 1


def test_ship_decision_accepts_only_named_losses():
    """ship_long replaces the model only when it wins every comparison, or loses only where told."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from ship_long import decide

    shipped = {"rtf_mae_psi100": 0.214, "rtf_mae_psi20": 0.220, "layered_mae": 0.548, "dbd_accuracy": 0.917}
    cand = {"rtf_mae_psi100": 0.177, "rtf_mae_psi20": 0.187, "layered_mae": 0.396, "dbd_accuracy": 0.883}
    wins, accepted, ship = decide(cand, shipped)
    assert wins == {"rtf_mae_psi100": True, "rtf_mae_psi20": True, "layered_mae": True, "dbd_accuracy": False}
    assert not ship and accepted == {}
    wins, accepted, ship = decide(cand, shipped, ["dbd_accuracy"])
    assert ship and accepted == {"dbd_accuracy": {"candidate": 0.883, "shipped": 0.917}}
    assert not decide(cand, shipped, ["layered_mae"])[2]  # accepting another loss does not help
    unmeasured = {k: v for k, v in cand.items() if k != "layered_mae"}
    assert decide(unmeasured, shipped, ["dbd_accuracy"])[0]["layered_mae"] is None
    assert not decide(unmeasured, shipped, ["dbd_accuracy", "layered_mae"])[2]  # not measured never ships
    assert decide({**cand, "dbd_accuracy": 0.917}, shipped)[2]  # equal accuracy is no loss


def test_ship_candidate_takes_the_enet_of_a_folder(short_run, tmp_path):
    """train_long --export writes the run's B-NET where train@enet reads it; ship_long --enet pairs the run's
    B-NET with an E-NET trained on its f1 (one shared f1-NET); without --enet the shipped E-NET is kept."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from ship_long import candidate

    from defocus import nets
    from defocus.estimate import dense_model
    from defocus.weights import load_model, save_model

    exported = tmp_path / "models" / "bnet"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_long.py"), "--state", str(short_run),
                          "--export", str(exported)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr
    assert "step 5" in out.stdout and sorted(p.name for p in exported.iterdir()) == ["bnet.weights.h5", "summary.json"]
    summary = json.loads((exported / "summary.json").read_text())
    assert summary["validation"]["step"] == 5 and summary["data"]["patches"]["train"] == 90
    run_bnet = nets.build_bnet()
    run_bnet.load_weights(exported / "bnet.weights.h5")
    weights, _ = _state(short_run)
    np.testing.assert_array_equal(np.asarray(run_bnet.variables[0]), weights[sorted(k for k in weights if k.startswith("w"))[0]])

    shipped_enet = nets.build_enet()  # trained on another f1
    save_model(tmp_path / "shipped", nets.build_bnet(), shipped_enet, {"trained_by": "an older pipeline run"})
    own_enet = nets.build_enet(nets.f1_of(run_bnet))  # as train@enet builds it on the exported B-NET
    params = {"seed": 0, "synth_bnet": {"images": 64}, "train": {"bnet": {"epochs": 6}, "enet": {"epochs": 8}},
              "patches": {"augment": "rotations", "bnet": {"per_class": 5000}, "enet": {"per_class": 60000}}}
    save_model(tmp_path / "pipeline", nets.build_bnet(), own_enet, {
        "trained_by": "defocus pipeline (dvc repro)", "params": params,
        "validation": {"bnet": {"val_accuracy": 0.2}, "enet": {"val_accuracy": 0.9}}, "data": {}, "machine": {}})

    def weights_of(net):
        return [np.asarray(v) for v in net.weights]

    state = short_run / "state.npz"
    prog = candidate(state, tmp_path / "shipped", tmp_path / "with_own", tmp_path / "pipeline")
    assert prog["step"] == 5
    got = load_model(tmp_path / "with_own")
    for a, b in zip(weights_of(got.enet), weights_of(own_enet)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_of(got.bnet), weights_of(run_bnet)):
        np.testing.assert_array_equal(a, b)
    assert dense_model(got).shared_f1
    meta = got.meta["enet_from"]
    assert meta["validation"] == {"val_accuracy": 0.9}
    assert meta["params"] == {"seed": 0, "train": {"enet": {"epochs": 8}},
                              "patches": {"augment": "rotations", "enet": {"per_class": 60000}}}
    assert "trained on its f1-NET" in got.meta["trained_by"]

    with pytest.raises(SystemExit, match="another f1-NET"):  # an E-NET of another f1 is no shared-f1 candidate
        candidate(state, tmp_path / "shipped", tmp_path / "wrong", tmp_path / "shipped")
    assert not (tmp_path / "wrong").exists()
    candidate(state, tmp_path / "shipped", tmp_path / "kept")
    kept = load_model(tmp_path / "kept")
    for a, b in zip(weights_of(kept.enet), weights_of(shipped_enet)):
        np.testing.assert_array_equal(a, b)
    assert not dense_model(kept).shared_f1
    assert kept.meta["enet_from"]["trained_by"] == "an older pipeline run"
