import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from defocus import matting
from defocus.matting import matting_laplacian, propagate_matting, solve_spd

from .conftest import textured_image


def _loop_laplacian(img, eps, r):
    """Levin et al.'s window-by-window construction, straight from Eq. 12."""
    h, w, c = img.shape
    n = (2 * r + 1) ** 2
    idx = np.arange(h * w).reshape(h, w)
    lap = np.zeros((h * w, h * w))
    for y in range(r, h - r):
        for x in range(r, w - r):
            win = img[y - r : y + r + 1, x - r : x + r + 1].reshape(n, c)
            ids = idx[y - r : y + r + 1, x - r : x + r + 1].ravel()
            mu = win.mean(axis=0)
            cov = win.T @ win / n - np.outer(mu, mu) + eps / n * np.eye(c)
            d = win - mu
            lap[np.ix_(ids, ids)] += np.eye(n) - (1 + d @ np.linalg.inv(cov) @ d.T) / n
    return lap


@pytest.mark.parametrize("shape,eps,r", [((7, 9, 3), 1e-3, 1), ((9, 11, 3), 1e-5, 2), ((6, 5), 1e-2, 1)])
def test_laplacian_matches_the_window_loop(shape, eps, r):
    img = np.random.default_rng(0).random(shape)
    ours = matting_laplacian(img, eps=eps, radius=r)
    assert isinstance(ours, sp.csr_matrix) and ours.dtype == np.float64
    assert ours.shape == (img.shape[0] * img.shape[1],) * 2
    ref = _loop_laplacian(img if img.ndim == 3 else img[:, :, None], eps, r)
    assert np.abs(ours.toarray() - ref).max() < 1e-9 * np.abs(ref).max()


def test_laplacian_is_symmetric_psd_with_zero_row_sums():
    img = np.random.default_rng(1).random((8, 10, 3))
    lap = matting_laplacian(img, eps=1e-4)
    dense = lap.toarray()
    scale = np.abs(dense).max()
    assert np.abs(dense - dense.T).max() < 1e-12 * scale
    assert np.abs(dense.sum(axis=1)).max() < 1e-10 * scale
    eig = np.linalg.eigvalsh(dense)
    assert eig.min() > -1e-9 * scale
    # null space = constants only: the second eigenvalue is clearly positive
    assert eig[1] > 1e-6 * scale
    # 3x3 windows: each pixel touches at most the 5x5 block around it
    assert np.diff(lap.indptr).max() == 25


def test_laplacian_cost_is_small_for_colour_affine_maps():
    """x^T L x = sum over windows of the best local affine fit's residual + eps |a|^2,
    so a map that is an affine function of the colour costs at most eps per window."""
    img = textured_image(40, 48, seed=2).astype(np.float64)
    eps = 1e-5
    lap = matting_laplacian(img, eps=eps)
    x = (0.3 * img[:, :, 0] - 0.2 * img[:, :, 2] + 1.0).ravel()
    n_windows = 38 * 46
    assert x @ (lap @ x) <= eps * (0.3**2 + 0.2**2) * n_windows * (1 + 1e-6)
    noise = np.random.default_rng(3).random(x.size)
    assert noise @ (lap @ noise) > 1e3 * (x @ (lap @ x))


def test_propagation_solves_the_system():
    img = textured_image(48, 56, seed=5)
    rng = np.random.default_rng(6)
    known = rng.random((48, 56)) < 0.1
    sparse = rng.uniform(0.5, 3.0, (48, 56))
    lam, eps = 0.005, 1e-5
    ours = propagate_matting(img, sparse, known, lam=lam, eps=eps, clip=False)
    assert ours.dtype == np.float32 and ours.shape == (48, 56)
    d = lam * known.ravel().astype(float)
    ref = spla.spsolve((matting_laplacian(img, eps) + sp.diags(d)).tocsc(), d * sparse.ravel())
    assert np.abs(ours.ravel() - ref).max() < 1e-5
    clipped = propagate_matting(img, sparse, known, lam=lam, eps=eps)
    assert clipped.min() >= sparse[known].min() and clipped.max() <= sparse[known].max()
    np.testing.assert_allclose(clipped, np.clip(ours, sparse[known].min(), sparse[known].max()))


def test_solver_falls_back_to_a_float64_factor(monkeypatch):
    img = textured_image(24, 30, seed=7)
    known = np.zeros((24, 30), bool)
    known[::5, ::5] = True
    sparse = np.where(known, 2.0 + np.arange(24 * 30).reshape(24, 30) % 3, 0.0)
    expected = propagate_matting(img, sparse, known, clip=False)
    monkeypatch.setattr(matting.spla, "cg", lambda *a, **k: (np.full(a[1].shape, np.nan), 1))
    fallback = propagate_matting(img, sparse, known, clip=False)
    assert np.abs(fallback - expected).max() < 1e-5


@pytest.mark.parametrize("h,w,sep", [(1, 1, 2), (7, 300, 2), (37, 41, 2), (50, 20, 4)])
def test_dissection_order_is_a_permutation(h, w, sep):
    order = matting._dissection_order(h, w, sep)
    np.testing.assert_array_equal(np.sort(order), np.arange(h * w))


def test_solve_spd_on_a_grid_laplacian():
    h, w = 30, 33
    a = matting_laplacian(np.full((h, w, 3), 0.5)) + sp.eye(h * w) * 1e-3
    b = np.random.default_rng(8).normal(size=h * w)
    x = solve_spd(a, b, (h, w), reach=2)
    assert np.abs(a @ x - b).max() < 1e-6 * np.abs(b).max()


