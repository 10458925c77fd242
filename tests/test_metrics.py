"""Metrics against naive loops and hand-computed cases (docs/spec.md section 4)."""

import math

import numpy as np
import pytest

from cgbg_bench import metrics as M


def naive_js(p, q):
    total = 0.0
    for a, b in zip(p, q):
        m = 0.5 * (a + b)
        if a > 0:
            total += 0.5 * a * math.log(a / m)
        if b > 0:
            total += 0.5 * b * math.log(b / m)
    return total


def naive_pmf_error(p, q):
    pf = [a if a > 0 else 1e-10 for a in p]
    qf = [b if b > 0 else 1e-10 for b in q]
    m = [(a + b) / 2 for a, b in zip(pf, qf)]
    s = sum(m)
    return sum(mi / s * (math.log(a) - math.log(b)) ** 2 for mi, a, b in zip(m, pf, qf))


@pytest.fixture
def pq():
    rng = np.random.default_rng(1)
    p = rng.random(50) * (rng.random(50) > 0.2)
    q = rng.random(50) * (rng.random(50) > 0.2)
    return p / p.sum(), q / q.sum()


def test_js_matches_naive_loop(pq):
    p, q = pq
    assert M.js_divergence(p, q) == pytest.approx(naive_js(p, q), rel=1e-12)


def test_js_hand_values():
    assert M.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(2))
    p = np.array([0.25, 0.25, 0.5])
    assert M.js_divergence(p, p) == 0.0


def test_js_of_a_subnormal_bin_is_finite():
    # half of the smallest subnormal rounds to 0: the mixture bin is 0 where p is not (was inf)
    with np.errstate(divide="raise", invalid="raise"):
        assert M.js_divergence(np.array([5e-324, 1.0]), np.array([0.0, 1.0])) == 0.0
        assert M.js_divergence(np.array([1e-300, 1.0]), np.array([0.0, 1.0])) == pytest.approx(0.5e-300 * math.log(2))


def test_js_broadcasts_over_replicates(pq):
    p, q = pq
    batch = M.js_divergence(np.stack([p, q, p]), np.stack([q, q, q]))
    assert batch == pytest.approx([naive_js(p, q), 0.0, naive_js(p, q)])


def test_pmf_error_matches_naive_loop(pq):
    p, q = pq
    assert M.pmf_error(p, q) == pytest.approx(naive_pmf_error(p, q), rel=1e-12)


def test_pmf_error_hand_value():
    # two bins, p = (0.5, 0.5), q = (0.25, 0.75): m = p+q / 2 = (0.375, 0.625)
    expected = 0.375 * math.log(2) ** 2 + 0.625 * math.log(0.5 / 0.75) ** 2
    assert M.pmf_error(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)


def test_ess_limits():
    assert M.ess(np.full(10, 0.1)) == pytest.approx(1.0)
    one_hot = np.zeros(10)
    one_hot[3] = 1.0
    assert M.ess(one_hot) == pytest.approx(0.1)
    # clipped samples count in N: half the bank at zero weight gives 0.5
    assert M.ess(np.r_[np.ones(5), np.zeros(5)]) == pytest.approx(0.5)


def test_weights_invariant_to_additive_constant_in_energy():
    rng = np.random.default_rng(0)
    u = rng.normal(size=1000) * 3
    log_q = rng.normal(size=1000)
    lw1 = M.log_weights(u, log_q, kT=2.5)
    lw2 = M.log_weights(u + 1234.5, log_q, kT=2.5)
    k1, k2 = M.clip_mask(lw1, 99), M.clip_mask(lw2, 99)
    assert (k1 == k2).all()
    np.testing.assert_allclose(M.normalized_weights(lw1, k1), M.normalized_weights(lw2, k2), rtol=1e-9)


def test_clip_discards_top_percent():
    log_w = np.arange(1000, dtype=float)
    keep = M.clip_mask(log_w, 99)
    assert keep.sum() == 990 and not keep[990:].any()
    w = M.normalized_weights(log_w, keep)
    assert w[990:].sum() == 0 and w.sum() == pytest.approx(1.0)
    assert M.clip_mask(log_w, 100).all()


