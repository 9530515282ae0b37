"""`defocus estimate` on good and bad inputs (random-weight model: no data needed)."""

import cv2
import numpy as np
import pytest

from defocus.cli import main

from .conftest import textured_image


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rgb8 = (textured_image(96, 96) * 255).astype(np.uint8)
    cv2.imwrite(str(d / "good.png"), rgb8[:, :, ::-1])
    cv2.imwrite(str(d / "gray.png"), rgb8[:, :, 0])
    cv2.imwrite(str(d / "gray_rgb.png"), np.repeat(rgb8[:, :, :1], 3, axis=2))
    cv2.imwrite(str(d / "rgba.png"), np.dstack([rgb8[:, :, ::-1], np.full((96, 96), 128, np.uint8)]))
    cv2.imwrite(str(d / "deep.png"), rgb8[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(d / "flat.png"), np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(str(d / "small.png"), rgb8[:30, :30])
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    return d


def test_batch_with_bad_inputs(inputs, random_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    names = ["good.png", "missing.png", "gray.png", "gray_rgb.png", "corrupt.jpg", "rgba.png", "small.png",
             "deep.png", "flat.png"]
    code = main(["estimate", *[str(inputs / n) for n in names], "--out", str(out), "--model", str(random_model_dir),
                 "-q"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("defocus: error:")]
    for bad, why in (("missing.png", "no such file"), ("corrupt.jpg", "not a readable image"),
                     ("small.png", "30x30 px")):
        assert any(str(inputs / bad) in ln and why in ln for ln in lines), err
    assert "3 of 9 image(s) failed" in err
    good = ["good", "gray", "gray_rgb", "rgba", "deep", "flat"]
    expected = sorted(f"{s}_{k}" for s in good for k in ("blur.npy", "blur.png", "edges.png"))
    assert sorted(p.name for p in out.iterdir()) == expected  # nothing partial, no temp files
    maps = {s: np.load(out / f"{s}_blur.npy") for s in good}
    for s, m in maps.items():
        assert m.dtype == np.float32 and np.isfinite(m).all(), s
    assert maps["good"].shape == (96, 96) and maps["flat"].shape == (64, 64)
    np.testing.assert_array_equal(maps["gray"], maps["gray_rgb"])  # grey is replicated to RGB
    np.testing.assert_array_equal(maps["rgba"], maps["good"])  # alpha is dropped
    np.testing.assert_allclose(maps["deep"], maps["good"], atol=1e-3)  # 16 bit scaled to [0, 1]
    np.testing.assert_array_equal(maps["flat"], 0.0)  # no edges: no evidence, map is 0
    assert maps["good"].max() > 0
    edges = cv2.imread(str(out / "good_edges.png"))
    assert edges.shape == (96, 96, 3)


def test_given_edge_maps(inputs, random_model_dir, tmp_path, capsys):
    e = np.zeros((96, 96), np.uint8)
    e[20:80, 48] = 255
    cv2.imwrite(str(tmp_path / "e.png"), e)
    cv2.imwrite(str(tmp_path / "wrong.png"), e[:50])
    out = tmp_path / "out"
    code = main(["estimate", str(inputs / "good.png"), str(inputs / "gray.png"), "--edges", str(tmp_path / "e.png"),
                 str(tmp_path / "wrong.png"), "--out", str(out), "--model", str(random_model_dir), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and str(tmp_path / "wrong.png") in err and "96x50 px but the image is 96x96" in err
    overlay = cv2.imread(str(out / "good_edges.png"))[:, :, ::-1]
    coloured = (overlay == (40, 90, 255)).all(axis=2) | (overlay == (255, 30, 30)).all(axis=2)
    assert coloured.sum() == 60 and coloured[20:80, 48].all()
    assert not (out / "gray_blur.npy").exists()
    assert main(["estimate", str(inputs / "good.png"), "--edges", "a.png", "b.png", "--model",
                 str(random_model_dir)]) == 2


def test_bad_model_folder(inputs, tmp_path, capsys):
    assert main(["estimate", str(inputs / "good.png"), "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "model folder not found" in capsys.readouterr().err
