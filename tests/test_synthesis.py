import math

import numpy as np
import pytest

from defocus import synthesis
from defocus.levels import BLUR_RADII
from defocus.synthesis import (
    boundary,
    composite,
    disk_blur,
    disk_kernel,
    fit_background,
    ramp_map,
    step_map,
    varying_blur,
)

RADII = [0.5, 0.75, 1, 2.5, 3.3, 6]


def _supersampled_area(radius, n=256):
    """Area of each unit pixel square inside the disk, by midpoint sampling on an n x n grid per pixel."""
    h = math.ceil(radius - 0.5)
    c = np.arange(-h, h + 1, dtype=np.float64)
    sub = (np.arange(n) + 0.5) / n - 0.5  # sample offsets inside one pixel
    s = (c[:, None] + sub[None, :]).ravel()  # coordinates of all samples along one axis
    inside = (s[:, None] ** 2 + s[None, :] ** 2) <= radius * radius
    k = len(c)
    return inside.reshape(k, n, k, n).mean(axis=(1, 3))


def _pixel_extent(radius):
    """Nearest and farthest distance from the origin of every pixel square of the kernel."""
    h = math.ceil(radius - 0.5)
    c = np.abs(np.arange(-h, h + 1, dtype=np.float64))
    near1, far1 = np.maximum(c - 0.5, 0), c + 0.5
    near = np.hypot(near1[:, None], near1[None, :])
    far = np.hypot(far1[:, None], far1[None, :])
    return near, far


@pytest.mark.parametrize("radius", RADII)
def test_disk_kernel_sums_to_one_with_its_size_and_symmetries(radius):
    k = disk_kernel(radius)
    side = 2 * math.ceil(radius - 0.5) + 1
    assert k.shape == (side, side)
    assert k.dtype == np.float64
    assert abs(k.sum() - 1) < 1e-12
    assert (k >= 0).all()
    np.testing.assert_allclose(k, k[::-1], atol=1e-15)
    np.testing.assert_allclose(k, k[:, ::-1], atol=1e-15)
    np.testing.assert_allclose(k, k.T, atol=1e-15)


@pytest.mark.parametrize("radius", RADII)
def test_disk_kernel_holds_each_pixels_area_inside_the_disk(radius):
    # kernel * (disk area) = area of each pixel inside the disk, checked against sampling
    area = disk_kernel(radius) * math.pi * radius**2
    np.testing.assert_allclose(area, _supersampled_area(radius), atol=1e-3)
    assert area.max() <= 1 + 1e-12
    near, far = _pixel_extent(radius)
    outside, inside = near >= radius, far <= radius
    # zero up to rounding (inclusion-exclusion of equal areas leaves ~1e-17)
    assert np.abs(disk_kernel(radius)[outside]).max(initial=0) < 1e-15
    assert outside.any() == (radius >= 3)  # corner pixels of the 7 x 7 and 13 x 13 kernels
    if radius <= 0.5:  # the whole kernel is one pixel, partly covered
        return
    assert inside.any()
    full = disk_kernel(radius)[inside]
    np.testing.assert_allclose(full, full.max(), rtol=1e-12)
    np.testing.assert_allclose(full, 1 / (math.pi * radius**2), rtol=1e-12)  # area exactly 1
    assert disk_kernel(radius).max() == pytest.approx(full.max(), rel=1e-12)


@pytest.mark.parametrize("radius", RADII[1:])
def test_quadrant_area_adds_up_to_the_disk(radius):
    q = lambda x, y: synthesis._quadrant_area(np.asarray(x, float), np.asarray(y, float), radius)  # noqa: E731
    assert q(radius, radius) == pytest.approx(math.pi * radius**2 / 4, rel=1e-12)
    assert q(10 * radius, 10 * radius) == pytest.approx(math.pi * radius**2 / 4, rel=1e-12)
    assert q(-radius, radius) == pytest.approx(-math.pi * radius**2 / 4, rel=1e-12)  # odd in x
    assert q(-radius, -radius) == pytest.approx(math.pi * radius**2 / 4, rel=1e-12)
    assert q(0.3, 0.2) == pytest.approx(0.06, rel=1e-12)  # a rectangle inside the disk
    # inclusion-exclusion over the pixel squares of the kernel gives pi r^2 in all
    h = math.ceil(radius - 0.5)
    c = np.arange(-h, h + 1, dtype=np.float64)
    x0, x1, y0, y1 = (c - 0.5)[None], (c + 0.5)[None], (c - 0.5)[:, None], (c + 0.5)[:, None]
    area = q(x1, y1) - q(x0, y1) - q(x1, y0) + q(x0, y0)
    assert area.sum() == pytest.approx(math.pi * radius**2, rel=1e-12)
    np.testing.assert_allclose(area / area.sum(), disk_kernel(radius), atol=1e-15)


