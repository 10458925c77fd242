"""Mueller-Brown toy: potential, gradients, exact PMF, Langevin sampler, export.

Statistical checks use block averages and compare in standard errors (SE):
|estimate - exact| < 4 SE. All runs use fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cgbg_bench.errors import DataError
from cgbg_bench.toy import mueller_brown as mb
from tests.conftest import assert_export_round_trip

K_SIGMA = 4.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hand_potential(x: float, y: float) -> float:
    """V written out term by term from the table in docs/spec.md section 3."""
    return (
        -17.3 * math.exp(-0.0039 * (x - 48) ** 2 + 0 - 0.0391 * (y - 8) ** 2)
        - 8.7 * math.exp(-0.0039 * (x - 32) ** 2 + 0 - 0.0391 * (y - 16) ** 2)
        - 14.7 * math.exp(-0.0254 * (x - 24) ** 2 + 0.043 * (x - 24) * (y - 32) - 0.0254 * (y - 32) ** 2)
        + 1.3 * math.exp(0.00273 * (x - 16) ** 2 + 0.0023 * (x - 16) * (y - 24) + 0.00273 * (y - 24) ** 2)
    )


# ----------------------------------------------------------- potential ---
def test_potential_at_known_points():
    # at the centre of term 3 its exponent is 0; worked by hand:
    # -14.7 - 8.7 e^{-10.2592} - 17.3 e^{-24.7680} + 1.3 e^{0.49664} = -12.56416
    assert mb.potential(24.0, 32.0) == pytest.approx(-12.564157, abs=1e-6)
    for x, y in [(24.0, 32.0), (48.0, 8.0), (0.0, 50.0), (31.3, 17.7)]:
        assert mb.potential(x, y) == pytest.approx(_hand_potential(x, y), rel=1e-13, abs=1e-13)


def test_potential_broadcasts():
    x = np.linspace(0, 50, 7)
    y = np.linspace(0, 50, 5)
    v = mb.potential(x[:, None], y[None, :])
    assert v.shape == (7, 5)
    assert v[3, 2] == pytest.approx(_hand_potential(x[3], y[2]), rel=1e-13)


def test_gradient_matches_finite_differences_and_autograd():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 50, (2, 200))
    gx, gy = mb.gradient(x, y)
    h = 1e-5
    fd_x = (mb.potential(x + h, y) - mb.potential(x - h, y)) / (2 * h)
    fd_y = (mb.potential(x, y + h) - mb.potential(x, y - h)) / (2 * h)
    np.testing.assert_allclose(gx, fd_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gy, fd_y, rtol=1e-6, atol=1e-7)

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    vt = mb.potential_torch(xt, yt)
    np.testing.assert_allclose(vt.detach().numpy(), mb.potential(x, y), rtol=1e-13, atol=1e-13)
    ax, ay = torch.autograd.grad(vt.sum(), (xt, yt))
    np.testing.assert_allclose(ax.numpy(), gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ay.numpy(), gy, rtol=1e-12, atol=1e-12)
    tx, ty = mb.gradient_torch(xt.detach(), yt.detach())
    np.testing.assert_allclose(tx.numpy(), gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ty.numpy(), gy, rtol=1e-12, atol=1e-12)


def test_gaussian_bias_and_derivative():
    assert mb.gaussian_bias(32.0) == pytest.approx(-4.0)
    assert mb.gaussian_bias(37.0) == pytest.approx(-4.0 * math.exp(-0.5))
    x = np.linspace(0, 50, 101)
    h = 1e-6
    fd = (mb.gaussian_bias(x + h) - mb.gaussian_bias(x - h)) / (2 * h)
    np.testing.assert_allclose(mb.gaussian_bias_derivative(x), fd, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------- exact PMF ---
def test_exact_histogram_sums_to_one_and_is_converged():
    p = mb.exact_histogram()
    assert p.shape == (100,)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p > 0).all()
    fine = mb.exact_histogram(n_sub=40, n_y=8001)
    np.testing.assert_allclose(p, fine, rtol=1e-7, atol=0)


def test_exact_histogram_equals_naive_double_loop():
    bins, lo, hi, n_sub, n_y = 4, 10.0, 50.0, 4, 61
    fast = mb.exact_histogram(bins, (lo, hi), n_sub=n_sub, n_y=n_y)

    hy = 50.0 / (n_y - 1)
    hx = (hi - lo) / (bins * n_sub)

    def marginal(x):  # trapezoid over y, plain loop
        z = 0.0
        for j in range(n_y):
            w = hy * (0.5 if j in (0, n_y - 1) else 1.0)
            z += w * math.exp(-_hand_potential(x, j * hy))
        return z

    naive = []
    for i in range(bins):  # composite Simpson over the bin's sub-intervals
        mass = 0.0
        for k in range(n_sub + 1):
            coef = 1.0 if k in (0, n_sub) else (4.0 if k % 2 else 2.0)
            mass += hx / 3.0 * coef * marginal(lo + (i * n_sub + k) * hx)
        naive.append(mass)
    naive = np.array(naive) / sum(naive)
    np.testing.assert_allclose(fast, naive, rtol=1e-10)


def test_exact_free_energy_converged_in_grid():
    x = np.linspace(0, 50, 51)
    np.testing.assert_allclose(mb.exact_free_energy(x), mb.exact_free_energy(x, n_y=16001), atol=1e-8)


def test_exact_pmf_module_matches_quadrature():
    x = np.linspace(0, 50, 501)
    module = mb.ExactPMF()
    with torch.no_grad():
        f_mod = module(torch.tensor(x[:, None], dtype=torch.float32)).numpy()
    assert f_mod.shape == (501,) and f_mod.dtype == np.float32
    diff = f_mod.astype(np.float64) - mb.exact_free_energy(x)
    # additive constant does not matter; float32 on |F| ~ 20 gives ~1e-5 error
    assert np.abs(diff - diff.mean()).max() < 1e-4


def test_potential_minimum_pmf_is_min_energy_and_wrong():
    x = np.linspace(0, 50, 201)
    module = mb.PotentialMinimumPMF()
    with torch.no_grad():
        u = module(torch.tensor(x[:, None], dtype=torch.float32)).numpy()
    yg = np.linspace(0, 50, 1001)
    expected = mb.potential(x[:, None], yg[None, :]).min(axis=1)
    np.testing.assert_allclose(u, expected, atol=1e-4)
    # it is not the free energy up to a constant: that is the point of the row
    d = u - mb.exact_free_energy(x)
    assert d.max() - d.min() > 1.0


@pytest.mark.parametrize("factory", [mb.ExactPMF, mb.PotentialMinimumPMF], ids=lambda f: f.__name__)
def test_export_round_trip(factory, tmp_path):
    assert_export_round_trip(factory(n_y=201), (1, 3, 257), lambda n: torch.linspace(0, 50, n)[:, None], tmp_path)


# ------------------------------------------------------------ Langevin ---
def _assert_within_se(values: np.ndarray, weights: np.ndarray, block: int, exact: float, what: str):
    """Weighted mean sum(w v) / sum(w) over all frames, SE by jackknife over blocks.

    Blocks are ``block`` consecutive frames of one chain (a trailing partial block
    is dropped); they must be long against the correlation time. The global
    ratio estimator is used, not a mean of per-block ratios, which would carry
    an O(1/block) ratio bias when weights vary.
    """
    n_chains, n = values.shape
    nb = n // block
    v = values[:, : nb * block].reshape(n_chains * nb, block)
    w = weights[:, : nb * block].reshape(n_chains * nb, block)
    swv, sw = (w * v).sum(1), w.sum(1)
    est = swv.sum() / sw.sum()
    m = swv.size
    loo = (swv.sum() - swv) / (sw.sum() - sw)  # leave one block out
    se = math.sqrt((m - 1) / m * np.sum((loo - loo.mean()) ** 2))
    assert abs(est - exact) < K_SIGMA * se, f"{what}: {est:.4f} vs exact {exact:.4f}, SE {se:.4f}"


def test_langevin_harmonic_boltzmann():
    """2-D harmonic, kx = 1, ky = 0.25: x ~ N(25, 1), y ~ N(20, 4). BAOAB samples
    the configurational distribution of a harmonic well exactly, so any miss is a bug."""

    def grad(x, y):
        return 1.0 * (x - 25.0), 0.25 * (y - 20.0)

    tr = mb.langevin(800, seed=3, n_chains=10, gradient_fn=grad)
    x, y = tr.x[:, 40:], tr.y[:, 40:]  # burn-in: 40 frames = 400 time units = 40 / friction
    ones = np.ones_like(x)
    block = 76  # 760 time units >> correlation time ~ 2 / friction = 20
    _assert_within_se(x, ones, block, 25.0, "<x>")
    _assert_within_se((x - 25.0) ** 2, ones, block, 1.0, "<(x-25)^2>")
    _assert_within_se(y, ones, block, 20.0, "<y>")
    _assert_within_se((y - 20.0) ** 2, ones, block, 4.0, "<(y-20)^2>")
    # stored forces are -grad of the potential passed in
    np.testing.assert_allclose(tr.force_x, -(tr.x - 25.0))


def test_langevin_reflecting_walls_give_uniform():
    """No force in a 10 x 10 box: uniform, mean 5, variance 100/12; never outside."""

    def grad(x, y):
        return np.zeros_like(x), np.zeros_like(y)

    tr = mb.langevin(600, seed=4, n_chains=10, domain=(0.0, 10.0), init_range=(0.0, 10.0), gradient_fn=grad)
    for coord in (tr.x, tr.y):
        assert coord.min() >= 0.0 and coord.max() <= 10.0
        v = coord[:, 20:]
        ones = np.ones_like(v)
        _assert_within_se(v, ones, 58, 5.0, "mean")
        _assert_within_se((v - 5.0) ** 2, ones, 58, 100.0 / 12.0, "variance")


def test_langevin_harmonic_with_gaussian_bias_reweights():
    """x harmonic (k = 0.1, sd 3.16) plus the Gaussian bias at 32: the raw frames
    follow exp(-V - B), and reweighting with exp(+B) recovers N(25, 10)."""

    def grad(x, y):
        return 0.1 * (x - 25.0), 0.25 * (y - 20.0)

    tr = mb.langevin(800, seed=2, bias="gaussian", gradient_fn=grad, domain=(-1e3, 1e3))
    x = tr.x[:, 40:]
    ones = np.ones_like(x)
    xs = np.linspace(-30.0, 80.0, 110001)
    log_pb = -0.05 * (xs - 25.0) ** 2 - mb.gaussian_bias(xs)
    pb = np.exp(log_pb - log_pb.max())
    biased_mean = float(np.sum(xs * pb) / pb.sum())
    assert biased_mean > 28.0  # the bias pulls towards 32: the check has teeth
    _assert_within_se(x, ones, 76, biased_mean, "<x> biased")
    w = np.exp(tr.bias_energy[:, 40:])
    _assert_within_se(x, w, 76, 25.0, "<x> reweighted")
    _assert_within_se((x - 25.0) ** 2, w, 76, 10.0, "<(x-25)^2> reweighted")


@pytest.fixture(scope="module")
def mb_runs():
    return {bias: mb.langevin(1000, seed=11, bias=bias) for bias in (None, "gaussian")}


@pytest.mark.parametrize("bias", [None, "gaussian"])
def test_langevin_mueller_brown_marginal(mb_runs, bias):
    """Mean of x and x^2 over the main basin region x in [10, 30] against the exact
    marginal; the biased run is reweighted with exp(+B(x)). Basin hopping is slow
    (more so in the biased run), so each chain is one block: 10 independent chains."""
    tr = mb_runs[bias]
    x = tr.x[:, 100:]
    w = np.exp(tr.bias_energy[:, 100:]) * ((x >= 10.0) & (x < 30.0))
    xg = np.linspace(10.0, 30.0, 4001)
    p = np.exp(-mb.exact_free_energy(xg))
    mean = np.trapezoid(xg * p, xg) / np.trapezoid(p, xg)
    second = np.trapezoid(xg**2 * p, xg) / np.trapezoid(p, xg)
    _assert_within_se(x, w, x.shape[1], mean, f"<x | 10<=x<30> ({bias})")
    _assert_within_se(x**2, w, x.shape[1], second, f"<x^2 | 10<=x<30> ({bias})")


def test_langevin_biased_forces_are_unbiased(mb_runs):
    tr = mb_runs["gaussian"]
    assert tr.bias == "gaussian"
    gx, gy = mb.gradient(tr.x, tr.y)
    np.testing.assert_allclose(tr.force_x, -gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tr.force_y, -gy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tr.bias_energy, mb.gaussian_bias(tr.x), rtol=1e-12)
    # the bias force is not negligible where the chains are, so the test has teeth
    assert np.abs(mb.gaussian_bias_derivative(tr.x)).max() > 0.3
    assert np.all(mb_runs[None].bias_energy == 0.0)


def test_langevin_output_contract(mb_runs):
    tr = mb_runs[None]
    assert tr.x.shape == tr.y.shape == tr.force_x.shape == (10, 1000)
    assert tr.n_chains == 10 and tr.n_frames == 1000 and tr.n_frames_total == 10_000
    np.testing.assert_allclose(tr.time, np.arange(1, 1001) * 100 * 0.1)
    assert tr.x.min() >= 0.0 and tr.x.max() <= 50.0
    with pytest.raises(ValueError):
        tr.x[0, 0] = 1.0  # read-only
    pos, frc, blocks = tr.training_data(block_frames=250)
    assert pos.shape == frc.shape == (10_000, 1) and pos.dtype == np.float32
    assert np.array_equal(pos[:1000, 0], tr.x[0].astype(np.float32))
    assert np.unique(blocks).size == 40
    assert np.all(np.diff(blocks) >= 0)  # contiguous blocks


def test_langevin_reproducible():
    a1 = mb.langevin(20, seed=5, stride=10, bias="gaussian")
    a2 = mb.langevin(20, seed=5, stride=10, bias="gaussian")
    b = mb.langevin(20, seed=6, stride=10, bias="gaussian")
    for name in ("x", "y", "force_x", "force_y", "bias_energy"):
        assert np.array_equal(getattr(a1, name), getattr(a2, name))
    assert not np.array_equal(a1.x, b.x)


def test_langevin_rejects_bad_arguments():
    with pytest.raises(DataError):
        mb.langevin(10, seed=0, bias="metadynamics")
    with pytest.raises(DataError):
        mb.langevin(0, seed=0)
    with pytest.raises(DataError):
        mb.langevin(10, seed=0, domain=(0.0, 5.0))  # init range outside the domain
