"""Non-blind deconvolution of disk blur, uniform and driven by a blur map."""

from __future__ import annotations

import numpy as np
import pytest

from defocus import config, deblur as deblur_module
from defocus.deblur import DEFAULT_BALANCE, deblur, deconvolve, default_radii
from defocus.images import load_image
from defocus.levels import BLUR_RADII
from defocus.metrics import psnr
from defocus.synthesis import disk_blur

PHOTO = "000000000257.jpg"  # a held-out COCO photo (sharp)


@pytest.fixture(scope="module")
def photo():
    """A 160 x 160 crop of a sharp real photo: the COCO photo if the data is here, else skimage's astronaut."""
    for folder in (config.REPO_ROOT / "data" / "raw" / "heldout" / "coco",
                   config.shared_dir() / "data" / "sharp" / "coco"):
        if (folder / PHOTO).exists():
            img = load_image(folder / PHOTO)
            break
    else:
        import skimage.data

        img = skimage.data.astronaut().astype(np.float32) / 255
    h, w = img.shape[:2]
    y, x = (h - 160) // 2, (w - 160) // 2
    return np.ascontiguousarray(img[y : y + 160, x : x + 160])


def _quantised_blur(img, r):
    return np.round(disk_blur(img, r) * 255) / np.float32(255)  # as a saved 8-bit photo


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_deconvolving_with_the_true_radius_raises_psnr(photo, r):
    blurry = _quantised_blur(photo, r)
    restored = deconvolve(blurry, r)
    assert restored.shape == photo.shape and restored.dtype == np.float32
    assert restored.min() >= 0 and restored.max() <= 1
    # measured gains (COCO 257 / astronaut): r=1 9.9 / 9.5 dB, r=2 6.0 / 6.7, r=3 5.9 / 7.4, r=4 5.4 / 7.7;
    # 3.1 dB is the least over 8 COCO photos, astronaut and chelsea
    assert psnr(photo, restored) - psnr(photo, blurry) > 3.0
    # no border ringing: the mean error on the 8 px border is that of the interior (ratio 0.7 .. 1.2 measured)
    err = np.abs(restored - photo)
    interior = err[8:-8, 8:-8].mean()
    border = (err.sum() - err[8:-8, 8:-8].sum()) / (err.size - err[8:-8, 8:-8].size)
    assert border < 1.5 * interior


def test_deconvolve_identity_cases_and_grey_images(photo):
    for r in (0, 0.25, 0.5):  # the disk kernel is the identity
        out = deconvolve(photo, r)
        np.testing.assert_array_equal(out, photo)
        assert out is not photo
    flat = np.full((20, 30, 3), 0.4, np.float32)
    np.testing.assert_allclose(deconvolve(flat, 3.0), flat, atol=1e-6)  # the filter keeps the mean
    grey = photo[..., 1]
    out = deconvolve(disk_blur(grey, 2.0), 2.0)
    assert out.shape == grey.shape
    np.testing.assert_allclose(out, deconvolve(disk_blur(photo, 2.0), 2.0)[..., 1], atol=1e-6)
    tiny = deconvolve(np.full((3, 4, 3), 0.5, np.float32), 6.0)  # kernel larger than the image
    np.testing.assert_allclose(tiny, 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="balance"):
        deconvolve(photo, 2.0, balance=0)
    assert DEFAULT_BALANCE == 3e-4


def test_default_radii_cover_only_the_maps_range():
    np.testing.assert_allclose(default_radii(np.array([[1.1, 2.6]])), np.arange(1.0, 2.76, 0.25))
    np.testing.assert_allclose(default_radii(np.array([[0.0, 0.3]])), [0.0, 0.25, 0.5])
    np.testing.assert_allclose(default_radii(np.full((2, 2), 2.0)), [2.0])
    np.testing.assert_allclose(default_radii(np.full((2, 2), 7.0)), [6.0])
    np.testing.assert_allclose(default_radii(np.array([[0.5, 6.0]])), BLUR_RADII)


