"""Vectorized bootstrap against a naive loop; statistical checks on the harmonic toy."""

import numpy as np
import pytest

from cgbg_bench import metrics as M
from cgbg_bench.bootstrap import block_sums, bootstrap_scores
from cgbg_bench.evaluate import evaluate
from tests.conftest import Harmonic, analytic_ess


def test_block_sums_match_loop():
    rng = np.random.default_rng(0)
    idx = rng.integers(-1, 10, size=(2, 103))
    w = rng.random(103)
    out = block_sums(idx, w, 7, 10)
    block = (np.arange(103) * 7) // 103
    for b in range(7):
        for k in range(2):
            for j in range(10):
                sel = (block == b) & (idx[k] == j)
                assert out[b, k, j] == pytest.approx(w[sel].sum())


def test_bootstrap_matches_naive_replicate_loop():
    rng = np.random.default_rng(1)
    q_blocks = rng.random((12, 2, 9)) * (rng.random((12, 2, 9)) > 0.3)
    p_blocks = rng.random((8, 2, 9))
    # bins 2 and 6 empty on both sides in every block: the fast path drops them
    q_blocks[:, :, [2, 6]] = 0.0
    p_blocks[:, :, [2, 6]] = 0.0
    s1, s2 = rng.random(12), rng.random(12) * 0.1
    scores = bootstrap_scores(q_blocks, p_blocks, observable_names=["a", "b"], one_dimensional=[True, False],
                              n_bootstrap=30, seed=5, ess_blocks=(s1, s2), n_samples=1000, chunk=7)
    # naive: the same random stream, one replicate at a time, plain loops
    gen = np.random.default_rng(5)
    js, ess, fe, pmf = [], [], [], []
    for start in range(0, 30, 7):
        r = min(7, 30 - start)
        cq = gen.multinomial(12, np.full(12, 1 / 12), size=r)
        cp = gen.multinomial(8, np.full(8, 1 / 8), size=r)
        for i in range(r):
            q = sum(cq[i, b] * q_blocks[b] for b in range(12))
            p = sum(cp[i, b] * p_blocks[b] for b in range(8))
            q, p = M.normalize(q), M.normalize(p)
            js.append(M.js_divergence(p[0], q[0]))  # the headline: the first observable
            pmf.append(M.pmf_error(p[0], q[0]))
            fe.append(M.fe_rmse(p[0], q[0]))
            a = sum(cq[i, b] * s1[b] for b in range(12))
            c = sum(cq[i, b] * s2[b] for b in range(12))
            ess.append(a * a / (1000 * c))
    assert scores.metrics["js"].value == pytest.approx(np.mean(js), rel=1e-10)
    assert scores.metrics["js"].error == pytest.approx(np.std(js, ddof=1), rel=1e-8)
    assert scores.metrics["ess"].value == pytest.approx(np.mean(ess), rel=1e-10)
    assert scores.metrics["fe_rmse"].value == pytest.approx(np.mean(fe), rel=1e-10)
    assert scores.metrics["pmf_error"].value == pytest.approx(np.mean(pmf), rel=1e-10)
    assert set(scores.per_observable["b"]) == {"js", "pmf_error", "js_floor"}


def test_headline_is_the_first_observable_and_the_others_are_reported():
    rng = np.random.default_rng(3)
    q_blocks = rng.random((10, 2, 16))
    p_blocks = rng.random((6, 2, 16))
    p_blocks[:, 1, :8] *= 50.0  # the second observable disagrees far more than the first
    scores = bootstrap_scores(q_blocks, p_blocks, observable_names=["ala2", "ala1"], one_dimensional=[False, False],
                              n_bootstrap=40, seed=2, ess_blocks=(rng.random(10), rng.random(10)), n_samples=100)
    first, second = scores.per_observable["ala2"], scores.per_observable["ala1"]
    assert list(scores.per_observable) == ["ala2", "ala1"]
    for k in ("js", "pmf_error", "js_floor"):
        assert scores.metrics[k] == first[k]
    assert "fe_rmse" not in scores.metrics and "ess" in scores.metrics
    # the second is reported, and a mean over both would differ clearly from the headline
    assert second["js"].value > 5 * first["js"].value
    assert scores.metrics["js"].value < 0.5 * (first["js"].value + second["js"].value)
    # the order decides: listed the other way round, the headline follows
    swapped = bootstrap_scores(q_blocks[:, ::-1], p_blocks[:, ::-1], observable_names=["ala1", "ala2"],
                               one_dimensional=[False, False], n_bootstrap=40, seed=2)
    assert swapped.metrics["js"].point == pytest.approx(second["js"].point)


def test_exact_pmf_ess_matches_analytic_value(toy_task):
    result, _ = evaluate(Harmonic(), toy_task, device="cpu")
    ess = result.scores.metrics["ess"]
    # bank of 20000 i.i.d. proposals, no clipping in the toy: Kish ESS -> 1 / E_q[(p/q)^2]
    assert abs(ess.point - analytic_ess()) < 4 * ess.error


def test_exact_pmf_js_is_at_the_noise_floor(toy_task):
    result, _ = evaluate(Harmonic(), toy_task, device="cpu")
    js, floor = result.scores.metrics["js"], result.scores.metrics["js_floor"]
    assert abs(js.value - floor.value) < 3 * np.hypot(js.error, floor.error)


def test_wrong_pmf_is_clearly_worse(toy_task):
    good, _ = evaluate(Harmonic(), toy_task, device="cpu")
    bad, _ = evaluate(Harmonic(x0=0.7), toy_task, device="cpu")
    g, b = good.scores.metrics, bad.scores.metrics
    assert b["js"].value - g["js"].value > 10 * np.hypot(b["js"].error, g["js"].error)
    assert b["pmf_error"].value > g["pmf_error"].value


def test_result_is_reproducible_with_seed(toy_task):
    a, _ = evaluate(Harmonic(), toy_task, device="cpu", seed=3, n_bootstrap=50)
    b, _ = evaluate(Harmonic(), toy_task, device="cpu", seed=3, n_bootstrap=50)
    assert a.scores.as_dict() == b.scores.as_dict()



def test_one_replicate_rule_shared_by_bootstrap_and_crosscheck():
    """The mean needs one finite replicate, the spread two: one replicate gives a value and a NaN
    error (not 0, which would claim an exact value); none gives NaN for both."""
    from cgbg_bench import crosscheck
    from cgbg_bench.bootstrap import Metric

    m = Metric.from_replicates(np.array([1.0, 3.0, np.nan, np.inf]), 0.5)
    assert (m.value, m.point) == (2.0, 0.5) and m.error == pytest.approx(np.sqrt(2.0))
    one = Metric.from_replicates(np.array([np.nan, 1.5]), 1.0)
    assert one.value == 1.5 and np.isnan(one.error) and one.point == 1.0
    none = Metric.from_replicates(np.array([np.nan]), 1.0)
    assert np.isnan(none.value) and np.isnan(none.error) and none.point == 1.0
    assert not hasattr(crosscheck, "_summary")  # one rule, in one place
    # through bootstrap_scores: a single replicate has no error bar
    rng = np.random.default_rng(3)
    s = bootstrap_scores(rng.random((6, 1, 9)), rng.random((6, 1, 9)), observable_names=["x"],
                         one_dimensional=[True], n_bootstrap=1)
    assert all(np.isfinite(m.value) and np.isnan(m.error) for m in s.metrics.values())