def test_clip_keeps_the_tied_smallest_when_none_is_below_the_percentile():
    # 99.5% of the bank tied at the floor (outside a thin reference's support), 10 samples above it
    log_w = np.r_[np.full(1990, -2000.0), np.linspace(-1.0, 0.0, 10)]
    keep = M.clip_mask(log_w, 99)
    assert keep.sum() == 1990 and not keep[1990:].any()
    assert M.normalized_weights(log_w, keep).sum() == pytest.approx(1.0)


def test_bin_index_matches_numpy_histogram2d():
    rng = np.random.default_rng(3)
    v = rng.uniform(-4, 4, size=(5000, 2))
    v[:5] = [[math.pi, 0.0], [-math.pi, -math.pi], [0.0, math.pi], [5.0, 0.0], [0.0, -3.5]]
    w = rng.random(5000)
    rng2 = ((-math.pi, math.pi), (-math.pi, math.pi))
    idx = M.bin_index(v, (20, 20), rng2)
    ours = M.weighted_histogram(idx, w, 400).reshape(20, 20)
    ref, _, _ = np.histogram2d(v[:, 0], v[:, 1], bins=20, range=rng2, weights=w)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_bin_index_1d_matches_numpy_histogram():
    rng = np.random.default_rng(4)
    v = rng.uniform(5, 55, size=3000)
    ours = M.weighted_histogram(M.bin_index(v, (100,), ((10, 50),)), None, 100)
    ref, _ = np.histogram(v, bins=100, range=(10, 50))
    np.testing.assert_array_equal(ours, ref)


def test_fe_rmse_ignores_constant_and_hand_value():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert M.fe_rmse(p, p) == pytest.approx(0.0, abs=1e-12)
    q = p * np.exp([0.0, 0.0, 1.0, 1.0])
    q /= q.sum()
    # ln q - ln p = (0, 0, 1, 1) + c; p-weighted mean 0.7: deviations -0.7 (weight 0.3), 0.3 (weight 0.7)
    assert M.fe_rmse(p, q) == pytest.approx(math.sqrt(0.3 * 0.49 + 0.7 * 0.09))
    # a bin empty on one side is left out
    q2 = np.array([0.0, 0.2, 0.3, 0.5])
    assert M.fe_rmse(p, q2) == pytest.approx(M.fe_rmse(p[1:] / p[1:].sum(), q2[1:]))


def test_normalize_adds_eps():
    h = np.array([1.0, 3.0])
    np.testing.assert_allclose(M.normalize(h), h / (4 + 1e-10))
    assert M.normalize(np.zeros(3)).sum() == 0.0


def test_pmf_error_with_empty_bins_left_out(pq):
    p, q = pq
    both_empty = np.r_[p, np.zeros(7)], np.r_[q, np.zeros(7)]
    assert M.pmf_error(p, q, n_empty=7) == pytest.approx(M.pmf_error(*both_empty), rel=1e-14)


def test_free_energy_is_minus_ln_h_shifted_to_zero_along_the_last_axis():
    h = np.array([[0.5, 0.25, 0.0, 0.25], [0.0, 0.0, 0.0, 0.0], [2.0, 6.0, 2.0, 0.0]])
    f = M.free_energy(h)
    np.testing.assert_allclose(f[0], [0.0, np.log(2), np.nan, np.log(2)])
    assert np.isnan(f[1]).all()  # no weight at all: no free energy, and no warning
    np.testing.assert_allclose(f[2], [np.log(3), 0.0, np.log(3), np.nan])  # unnormalized is fine


def test_one_tuple_of_metric_names():
    from cgbg_bench.cli.golden import HEADLINE
    from cgbg_bench.leaderboard.schema import METRIC_ORDER
    from cgbg_bench.report import METRIC_LABELS

    assert HEADLINE is M.METRIC_NAMES
    assert tuple(METRIC_LABELS) == M.METRIC_NAMES == METRIC_ORDER