def test_constant_image_interpolates_smoothly_between_two_values():
    img = np.full((31, 41, 3), 0.5)
    sparse = np.zeros((31, 41))
    known = np.zeros((31, 41), bool)
    known[15, 5], sparse[15, 5] = True, 1.0
    known[15, 35], sparse[15, 35] = True, 3.0
    away = np.ones((31, 41), bool)  # outside the 5x5 blocks around the two points
    away[13:18, 3:8] = away[13:18, 33:38] = False
    for lam in (0.005, 100.0):
        x = propagate_matting(img, sparse, known, lam=lam, clip=False)
        assert 1.0 - 1e-6 <= x.min() and x.max() <= 3.0 + 1e-6  # maximum principle
        assert abs(x[15, 20] - 2.0) < 1e-4  # symmetric set-up: the midpoint is the mean
        assert np.all(np.diff(x[15, 5:36]) > 0)  # monotone from one value to the other
        dx, dy = np.abs(np.diff(x, axis=1)), np.abs(np.diff(x, axis=0))
        assert dx[away[:, 1:] & away[:, :-1]].max() < 0.03 * 2.0
        assert dy[away[1:] & away[:-1]].max() < 0.03 * 2.0
    # near-hard constraints reproduce the values; the default lambda = 0.005 pulls
    # isolated points to the mean (a 2-D point constraint has a logarithmic well)
    assert abs(x[15, 5] - 1.0) < 0.05 and abs(x[15, 35] - 3.0) < 0.05


def test_constant_image_between_two_known_columns_is_a_linear_ramp():
    img = np.full((20, 41, 3), 0.5)
    sparse = np.zeros((20, 41))
    known = np.zeros((20, 41), bool)
    known[:, 5], sparse[:, 5] = True, 1.0
    known[:, 35], sparse[:, 35] = True, 3.0
    x = propagate_matting(img, sparse, known, lam=100.0, clip=False)
    assert np.abs(x - x[10]).max() < 5e-3  # nearly the same in every row (border rows see fewer windows)
    ramp = np.interp(np.arange(41), [5, 35], [1.0, 3.0])  # constant outside
    assert np.abs(x - ramp).max() < 0.04  # 3x3 windows round the kinks at the known columns
    slope = np.diff(x[10, 10:31])
    assert np.abs(slope - 2.0 / 30).max() < 0.05 * 2.0 / 30  # linear in between
    assert np.abs(x[10] + x[10, ::-1] - 4.0).max() < 1e-4  # antisymmetric about the middle


def _two_regions():
    img = np.zeros((30, 40, 3))
    img[:, :20] = [0.8, 0.2, 0.1]
    img[:, 20:] = [0.1, 0.3, 0.9]
    return img


@pytest.mark.parametrize("rows,eps,tol", [(10, 1e-5, 0.03), (1, 1e-7, 5e-3)])
def test_two_flat_regions_each_take_their_value(rows, eps, tol):
    """One value per flat colour region: the map is 1 on the left, 3 on the right.
    The leak across the colour edge shrinks with eps / (lam * known pixels)."""
    img = _two_regions()
    sparse = np.zeros((30, 40))
    known = np.zeros((30, 40), bool)
    known[10 : 10 + rows, 5], sparse[10 : 10 + rows, 5] = True, 1.0
    known[10 : 10 + rows, 33], sparse[10 : 10 + rows, 33] = True, 3.0
    x = propagate_matting(img, sparse, known, eps=eps)
    assert np.abs(x[:, :20] - 1.0).max() < tol
    assert np.abs(x[:, 20:] - 3.0).max() < tol


def test_no_known_pixel_gives_fill():
    img = textured_image(20, 24)
    x = propagate_matting(img, np.zeros((20, 24)), np.zeros((20, 24), bool), fill=1.5)
    assert x.dtype == np.float32 and np.all(x == 1.5)


def test_invalid_inputs():
    img = textured_image(20, 24)
    ok_s, ok_k = np.zeros((20, 24)), np.zeros((20, 24), bool)
    ok_k[3, 3] = True
    with pytest.raises(ValueError, match="sparse"):
        propagate_matting(img, np.zeros((20, 23)), ok_k)
    with pytest.raises(ValueError, match="known"):
        propagate_matting(img, ok_s, np.zeros((21, 24), bool))
    with pytest.raises(ValueError, match="lam"):
        propagate_matting(img, ok_s, ok_k, lam=0.0)
    with pytest.raises(ValueError, match="eps"):
        propagate_matting(img, ok_s, ok_k, eps=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        propagate_matting(img, np.full((20, 24), np.nan), ok_k)
    with pytest.raises(ValueError, match="window"):
        propagate_matting(img[:2], ok_s[:2], ok_k[:2])
    with pytest.raises(ValueError, match="image"):
        propagate_matting(np.zeros((20, 24, 3, 1)), ok_s, ok_k)
    with pytest.raises(ValueError, match="radius"):
        matting_laplacian(img, radius=0)
    with pytest.raises(ValueError, match="eps"):
        matting_laplacian(img, eps=0.0)
    with pytest.raises(ValueError, match="window"):
        matting_laplacian(img[:4, :4], radius=2)
    with pytest.raises(ValueError, match="non-finite"):
        matting_laplacian(np.full((5, 5, 3), np.inf))
