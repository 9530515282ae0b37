"""The benchmark runs end to end and reports consistent figures (no timing asserts)."""

import json

import cv2
import numpy as np
import pytest

from defocus.cli import main

from .conftest import textured_image


def test_bench_reports_both_paths(random_model_dir, tmp_path, capsys, monkeypatch):
    from defocus import bench, estimate

    # a default tile smaller than the RTF stand-in, and one tile paying: the single tile is timed
    # against the default tiling (as on a 360 x 360 RTF image with oneDNN)
    for module in (bench, estimate):
        monkeypatch.setattr(module, "DEFAULT_TILE", 64)
    monkeypatch.setattr(estimate, "single_tile_pays", lambda: True)
    monkeypatch.setattr(bench, "single_tile_pays", lambda: True)
    rtf = tmp_path / "rtf"
    rtf.mkdir()
    cv2.imwrite(str(rtf / "image_01.png"), (textured_image(80, 90) * 255).astype(np.uint8))
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(random_model_dir), "--rtf", str(rtf), "--repeat", "2", "--large", "120x90",
                 "--backends", "this", "--bfloat16", "on", "--out", str(out)])
    assert code == 0
    rep = json.loads(out.read_text())
    row = rep["rtf"][0]
    assert row["image"] == "image_01.png" and row["edges"] > 0
    for path in ("dense", "patch"):
        assert set(row[path]) == {"edges", "enet", "bnet", "propagation", "total"}
        assert row[path]["total"] >= row[path]["enet"] + row[path]["bnet"] > 0
    assert row["max_abs_map_difference"] < 1e-5  # both paths give the same map
    assert row["tile"] == rep["single_tile"] == estimate.SINGLE_TILE and rep["tile"] == 64
    assert set(row["dense_default_tile"]) == set(row["dense"]) and row["default_tile_max_abs_map_difference"] < 1e-5
    assert rep["dense_default_tile_median_total_s"] == row["dense_default_tile"]["total"] > 0
    assert row["speedup_networks"] > 0 and row["patches_per_s"]["dense"] > 0
    # the networks' arithmetic: one 90 x 80 tile's maps (tile_macs) plus the heads at each edge pixel
    from defocus.dense import head_macs, tile_macs

    macs = tile_macs(80, 90, shared_f1=False) + row["edges"] * head_macs(2) + (row["patches"] - row["edges"]) * head_macs(23)
    assert row["network_gflop"] == pytest.approx(2 * macs / 1e9)
    assert rep["conv"]["gflops"] > 0 and row["networks_at_conv_rate_s"] == pytest.approx(row["network_gflop"] / rep["conv"]["gflops"])
    mm = rep["conv"]["matmul"]  # the CPU's best float32 rate, beside the convolution's
    assert mm["n"] == 2048 and mm["backend_gflops"] > 0 and mm["numpy_gflops"] > 0
    assert [r["size"] for r in rep["large"]] == [[60, 45], [120, 90]]
    assert [r["tile"] for r in rep["large"]] == [64, estimate.SINGLE_TILE]  # the tile each size was given
    assert all(r["peak_rss_gb"] > 0 for r in rep["large"])
    # the bfloat16 option: timed per stage, and its distance from float32 measured (random weights: small)
    assert rep["bfloat16"] and rep["dense_bfloat16_median_total_s"] == row["dense_bfloat16"]["total"] > 0
    assert set(row["dense_bfloat16"]) == set(row["dense"])
    for diff in (row["bfloat16_difference"], rep["large"][1]["bfloat16_difference"]):
        assert 0 <= diff["edge_decisions_changed"] <= 1
        assert 0 <= diff["mean_abs_map_difference"] <= diff["max_abs_map_difference"] < 6
    assert "dense_bfloat16" not in rep["large"][0]  # the full size only
    # the full-size large image once more, as a user runs it: defocus estimate in a fresh process
    photo = rep["photo"]
    assert photo["size"] == [120, 90] and 0 < photo["estimate_seconds"] < photo["seconds"]
    assert 0.1 < photo["peak_rss_gb"] < 8  # a real process's own peak (TensorFlow alone is > 0.1 GB)
    assert "speed-up" in capsys.readouterr().out
    assert "backends" not in rep


def test_bench_runs_every_installed_backend(random_model_dir, tmp_path, capsys):
    """By default `defocus bench` also runs under the other installed backend, in its own process,
    with the same options (the same edges, the same pattern edges found by E-NET)."""
    rtf = tmp_path / "rtf"
    rtf.mkdir()
    cv2.imwrite(str(rtf / "image_01.png"), (textured_image(60, 70) * 255).astype(np.uint8))
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(random_model_dir), "--rtf", str(rtf), "--repeat", "1", "--large", "0",
                 "--no-patch", "--bfloat16", "off", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    (name, theirs), = rep["backends"].items()
    assert name != rep["machine"]["backend"] and theirs["machine"]["backend"] == name
    row, other = rep["rtf"][0], theirs["rtf"][0]
    assert other["edges"] == row["edges"] and other["patches"] == row["patches"] and other["dense"]["total"] > 0
    assert set(rep["backend_summary"]) == {"tensorflow", "jax"}
    assert "--- backends:" in capsys.readouterr().out
    assert main(["bench", "--model", str(random_model_dir), "--backends", "torch", "--out", str(out)]) == 2


def test_a_commands_peak_rss_is_its_own_not_the_benchmarks():
    """`defocus bench` times `defocus estimate` in a fresh process from a process holding GBs; the
    command's peak must not include the benchmark's (a child's ru_maxrss does, on Linux)."""
    import subprocess
    import sys

    from defocus.bench import run_with_peak_rss

    held = np.ones(768 * 2**20 // 8)  # this process: at least 768 MiB resident
    rc, seconds, peak = run_with_peak_rss([sys.executable, "-c", "x = bytearray(200 * 2**20)"])
    assert rc == 0 and seconds > 0
    assert 200 / 1024 < peak < 400 / 1024, peak  # the 200 MiB it held and Python, not the 768 MiB here
    rc, _, _ = run_with_peak_rss([sys.executable, "-c", "raise SystemExit(3)"])
    assert rc == 3
    with pytest.raises(RuntimeError, match="could not run"):
        run_with_peak_rss(["/nonexistent/command"], stderr=subprocess.DEVNULL)
    del held
