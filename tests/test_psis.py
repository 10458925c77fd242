"""Pareto-smoothed importance sampling (cgbg_bench.psis)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from cgbg_bench.errors import DataError
from cgbg_bench.psis import gpd_fit, gpd_quantile, pareto_k_threshold, psis_smooth, smooth_tail, tail_length


def _heavy_log_weights(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":  # log-weights normal: every moment finite, k-hat ~ 0.3-0.6
        return 1.5 * rng.standard_normal(n)
    if kind == "pareto":  # weights Pareto with tail index 1/0.7
        return np.log(stats.genpareto.rvs(0.7, size=n, random_state=rng))
    if kind == "student":  # log-weights Student-t: weights heavier than any power law
        return 0.5 * rng.standard_t(4, size=n)
    raise ValueError(kind)


# --- the reference implementation ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lognormal", "pareto", "student"])
@pytest.mark.parametrize("n", [400, 10_000, 40_000])  # tail lengths 60, 300, 600: loo and arviz round alike
def test_matches_arviz_stats(kind, n):
    array_stats = pytest.importorskip("arviz_stats.base").array_stats
    lw = _heavy_log_weights(kind, n, seed=n + len(kind))
    ours, k = psis_smooth(lw)
    # arviz-stats' psislw takes log-likelihoods: its log-weights are their negatives.
    theirs, k_ref = array_stats.psislw(-lw)
    assert k == pytest.approx(float(k_ref), rel=1e-9, abs=1e-12)
    # arviz-stats returns normalized log-weights; ours keep the input's offset.
    np.testing.assert_allclose(ours - logsumexp(ours), theirs - logsumexp(theirs), rtol=0, atol=1e-10)


# --- a known tail index -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [10_000, 100_000])
@pytest.mark.parametrize("k", [0.3, 0.6, 0.9])
def test_k_hat_of_generalized_pareto_weights(n, k):
    # Exceedances of a GPD over any threshold are GPD with the same shape: k-hat estimates k.
    # The asymptotic standard error of the maximum-likelihood k is (1 + k) / sqrt(M).
    m = tail_length(n)
    se = (1 + k) / np.sqrt(m)
    w = stats.genpareto.rvs(k, size=n, random_state=np.random.default_rng(2024))
    _, k_hat = psis_smooth(np.log(w))
    assert abs(k_hat - k) < 3 * se
    if n == 100_000:  # the mean over 20 banks: within 3 standard errors of a mean of 20
        ks = [psis_smooth(np.log(stats.genpareto.rvs(k, size=n, random_state=np.random.default_rng(s))))[1]
              for s in range(20)]
        assert abs(np.mean(ks) - k) < 3 * se / np.sqrt(20)


def test_k_hat_of_bounded_weights_is_small():
    lw = np.log(np.random.default_rng(3).uniform(0.5, 1.0, 10_000))  # bounded: GPD k = -1
    _, k_hat = psis_smooth(lw)
    assert k_hat < 0


# --- what smoothing does and does not touch --------------------------------------------------

@pytest.mark.parametrize("kind", ["lognormal", "pareto", "student"])
def test_only_the_tail_changes_and_is_truncated(kind):
    n = 20_000
    lw = _heavy_log_weights(kind, n, seed=7)
    out, _ = psis_smooth(lw)
    m = tail_length(n)
    tail = np.argsort(lw)[n - m:]
    rest = np.ones(n, bool)
    rest[tail] = False
    np.testing.assert_array_equal(out[rest], lw[rest])  # bit for bit
    cutoff = np.sort(lw)[n - m - 1]
    assert np.all(out[tail] <= lw.max())  # truncated at the largest raw weight
    assert np.all(out[tail] >= cutoff)  # the GPD lives above the cutoff
    assert np.all(np.diff(out[tail]) >= 0)  # expected order statistics keep the order
    assert out.dtype == np.float64 and out.shape == lw.shape


def test_shift_invariance_and_wide_log_weights():
    lw = _heavy_log_weights("pareto", 10_000, seed=11)
    out, k = psis_smooth(lw)
    for c in (-5000.0, 3000.0, 1e6):
        out_c, k_c = psis_smooth(lw + c)
        assert k_c == pytest.approx(k, abs=1e-6)
        np.testing.assert_allclose(out_c - c, out, rtol=0, atol=1e-9 + 1e-12 * abs(c))
    # log-weights spanning thousands of nats (the bulk far below the tail): finite, same tail fit
    wide = lw.copy()
    wide[np.argsort(lw)[:5000]] -= 4000.0
    out_w, k_w = psis_smooth(wide)
    assert np.all(np.isfinite(out_w))
    assert k_w == pytest.approx(k, rel=1e-12)
    # a tail spanning hundreds of nats: exceedances scaled by the largest one, no overflow
    steep = np.sort(np.random.default_rng(5).standard_normal(2500)) * 100.0
    out_s, k_s = psis_smooth(steep)
    assert np.all(np.isfinite(out_s)) and np.isfinite(k_s)


def test_constant_weights_are_left_alone():
    lw = np.full(1000, -3.0)
    out, k = psis_smooth(lw)
    np.testing.assert_array_equal(out, lw)
    assert k == -np.inf


# --- building blocks --------------------------------------------------------------------------

def test_tail_length():
    assert tail_length(21) == 5  # ceil(0.2 * 21)
    assert tail_length(225) == 45  # both bounds meet
    assert tail_length(10_000) == 300
    assert tail_length(10_001) == 301  # rounded up, as loo
    assert tail_length(10_000, r_eff=0.25) == 600
    assert pareto_k_threshold(10**6) == pytest.approx(0.7)
    assert pareto_k_threshold(1000) == pytest.approx(2 / 3)


def test_gpd_fit_recovers_parameters_and_is_scale_equivariant():
    x = stats.genpareto.rvs(0.4, scale=2.0, size=50_000, random_state=np.random.default_rng(9))
    k, sigma = gpd_fit(x, prior=False)
    assert k == pytest.approx(0.4, abs=0.03)
    assert sigma == pytest.approx(2.0, rel=0.05)
    k2, sigma2 = gpd_fit(1e-200 * x, prior=False)
    assert k2 == pytest.approx(k, rel=1e-9) and sigma2 == pytest.approx(1e-200 * sigma, rel=1e-9)
    # the prior pulls k towards 0.5 with the weight of 10 draws
    kp, _ = gpd_fit(x[:40], prior=True)
    k0, _ = gpd_fit(x[:40], prior=False)
    assert kp == pytest.approx((40 * k0 + 5) / 50)


def test_gpd_quantile_matches_scipy():
    p = np.linspace(0.01, 0.99, 7)
    for k in (-0.3, 0.0, 0.5, 1.2):
        np.testing.assert_allclose(gpd_quantile(p, k, 1.7, 0.2), stats.genpareto.ppf(p, k, loc=0.2, scale=1.7),
                                   rtol=1e-12)


def test_smooth_tail_ties_at_the_cutoff():
    tail = np.array([0.0] * 4 + list(np.linspace(0.1, 2.0, 6)))  # a quarter at the cutoff itself
    out, k = smooth_tail(tail, 0.0)
    np.testing.assert_array_equal(out, tail)
    assert k == np.inf


# --- errors -----------------------------------------------------------------------------------

def test_too_few_samples():
    with pytest.raises(DataError, match="log_weights has 20 samples"):
        psis_smooth(np.zeros(20))
    psis_smooth(np.random.default_rng(0).standard_normal(21))  # M = 5: enough


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_log_weights(bad):
    lw = np.random.default_rng(0).standard_normal(500)
    lw[17] = bad
    with pytest.raises(DataError, match=r"log_weights has 1 non-finite values \(first at index 17\)"):
        psis_smooth(lw)


def test_wrong_shape():
    with pytest.raises(DataError, match="log_weights must be 1-D"):
        psis_smooth(np.zeros((10, 10)))
