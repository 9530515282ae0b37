"""Blur-map errors, RTF conversion, blur-detection sweep and image-quality wrappers.

Expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from defocus import config
from defocus.metrics import (
    best_accuracy,
    detection_counts,
    load_conversion,
    pr_curve,
    psnr,
    radius_to_sigma,
    raw_mae,
    relative_mae,
    sigma_to_radius,
    ssim,
    threshold_sweep,
    thresholds,
)

#: The RTF convertion.mat table (sigma, radius), copied from the file.
RTF_SIGMA = np.array([0.3, 0.5, 0.65, 0.775, 0.875, 0.975, 1.125, 1.275, 1.375, 1.525, 1.65, 1.8,
                      1.925, 2.05, 2.2, 2.325, 2.45, 2.6, 2.725, 2.875, 3.0, 3.15, 3.275])
RTF_RADIUS = 0.5 + 0.25 * np.arange(23)


@pytest.fixture
def rtf_table(tmp_path):
    path = tmp_path / "convertion.mat"
    savemat(path, {"convertion": np.stack([RTF_SIGMA, RTF_RADIUS], axis=1)})
    return load_conversion(path)


# --------------------------------------------------------------------------- MAE


def test_raw_mae_by_hand_with_crop_right():
    est = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    gt = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 9.0]])
    # |est - gt| = [[0, 1, 2], [3, 4, 3]]
    assert raw_mae(est, gt) == pytest.approx(13 / 6)
    assert raw_mae(est, gt, crop_right=1) == pytest.approx(8 / 4)  # [[0, 1], [3, 4]]
    assert raw_mae(est, gt, crop_right=2) == pytest.approx(3 / 2)  # [[0], [3]]
    assert raw_mae(gt, gt) == 0.0


def test_mae_rejects_bad_input():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        raw_mae(a, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="crop_right"):
        raw_mae(a, a, crop_right=3)
    with pytest.raises(ValueError, match="crop_right"):
        raw_mae(a, a, crop_right=-1)


def test_relative_mae_by_hand_with_a_small_table():
    table = (np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 4.0]))  # sigma, radius; s_max = 2
    est = np.array([[1.0, 3.0], [4.0, 8.0]])  # sigma 0.5, 1.5, 2.0, 2.0 (clamped) -> /2: .25 .75 1 1
    gt = np.array([[2.0, 2.0], [0.0, 4.0]])  # sigma 1.0, 1.0, 0.5 (clamped), 2.0 -> /2: .5 .5 .25 1
    # |diff| = .25 .25 .75 0
    assert relative_mae(est, gt, table) == pytest.approx(1.25 / 4)
    # first column only: |.25 - .5|, |1 - .25|
    assert relative_mae(est, gt, table, crop_right=1) == pytest.approx(0.5)
    # the (n, 2) matrix works as the table too
    assert relative_mae(est, gt, np.stack(table, axis=1)) == pytest.approx(1.25 / 4)


def test_relative_mae_on_the_rtf_table(rtf_table):
    est = np.array([[6.0, 0.5]])
    gt = np.array([[0.5, 0.5]])
    # sigma 3.275 vs 0.3 and 0.3 vs 0.3, normalised by 3.275
    assert relative_mae(est, gt, rtf_table) == pytest.approx((3.275 - 0.3) / 3.275 / 2)
    assert relative_mae(gt, gt, rtf_table) == 0.0


# --------------------------------------------------------------------------- conversion


def test_load_conversion_reads_the_table(rtf_table):
    sigma, radius = rtf_table
    np.testing.assert_array_equal(sigma, RTF_SIGMA)
    np.testing.assert_array_equal(radius, RTF_RADIUS)


def test_the_real_rtf_table_is_the_one_copied_here():
    for path in (config.REPO_ROOT / "data" / "raw" / "rtf" / "convertion.mat",
                 config.shared_dir() / "data" / "rtf" / "convertion.mat"):
        if path.exists():
            sigma, radius = load_conversion(path)
            np.testing.assert_allclose(sigma, RTF_SIGMA, atol=1e-12)
            np.testing.assert_allclose(radius, RTF_RADIUS, atol=1e-12)
            return
    pytest.skip("no RTF convertion.mat in data/raw/rtf or the shared folder")


def test_load_conversion_names_a_wrong_file(tmp_path):
    path = tmp_path / "other.mat"
    savemat(path, {"table": np.eye(2)})
    with pytest.raises(ValueError, match="convertion"):
        load_conversion(path)


def test_conversion_round_trip_on_table_points_and_clamping(rtf_table):
    np.testing.assert_allclose(radius_to_sigma(RTF_RADIUS, rtf_table), RTF_SIGMA, atol=1e-12)
    np.testing.assert_allclose(sigma_to_radius(RTF_SIGMA, rtf_table), RTF_RADIUS, atol=1e-12)
    np.testing.assert_allclose(sigma_to_radius(radius_to_sigma(RTF_RADIUS, rtf_table), rtf_table), RTF_RADIUS,
                               atol=1e-12)
    assert radius_to_sigma(0.625, rtf_table) == pytest.approx(0.4)  # halfway between (0.5, 0.3) and (0.75, 0.5)
    assert sigma_to_radius(0.4, rtf_table) == pytest.approx(0.625)
    assert radius_to_sigma(0.0, rtf_table) == pytest.approx(0.3)  # clamped at the ends
    assert radius_to_sigma(10.0, rtf_table) == pytest.approx(3.275)
    assert sigma_to_radius(5.0, rtf_table) == pytest.approx(6.0)
    assert radius_to_sigma(np.full((2, 3), 2.0), rtf_table).shape == (2, 3)


# --------------------------------------------------------------------------- blur detection

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
# image A: vmin 0, vmax 4, so tau = 0, 1, 2, 3, 4
MAP_A = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 4.0]])
GT_A = np.array([[False, False, True], [False, True, True]])
# predicted blurred = map > tau (a pixel equal to tau is sharp):
#   tau 0: all but (0,0)          -> TP 3 FP 2 FN 0 TN 1
#   tau 1: 2, 3, 4, 4             -> TP 3 FP 1 FN 0 TN 2
#   tau 2: 3, 4, 4 ((0,2) ties)   -> TP 2 FP 1 FN 1 TN 2
#   tau 3: 4, 4                   -> TP 2 FP 0 FN 1 TN 3
#   tau 4: none                   -> TP 0 FP 0 FN 3 TN 3
COUNTS_A = {"tp": [3, 3, 2, 2, 0], "fp": [2, 1, 1, 0, 0], "fn": [0, 0, 1, 1, 3], "tn": [1, 2, 2, 3, 3]}
# image B: vmin 0, vmax 4 again
MAP_B = np.array([[0.0, 2.0], [2.0, 4.0]])
GT_B = np.array([[0, 255], [0, 255]], dtype=np.uint8)  # a 0/255 mask: blurred on the right
#   tau 0, 1: (0,1), (1,0), (1,1) -> TP 2 FP 1 FN 0 TN 1
#   tau 2, 3: (1,1)               -> TP 1 FP 0 FN 1 TN 2
#   tau 4: none                   -> TP 0 FP 0 FN 2 TN 2
COUNTS_B = {"tp": [2, 2, 1, 1, 0], "fp": [1, 1, 0, 0, 0], "fn": [0, 0, 1, 1, 2], "tn": [1, 1, 2, 2, 2]}


def test_thresholds_span_the_maps_range():
    np.testing.assert_array_equal(thresholds(MAP_A, ALPHAS), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(thresholds(MAP_A + 1.0, [0.5]), [3.0])


def test_threshold_sweep_masks_by_hand():
    masks = threshold_sweep(MAP_A, ALPHAS)
    assert masks.shape == (5, 2, 3) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], [[0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(masks[2], [[0, 0, 0], [1, 1, 1]])  # the 2 equals tau: sharp
    np.testing.assert_array_equal(masks[4], np.zeros((2, 3), bool))


@pytest.mark.parametrize("blur, gt, expected", [(MAP_A, GT_A, COUNTS_A), (MAP_B, GT_B, COUNTS_B)])
def test_detection_counts_by_hand(blur, gt, expected):
    counts = detection_counts(blur, gt, ALPHAS)
    np.testing.assert_array_equal(counts["alpha"], ALPHAS)
    for key, want in expected.items():
        np.testing.assert_array_equal(counts[key], want, err_msg=key)
    # the counts agree with the masks of the sweep
    masks = threshold_sweep(blur, ALPHAS)
    g = np.asarray(gt) > 0
    np.testing.assert_array_equal(counts["tp"], (masks & g).sum(axis=(1, 2)))
    np.testing.assert_array_equal(counts["fp"], (masks & ~g).sum(axis=(1, 2)))


def test_a_constant_map_predicts_every_pixel_sharp():
    counts = detection_counts(np.full((2, 3), 2.5), GT_A, ALPHAS)
    np.testing.assert_array_equal(counts["tp"], [0] * 5)
    np.testing.assert_array_equal(counts["fp"], [0] * 5)
    np.testing.assert_array_equal(counts["fn"], [3] * 5)
    np.testing.assert_array_equal(counts["tn"], [3] * 5)


def test_detection_rejects_bad_input():
    with pytest.raises(ValueError, match="does not match"):
        detection_counts(MAP_A, GT_B, ALPHAS)
    with pytest.raises(ValueError, match="finite"):
        detection_counts(np.array([[0.0, np.nan]]), np.array([[True, False]]), ALPHAS)


def test_pr_curve_sums_counts_and_averages_accuracy_by_hand():
    curve = pr_curve([detection_counts(MAP_A, GT_A, ALPHAS), detection_counts(MAP_B, GT_B, ALPHAS)])
    # summed: TP 5 5 3 3 0, FP 3 2 1 0 0, FN 0 0 2 2 5, TN 2 3 4 5 5
    np.testing.assert_array_equal(curve["tp"], [5, 5, 3, 3, 0])
    np.testing.assert_array_equal(curve["fp"], [3, 2, 1, 0, 0])
    np.testing.assert_allclose(curve["precision"], [5 / 8, 5 / 7, 3 / 4, 1.0, 1.0])  # last: none predicted -> 1
    np.testing.assert_allclose(curve["recall"], [1.0, 1.0, 3 / 5, 3 / 5, 0.0])
    # mean of per-image accuracies: A 4/6 5/6 4/6 5/6 3/6, B 3/4 3/4 3/4 3/4 2/4
    np.testing.assert_allclose(curve["accuracy"], [17 / 24, 19 / 24, 17 / 24, 19 / 24, 1 / 2])
    # not the pooled accuracy, (5 + 3) / 10 = 0.8 at alpha 0.25
    assert curve["accuracy"][1] != pytest.approx(0.8)
    np.testing.assert_array_equal(curve["alpha"], ALPHAS)
    # best: 19/24 at 0.25 and 0.75, the first wins
    assert best_accuracy(curve) == (pytest.approx(19 / 24), 0.25)
    assert best_accuracy([detection_counts(MAP_A, GT_A, ALPHAS)]) == (pytest.approx(5 / 6), 0.25)


def test_recall_without_blurred_pixels_is_one_and_alphas_must_match():
    curve = pr_curve([detection_counts(MAP_A, np.zeros((2, 3), bool), ALPHAS)])
    np.testing.assert_array_equal(curve["recall"], [1.0] * 5)
    # FP 5 4 3 2 0 of 6 sharp pixels: precision 0 where something is predicted, 1 where nothing is
    np.testing.assert_array_equal(curve["precision"], [0, 0, 0, 0, 1.0])
    with pytest.raises(ValueError, match="same alphas"):
        pr_curve([detection_counts(MAP_A, GT_A, ALPHAS), detection_counts(MAP_B, GT_B, ALPHAS[:4])])
    with pytest.raises(ValueError, match="no images"):
        pr_curve([])


# --------------------------------------------------------------------------- image quality


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01, peak 1
    assert psnr(ref, ref) == np.inf
    assert ssim(ref, ref) == pytest.approx(1.0)
    noisy = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1)
    assert 0.0 < ssim(ref, noisy) < 0.95
    assert ssim(ref[..., 0], noisy[..., 0]) < 1.0  # grey images too
    with pytest.raises(ValueError, match="shape"):
        psnr(ref, ref[:8])
