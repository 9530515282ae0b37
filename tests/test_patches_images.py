import cv2
import numpy as np
import pytest

from defocus.images import ImageError, load_image, load_mask, save_npy
from defocus.patches import PAD, extract_patches, iter_patch_batches, pad_image, padded_window


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


def test_padded_window_is_a_slice_of_the_padded_image():
    img = np.random.default_rng(2).random((50, 73, 3)).astype(np.float32)
    padded = pad_image(img)
    for r0, r1, c0, c1 in [(0, 90, 0, 113), (0, 41, 0, 41), (5, 60, 30, 113), (49, 90, 72, 113), (17, 18, 0, 1)]:
        np.testing.assert_array_equal(padded_window(img, r0, r1, c0, c1), padded[r0:r1, c0:c1])
    # beyond the padded image: zeros (tiles of one size under static shapes)
    win = padded_window(img, 60, 130, 80, 140)
    assert win.shape == (70, 60, 3)
    np.testing.assert_array_equal(win[:30, :33], padded[60:, 80:])
    assert not win[30:].any() and not win[:, 33:].any()
    with pytest.raises(ValueError, match="40x45"):
        padded_window(np.zeros((45, 40, 3), np.float32), 0, 10, 0, 10)


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


def test_to_uint8_rounds_block_by_block_as_one_expression():
    from defocus.images import BLOCK_ROWS, to_uint8

    img = np.random.default_rng(3).normal(0.5, 0.4, (2 * BLOCK_ROWS + 7, 13, 3)).astype(np.float32)
    whole = np.clip(np.rint(img.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(img), whole)
    scaled = np.clip(np.rint((img * 0.6).astype(np.float64) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(img, scale=0.6), scaled)
    assert to_uint8(np.zeros((0, 4))).shape == (0, 4)


def test_blur_png_of_a_large_map_is_a_bounded_preview(tmp_path):
    from defocus.viz import PREVIEW_SIDE, save_blur_png

    small = np.linspace(0, 6, 300 * 200, dtype=np.float32).reshape(200, 300)
    save_blur_png(tmp_path / "small.png", small)
    big = np.kron(small, np.ones((15, 15), np.float32))  # 4500 x 3000
    save_blur_png(tmp_path / "big.png", big)
    h_small, w_small = cv2.imread(str(tmp_path / "small.png")).shape[:2]
    h, w = cv2.imread(str(tmp_path / "big.png")).shape[:2]
    # drawn at about 1:1 up to PREVIEW_SIDE (plus the colour bar and margins), never at 4500 px
    assert PREVIEW_SIDE < w < PREVIEW_SIDE * 1.4 and h < w and w_small < 1000


def test_blur_png_draws_the_map_in_its_colours(tmp_path):
    import matplotlib

    from defocus.viz import COLOUR_ROWS, colour_map, save_blur_png

    rng = np.random.default_rng(5)
    values = rng.uniform(-1, 7, (COLOUR_ROWS + 9, 5)).astype(np.float32)
    want = matplotlib.colormaps["viridis"](np.clip(values / 6.0, 0, 1), bytes=True)[..., :3]
    np.testing.assert_array_equal(colour_map(values, 6.0), want)

    halves = np.zeros((200, 300), np.float32)
    halves[:, 150:] = 6.0
    save_blur_png(tmp_path / "halves.png", halves, title="halves")
    png = cv2.imread(str(tmp_path / "halves.png"))[:, :, ::-1]
    low, high = colour_map(np.array([[0.0, 6.0]]))[0]
    is_low, is_high = (png == low).all(axis=2), (png == high).all(axis=2)
    # the map fills its box at about 2x (6 in at 100 dpi for 300 px): each half about 300 x 400 px,
    # low on the left of high; the colour bar's ends add only a few rows of each colour
    assert 100_000 < is_low.sum() < 140_000 and 100_000 < is_high.sum() < 140_000
    assert np.nonzero(is_low)[1].mean() < np.nonzero(is_high)[1].mean() - 200