def test_disk_kernel_small_and_invalid_radii():
    fspecial = np.array([[0.0251, 0.1453, 0.0251], [0.1453, 0.3183, 0.1453], [0.0251, 0.1453, 0.0251]])
    np.testing.assert_allclose(disk_kernel(1), fspecial, atol=1e-4)
    for r in (0, 0.2, 0.5):
        k = disk_kernel(r)
        assert k.shape == (1, 1) and k[0, 0] == 1.0
    for bad in (-0.1, -3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="radius"):
            disk_kernel(bad)


def test_disk_blur_constant_impulse_and_identity():
    const = np.full((30, 40, 3), 0.37, np.float32)
    out = disk_blur(const, 3.3)
    assert out.dtype == np.float32 and out.shape == const.shape
    np.testing.assert_allclose(out, 0.37, atol=1e-6)
    impulse = np.zeros((31, 31), np.float32)
    impulse[15, 15] = 1
    for r in (1, 2.5, 6):
        k = disk_kernel(r)
        h = k.shape[0] // 2
        out = disk_blur(impulse, r)
        np.testing.assert_allclose(out[15 - h : 16 + h, 15 - h : 16 + h], k, atol=1e-6)
        assert abs(out.sum() - 1) < 1e-5  # nothing outside the kernel's footprint
    img = np.random.default_rng(0).random((20, 25, 3))  # float64 in
    same = disk_blur(img, 0)
    assert same.dtype == np.float32 and same is not img
    np.testing.assert_array_equal(same, img.astype(np.float32))
    same[0, 0, 0] = 5.0
    assert img[0, 0, 0] != 5.0  # a copy


def test_disk_blur_blurs():
    # a step edge is spread over +- r pixels, symmetrically, and stays monotone
    img = np.zeros((21, 40), np.float32)
    img[:, 20:] = 1
    out = disk_blur(img, 2.5)[10]
    np.testing.assert_allclose(out[:18], 0, atol=1e-7)
    np.testing.assert_allclose(out[22:], 1, atol=1e-6)
    assert 0 < out[18] < out[19] < out[20] < out[21] < 1
    np.testing.assert_allclose(out[18:20], 1 - out[21:19:-1], atol=1e-6)


def test_varying_blur_on_and_between_grid_radii():
    img = np.random.default_rng(1).random((32, 36, 3)).astype(np.float32)
    for r in (0.5, 2.0, 4.75, 6.0):
        assert np.isclose(BLUR_RADII, r).any()
        out = varying_blur(img, np.full((32, 36), r))
        assert out.dtype == np.float32 and out.shape == img.shape
        np.testing.assert_allclose(out, disk_blur(img, r), atol=1e-5)
    half = varying_blur(img, np.full((32, 36), 2.125))
    np.testing.assert_allclose(half, (disk_blur(img, 2.0) + disk_blur(img, 2.25)) / 2, atol=1e-5)
    quarter = varying_blur(img, np.full((32, 36), 3.0625))
    np.testing.assert_allclose(quarter, 0.75 * disk_blur(img, 3.0) + 0.25 * disk_blur(img, 3.25), atol=1e-5)
    # per pixel: left half one radius, right half another
    rmap = np.full((32, 36), 1.0)
    rmap[:, 18:] = 5.5
    out = varying_blur(img, rmap)
    np.testing.assert_allclose(out[:, :18], disk_blur(img, 1.0)[:, :18], atol=1e-5)
    np.testing.assert_allclose(out[:, 18:], disk_blur(img, 5.5)[:, 18:], atol=1e-5)


def test_varying_blur_rejects_bad_maps():
    img = np.zeros((10, 12, 3), np.float32)
    for bad in (0.4, 6.1):
        rmap = np.full((10, 12), 2.0)
        rmap[3, 4] = bad
        with pytest.raises(ValueError, match="radius map"):
            varying_blur(img, rmap)
    with pytest.raises(ValueError, match="does not match"):
        varying_blur(img, np.full((10, 11), 2.0))


def _red_on_blue(h=60, w=70):
    obj = np.zeros((h, w, 3), np.float32)
    obj[..., 0] = 1
    bg = np.zeros((h, w, 3), np.float32)
    bg[..., 2] = 1
    mask = np.zeros((h, w), np.float32)
    mask[20:40, 25:45] = 1
    return obj, mask, bg


def test_composite_of_constant_layers():
    obj, mask, bg = _red_on_blue()
    out, alpha = composite(obj, mask, bg, 2.5, 5.0)
    assert out.dtype == np.float32 and out.shape == obj.shape and alpha.shape == mask.shape
    # deep inside the object (more than r_fg + 1 px from its border): pure red
    np.testing.assert_allclose(out[24:36, 29:41], obj[24:36, 29:41], atol=1e-6)
    # far outside: pure blue
    far = np.ones((60, 70), bool)
    far[16:44, 21:49] = False
    np.testing.assert_allclose(out[far], bg[far], atol=1e-6)
    # the colours mix at the border: red + blue = alpha + (1 - alpha)
    np.testing.assert_allclose(out[..., 0], alpha, atol=1e-6)
    np.testing.assert_allclose(out[..., 2], 1 - alpha, atol=1e-6)
    np.testing.assert_allclose(alpha, disk_blur(mask, 2.5), atol=0)
    assert 0 < alpha[30, 25] < 1 and 0 < alpha[30, 24] < 1


