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


@pytest.mark.backends  # `defocus estimate` under JAX too, with TensorFlow unimportable (test.sh)
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


def test_bfloat16_is_an_option_of_the_dense_path(inputs, random_model_dir, tmp_path, capsys):
    """--precision bfloat16 writes a map like float32's; the per-patch path refuses it before any work."""
    maps = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert main(["estimate", str(inputs / "good.png"), "--model", str(random_model_dir), "--out", str(out),
                     "--precision", precision, "-q"]) == 0
        maps[precision] = np.load(out / "good_blur.npy")
    assert maps["bfloat16"].shape == maps["float32"].shape == (96, 96)
    assert np.abs(maps["bfloat16"] - maps["float32"]).mean() < 0.5  # px: mostly the same B-NET classes
    capsys.readouterr()
    out = tmp_path / "patch"
    assert main(["estimate", str(inputs / "good.png"), "--model", str(random_model_dir), "--out", str(out),
                 "--method", "patch", "--precision", "bfloat16"]) == 2
    assert "--method patch runs in float32 only" in capsys.readouterr().err
    assert not out.exists()


def _real_photos():
    from defocus import config

    shared = config.shared_dir() / "data"
    photos = [shared / "rtf" / "image_01.png", shared / "dbd" / "dut" / "images" / "dut_1.jpg"]
    if not all(p.is_file() for p in photos):
        pytest.skip(f"{shared}: RTF / DUT photos not found: set DEFOCUS_SHARED")
    return photos


def test_detect_on_real_photos(inputs, tmp_path, capsys):
    """`defocus detect` with the shipped model: a mask per photo, bad inputs rejected as by estimate."""
    from defocus import config
    from defocus.cli import detect_threshold
    from defocus.images import load_image, load_mask
    from defocus.weights import load_model

    rtf, dut = _real_photos()
    out = tmp_path / "out"
    code = main(["detect", str(rtf), str(dut), str(inputs / "corrupt.jpg"), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and str(inputs / "corrupt.jpg") in err and "1 of 3 image(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["dut_1_focus.png", "image_01_focus.png"]
    model = load_model(config.default_model_dir())
    assert detect_threshold(model) == model.meta["detect"]["threshold_px"]  # measured, stored in model.json
    assert detect_threshold(model, 0.5) == 0.5
    mask = cv2.imread(str(out / "dut_1_focus.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (320, 320) and set(np.unique(mask)) <= {0, 255}
    truth = load_mask(dut.parent.parent / "gt" / "dut_1.bmp", mask.shape)  # white = in focus
    assert ((mask == 255) == truth).mean() > 0.8  # the salient object is the in-focus part
    # a larger threshold calls more pixels in focus
    assert main(["detect", str(dut), "--out", str(tmp_path / "t6"), "--threshold", "6", "-q"]) == 0
    assert (cv2.imread(str(tmp_path / "t6" / "dut_1_focus.png"), cv2.IMREAD_UNCHANGED) == 255).mean() > \
        (mask == 255).mean()
    assert main(["detect", str(dut), "--threshold", "-1"]) == 2
    assert load_image(rtf).shape[:2] == cv2.imread(str(out / "image_01_focus.png"), cv2.IMREAD_UNCHANGED).shape


def test_deblur_on_a_real_photo(tmp_path, capsys):
    """`defocus deblur` sharpens a sharp mirror photo (a held-out COCO one) blurred by a 2.5 px disk."""
    from defocus import config
    from defocus.images import load_image, save_png, to_uint8
    from defocus.synthesis import disk_blur

    photo = config.shared_dir() / "data" / "sharp" / "coco" / "000000000025.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found: set DEFOCUS_SHARED")
    sharp = load_image(photo)
    blurred = disk_blur(sharp, 2.5)
    save_png(tmp_path / "blurred.png", to_uint8(blurred))
    out = tmp_path / "out"
    assert main(["deblur", str(tmp_path / "blurred.png"), str(tmp_path / "missing.png"), "--out", str(out),
                 "-q"]) == 1
    assert "missing.png: no such file" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["blurred_deblurred.png"]
    restored = load_image(out / "blurred_deblurred.png")
    assert restored.shape == sharp.shape

    def psnr(a):
        return 10 * np.log10(1 / np.mean((a - sharp) ** 2))

    assert psnr(restored) > psnr(blurred) + 2.0  # measured: 20.3 -> 23.9 dB with models/default
    assert main(["deblur", str(tmp_path / "blurred.png"), "--balance", "0"]) == 2
