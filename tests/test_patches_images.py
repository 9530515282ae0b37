import cv2
import numpy as np
import pytest

from defocus.images import ImageError, load_image, load_mask, save_npy
from defocus.patches import PAD, extract_patches, iter_patch_batches, pad_image


def test_patch_is_centred_with_reflect_padding():
    img = np.random.default_rng(0).random((50, 60, 3)).astype(np.float32)
    padded = pad_image(img)
    assert padded.shape == (90, 100, 3)
    ys, xs = np.array([0, 25, 49]), np.array([0, 30, 59])
    p = extract_patches(padded, ys, xs)
    assert p.shape == (3, 41, 41, 3)
    for k in range(3):
        np.testing.assert_array_equal(p[k, 20, 20], img[ys[k], xs[k]])
    # BORDER_REFLECT repeats the edge pixel: padded row PAD-1 == image row 0
    np.testing.assert_array_equal(p[0, 19, 20], img[0, 0])
    np.testing.assert_array_equal(p[0, 18, 20], img[1, 0])
    ref = cv2.copyMakeBorder(img, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT)
    np.testing.assert_array_equal(p[2], ref[49:90, 59:100])


def test_batches_are_bounded_and_ordered():
    img = np.random.default_rng(1).random((45, 45, 3)).astype(np.float32)
    ys, xs = np.nonzero(np.ones((45, 45), bool))
    batches = list(iter_patch_batches(img, ys, xs, batch_size=100))
    assert [len(b) for b in batches] == [100] * 20 + [25]
    allp = extract_patches(pad_image(img), ys, xs)
    np.testing.assert_array_equal(np.concatenate(batches), allp)
    with pytest.raises(ValueError, match="40x45"):
        pad_image(np.zeros((45, 40, 3), np.float32))


def _write(path, arr):
    assert cv2.imwrite(str(path), arr)
    return path


def test_loader_converts_what_can_be_converted(tmp_path):
    rgb = (np.random.default_rng(2).random((20, 30, 3)) * 255).astype(np.uint8)
    bgr = rgb[:, :, ::-1]
    out = load_image(_write(tmp_path / "c.png", bgr))
    assert out.dtype == np.float32 and out.shape == (20, 30, 3)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)
    g = load_image(_write(tmp_path / "g.png", rgb[:, :, 0]))
    np.testing.assert_allclose(g[:, :, 2], rgb[:, :, 0] / 255.0, atol=1e-7)
    assert np.array_equal(g[:, :, 0], g[:, :, 1])
    rgba = np.dstack([bgr, np.full((20, 30), 7, np.uint8)])
    np.testing.assert_allclose(load_image(_write(tmp_path / "a.png", rgba)), rgb / 255.0, atol=1e-7)
    deep = rgb.astype(np.uint16) * 257
    d = load_image(_write(tmp_path / "d.png", deep[:, :, ::-1]))
    np.testing.assert_allclose(d, rgb / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "name,content,message",
    [("missing.png", None, "no such file"), ("empty.png", b"", "empty file"),
     ("bad.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "not a readable image")],
)
def test_loader_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_mask_and_atomic_npy(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[3, 4] = 255
    path = _write(tmp_path / "e.png", m)
    got = load_mask(path, (10, 12))
    assert got.dtype == bool and got.sum() == 1 and got[3, 4]
    with pytest.raises(ImageError, match="12x10 px but the image is 11x10"):
        load_mask(path, (10, 11))
    save_npy(tmp_path / "x.npy", np.arange(3))
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.png", "x.npy"]