def test_composite_with_sharp_object_and_random_layers():
    rng = np.random.default_rng(2)
    obj, bg = rng.random((40, 50, 3)).astype(np.float32), rng.random((40, 50, 3)).astype(np.float32)
    mask = rng.random((40, 50)).astype(np.float32)  # a soft mask
    out, alpha = composite(obj, mask, bg, 0, 3.3)
    expect = obj * mask[..., None] + (1 - mask[..., None]) * disk_blur(bg, 3.3)
    np.testing.assert_allclose(out, expect, atol=1e-6)
    np.testing.assert_allclose(alpha, mask, atol=0)
    # the object's own surroundings never leak in: change obj outside the mask
    hard = (mask > 0.5).astype(np.float32)
    obj2 = np.where(hard[..., None] > 0, obj, 1 - obj)
    a, _ = composite(obj, hard, bg, 2.0, 3.0)
    b, _ = composite(obj2, hard, bg, 2.0, 3.0)
    np.testing.assert_array_equal(a, b)


def test_composite_rejects_mismatched_shapes():
    obj, mask, bg = _red_on_blue()
    with pytest.raises(ValueError, match="differ in size"):
        composite(obj, mask, bg[:-1], 1, 2)
    with pytest.raises(ValueError, match="differ in size"):
        composite(obj, mask[:, :-1], bg, 1, 2)


def test_boundary_of_a_square():
    for side in (2, 5, 12):
        mask = np.zeros((30, 32), bool)
        mask[7 : 7 + side, 9 : 9 + side] = True
        b = boundary(mask)
        assert b.dtype == bool and b.shape == mask.shape
        assert b.sum() == 4 * side - 4
        assert not (b & ~mask).any()
        ring = mask.copy()
        ring[8 : 6 + side, 10 : 8 + side] = False
        np.testing.assert_array_equal(b, ring)
    # a mask that fills the image has no boundary (the border is replicated), an empty mask neither
    assert not boundary(np.ones((8, 9), np.uint8)).any()
    assert not boundary(np.zeros((8, 9), np.uint8)).any()
    # a diagonal neighbour counts (8-neighbourhood)
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    mask[2, 2] = False
    b = boundary(mask)
    assert b[3, 3] and not b[2, 2] and b.sum() == 16


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, 0.7, math.pi, -2.0])
def test_ramp_and_step_maps(angle):
    ramp = ramp_map((40, 56), 1.0, 4.5, angle)
    assert ramp.shape == (40, 56)
    assert ramp.min() == pytest.approx(1.0, abs=1e-12) and ramp.max() == pytest.approx(4.5, abs=1e-12)
    # linear along the direction: constant second differences
    dx, dy = math.cos(angle), math.sin(angle)
    gy, gx = np.gradient(ramp)
    np.testing.assert_allclose(gx * dy, gy * dx, atol=1e-9)
    assert (gx * dx + gy * dy > 0).all()
    steps = step_map((40, 56), 0.75, 5, angle)
    np.testing.assert_allclose(np.unique(steps), 0.75 + 0.25 * np.arange(5), atol=1e-12)


def test_ramp_map_direction_and_constant_image():
    r = ramp_map((10, 21), 2.0, 0.5, 0.0)  # decreasing left to right
    np.testing.assert_allclose(r[:, 0], 2.0)
    np.testing.assert_allclose(r[:, -1], 0.5)
    np.testing.assert_allclose(r[3], np.linspace(2.0, 0.5, 21))
    s = step_map((10, 20), 1.0, 4, 0.0, step=0.5)
    np.testing.assert_allclose(s[0], np.repeat([1.0, 1.5, 2.0, 2.5], 5))


def test_fit_background_sizes_and_determinism():
    rng = np.random.default_rng(3)
    big = rng.random((100, 120, 3)).astype(np.float32)
    crop = fit_background(big, (40, 50), np.random.default_rng(7))
    assert crop.shape == (40, 50, 3)
    # a crop of the image itself
    hits = [(y, x) for y in range(61) for x in range(71) if np.array_equal(big[y : y + 40, x : x + 50], crop)]
    assert len(hits) == 1
    again = fit_background(big, (40, 50), np.random.default_rng(7))
    np.testing.assert_array_equal(crop, again)
    crops = {fit_background(big, (40, 50), np.random.default_rng(s)).tobytes() for s in range(6)}
    assert len(crops) > 1
    for small_shape, want in (((20, 30, 3), (64, 48)), ((30, 20, 3), (64, 48)), ((50, 50, 3), (64, 90))):
        small = rng.random(small_shape).astype(np.float32)
        out = fit_background(small, want, np.random.default_rng(5))
        assert out.shape == (*want, 3)
        np.testing.assert_array_equal(out, fit_background(small, want, np.random.default_rng(5)))
        assert small.min() - 1e-6 <= out.min() and out.max() <= small.max() + 1e-6
    same = fit_background(big, (100, 120), np.random.default_rng(0))
    np.testing.assert_array_equal(same, big)
