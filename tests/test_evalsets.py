"""Evaluation sets, label images and the report helpers."""

import json

import numpy as np
import pytest

from defocus import report
from defocus.evalsets import decode_labels, encode_labels, eval_images, load_blurred_mask, sparse_from_labels
from defocus.images import save_png
from defocus.levels import BLUR_RADII


def test_labels_round_trip():
    ys, xs = np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0])
    is_depth = np.array([False, True, False, True])
    levels = np.array([0, 22, 7, 3])
    lab = encode_labels((4, 4), ys, xs, is_depth, levels)
    pattern, depth, level = decode_labels(lab)
    assert pattern.sum() == 2 and depth.sum() == 2
    assert pattern[0, 3] and depth[1, 2] and pattern[2, 1] and depth[3, 0]
    assert level[0, 3] == 0 and level[1, 2] == 22 and level[2, 1] == 7 and level[3, 0] == 3
    assert (level[lab == 0] == -1).all()

    sparse, known, dep = sparse_from_labels(lab)
    assert known.sum() == 2 and dep.sum() == 2
    assert sparse[0, 3] == BLUR_RADII[0] and sparse[2, 1] == BLUR_RADII[7] and sparse[1, 2] == 0
    sparse, known, dep = sparse_from_labels(lab, use_enet=False)  # every edge carries its B-NET value
    assert known.sum() == 4 and not dep.any() and sparse[1, 2] == BLUR_RADII[22]


def _layout(tmp_path):
    raw, test = tmp_path / "raw", tmp_path / "test"
    (raw / "rtf").mkdir(parents=True)
    (raw / "dbd" / "images").mkdir(parents=True)
    (raw / "dbd" / "gt").mkdir(parents=True)
    test.mkdir()
    for n in ("01", "05"):
        save_png(raw / "rtf" / f"image_{n}.png", np.zeros((8, 8, 3), np.uint8))
        (raw / "rtf" / f"map_{n}.mat").write_bytes(b"")
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 255  # left half white
    for n in ("a", "b", "c"):
        save_png(raw / "dbd" / "images" / f"{n}.png", np.zeros((8, 8, 3), np.uint8))
    for n in ("a", "b"):  # c has no mask: left out
        save_png(raw / "dbd" / "gt" / f"{n}.bmp", mask)
    (test / "index.json").write_text(json.dumps({"entries": [
        {"name": "t0", "blurry": "t0_b.png", "sharp": "t0_s.png", "focus": "t0_f.png", "radius": "t0_r.npy"}]}))
    return raw, test


def test_eval_images_layout_and_polarity(tmp_path):
    raw, test = _layout(tmp_path)
    sets = eval_images(raw, test)
    assert [it.name for it in sets["rtf"]] == ["image_01", "image_05"]
    assert [it.name for it in sets["dbd"]] == ["a", "b"]
    assert [it.name for it in sets["synthetic"]] == ["t0"]
    assert sets["rtf"][0].sharp is None and sets["synthetic"][0].sharp.name == "t0_s.png"
    assert [len(v) for v in eval_images(raw, test, max_images=1).values()] == [1, 1, 1]

    # 255 = in focus: the blurred pixels are the black right half; polarity 0 flips it
    blurred = load_blurred_mask(sets["dbd"][0], (8, 8))
    assert blurred[:, 4:].all() and not blurred[:, :4].any()
    flipped = load_blurred_mask(eval_images(raw, test, dbd_in_focus=0)["dbd"][0], (8, 8))
    assert (flipped == ~blurred).all()


def test_eval_images_missing_sets(tmp_path):
    sets = eval_images(tmp_path / "nothing", tmp_path / "none")
    assert sets == {"rtf": [], "dbd": [], "synthetic": []}


def test_seconds_add_network_and_propagation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports" / "timings").mkdir(parents=True)
    net = {"edges": 0.1, "enet": 0.5, "bnet": 0.2, "bnet_all_edges": 0.9}
    (tmp_path / "reports/timings/times_infer.json").write_text(json.dumps({"ours": {"rtf": {"x": net}}}))
    (tmp_path / "reports/timings/times_main.json").write_text(json.dumps({"ours": {"rtf": {"x": 0.25}}}))
    (tmp_path / "reports/timings/times_baselines.json").write_text(
        json.dumps({"no_enet": {"rtf": {"x": 0.3}}, "zhuo_sim": {"rtf": {"x": 4.0}}}))
    from defocus.evalsets import EvalImage

    it = EvalImage("rtf", "x", tmp_path / "x.png")
    by_key = {m.key: m for m in report.METHODS}
    times = report.load_times()
    assert report.seconds(by_key["ours"], it, times) == pytest.approx(0.1 + 0.5 + 0.2 + 0.25)
    assert report.seconds(by_key["no_enet"], it, times) == pytest.approx(0.1 + 0.9 + 0.3)
    assert report.seconds(by_key["zhuo_sim"], it, times) == pytest.approx(4.0)
    assert np.isnan(report.seconds(by_key["matting"], it, times))


def test_markdown_table():
    assert report.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert report.fmt(float("nan")) == "n/a" and report.fmt(0.12345) == "0.123"


def test_table1_marks_a_method_without_maps_unavailable(tmp_path):
    """Table I from a tiny layout: a method with maps gets its MAE, one without (here the published
    weights, as when reference.path is empty) is marked unavailable, and the stage succeeds."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from scipy.io import savemat

    raw, _ = _layout(tmp_path / "data")  # data/raw, as the stage reads it
    maps = tmp_path / "data" / "eval" / "maps" / "ours" / "rtf"
    maps.mkdir(parents=True)
    gt = np.full((8, 8), 2.0)
    for n in ("01", "05"):
        savemat(raw / "rtf" / f"map_{n}.mat", {"blurMap": gt})
        np.save(maps / f"image_{n}.npy", (gt + 0.5).astype(np.float32))
    params = {"psi": 20, "evaluate": {"max_images": 0, "dbd_in_focus": 255, "rtf_sharp": "", "crop_right": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = Path(__file__).resolve().parents[1] / "stages" / "evaluate.py"
    res = subprocess.run([sys.executable, str(stage), "table1"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    t1 = json.loads((tmp_path / "reports/eval/table1.json").read_text())
    assert t1["scenes"] == 2 and t1["rtf"]["ours"]["raw_mae"] == pytest.approx(0.5)
    assert t1["rtf"]["published"] == {"available": False} and t1["rtf"]["shipped"] == {"available": False}
    md = (tmp_path / "reports/eval/table1.md").read_text()
    assert "| TIP-2022 published weights (reference) | unavailable |" in md