@pytest.mark.parametrize("r", [2.0, 6.0])
def test_deblur_with_a_constant_map_is_deconvolve(photo, r):
    img = _quantised_blur(photo, r)
    m = np.full(img.shape[:2], r)
    want = deconvolve(img, r)
    np.testing.assert_array_equal(deblur(img, m), want)  # default levels: just r
    np.testing.assert_array_equal(deblur(img, m, radii=BLUR_RADII), want)  # through the blending


def test_a_hard_two_region_map_uses_two_levels_and_switches_at_the_boundary(photo, monkeypatch):
    img = photo[:64, :96]
    m = np.where(np.arange(96) < 48, 1.0, 3.0)[None, :].repeat(64, axis=0)
    seen = []
    real = deblur_module.deconvolve

    def spy(image, radius, balance=DEFAULT_BALANCE):
        seen.append(float(radius))
        return real(image, radius, balance)

    monkeypatch.setattr(deblur_module, "deconvolve", spy)
    out = deblur(img, m, guard=0)  # the blending alone: each level deconvolves the image as is
    assert seen == [1.0, 3.0]  # of the 9 default levels 1.0 .. 3.0, only the two the map uses, in order
    np.testing.assert_array_equal(out[:, :48], real(img, 1.0)[:, :48])
    np.testing.assert_array_equal(out[:, 48:], real(img, 3.0)[:, 48:])


def test_a_ramped_boundary_blends_between_levels_only_near_the_boundary(photo):
    img = _quantised_blur(photo[:64, :96], 2.0)
    x = np.arange(96)
    # 1.0 up to column 45, then 1.4, 1.8, 2.2, 2.6, then 3.0 from column 50
    ramp = np.clip(1.0 + 0.4 * (x - 45), 1.0, 3.0)[None, :].repeat(64, axis=0)
    hard = np.where(x < 48, 1.0, 3.0)[None, :].repeat(64, axis=0)
    out, out_hard = deblur(img, ramp, guard=0), deblur(img, hard, guard=0)
    d = {r: deconvolve(img, r) for r in (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0)}
    # column 46 has radius 1.4: 40 % of level 1.25 and 60 % of level 1.5; column 49 has 2.6: 60 % 2.5, 40 % 2.75
    np.testing.assert_allclose(out[:, 46], 0.4 * d[1.25][:, 46] + 0.6 * d[1.5][:, 46], atol=1e-6)
    np.testing.assert_allclose(out[:, 49], 0.6 * d[2.5][:, 49] + 0.4 * d[2.75][:, 49], atol=1e-6)
    # off the ramp the result is the level's own deconvolution, as with the hard map
    np.testing.assert_array_equal(out[:, :46], d[1.0][:, :46])
    np.testing.assert_array_equal(out[:, 50:], d[3.0][:, 50:])
    changed = np.flatnonzero(np.abs(out - out_hard).max(axis=(0, 2)) > 0)
    assert changed.min() >= 46 and changed.max() <= 49


def test_deblur_checks_its_input(photo):
    with pytest.raises(ValueError, match="does not match"):
        deblur(photo, np.ones((3, 3)))
    with pytest.raises(ValueError, match="increasing"):
        deblur(photo, np.ones(photo.shape[:2]), radii=[2.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        deblur(photo, np.full(photo.shape[:2], np.nan))


def test_layers_are_made_consistent_before_deconvolution(photo):
    """A sharp layer beside a disk-blurred one: without the guard the sharp layer's content
    rings through the blurred layer's deconvolution; with it deblurring helps."""
    from defocus.metrics import psnr
    from defocus.synthesis import disk_blur

    sharp = photo[:128, :160]
    left = np.arange(160) < 64
    blurred = disk_blur(sharp, 3.0)
    layered = np.round(np.where(left[None, :, None], sharp, blurred) * 255) / 255
    bmap = np.where(left, 0.0, 3.0)[None, :].repeat(128, axis=0)
    plain = psnr(sharp, deblur(layered, bmap, guard=0))
    guarded = psnr(sharp, deblur(layered, bmap))
    base = psnr(sharp, layered)
    assert guarded > base + 1.0, (base, guarded)
    assert guarded > plain + 1.0, (plain, guarded)
    # the sharp layer is left as it was
    np.testing.assert_allclose(deblur(layered, bmap)[:, :60], layered[:, :60], atol=1e-6)
