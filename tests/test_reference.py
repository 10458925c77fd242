"""Reference histograms from MD-like series: weighting, blocks, and the quality report."""

import math

import numpy as np
import pytest

from cgbg_bench import metrics as M
from cgbg_bench.reference import (MIN_GROUP_BLOCKS, RunDihedrals, basin_masks, basin_populations, block_histograms,
                                  combine_reference, combine_runs, compare_basins, merge_blocks, quality_report)


def _run(n, seed, bias=None, name="r", hop=0.002, kind=""):
    """AR(1)-correlated (phi, psi) around two basins; optional static bias on phi (kJ/mol)."""
    rng = np.random.default_rng(seed)
    basin = (np.cumsum(rng.random(n) < hop) % 2).astype(float)  # slow hops between basins
    phi = np.where(basin > 0, 1.0, -1.5) + 0.3 * rng.normal(size=n)
    psi = 2.5 + 0.3 * rng.normal(size=n)
    v = np.zeros(n) if bias is None else bias(phi)
    wrap = lambda a: (a + math.pi) % (2 * math.pi) - math.pi  # noqa: E731
    return RunDihedrals(name, wrap(phi)[:, None], wrap(psi)[:, None], v / 2.4943, 0.1, kind)


def test_block_histograms_match_a_plain_histogram_for_an_unbiased_run():
    run = _run(10_000, 0)
    blocks = block_histograms(run, block_ps=100.0)  # 1000 samples a block
    assert blocks.shape == (10, 1, 10_000)
    ref, _, _ = np.histogram2d(run.phi[:, 0], run.psi[:, 0], bins=100, range=[[-math.pi, math.pi]] * 2)
    np.testing.assert_allclose(blocks.sum(0)[0], ref.ravel())


def test_log_weights_are_applied_exactly():
    # a run sampled from p(phi) * exp(-V/kT) reweighted by exp(+V/kT) must give p back:
    # emulate with importance weights on an unbiased run, where the truth is known
    rng = np.random.default_rng(3)
    n = 200_000
    phi = rng.uniform(-math.pi, math.pi, n)
    psi = rng.uniform(-math.pi, math.pi, n)
    v_over_kt = 0.8 * np.cos(phi)  # the "bias" the samples carry: they are uniform, p is uniform*exp(-V)
    run = RunDihedrals("s", phi[:, None], psi[:, None], -v_over_kt, 0.1)
    hist = M.normalize(block_histograms(run, 1000.0).sum(0)[0]).reshape(100, 100).sum(1)
    centres = -math.pi + (np.arange(100) + 0.5) * 2 * math.pi / 100
    truth = np.exp(-0.8 * np.cos(centres))
    truth /= truth.sum()
    assert M.js_divergence(hist, truth) < 5e-4


def test_blocks_sum_to_the_run_reweighted_histogram_when_the_weight_depends_on_the_basin():
    # static-bias MD: the bias (so the weight) depends on the basin, and the run stays in one
    # basin for many blocks; the blocks must keep their total weights, so that their sum is the
    # naive reweighted histogram of the whole run (per-block normalization fails this)
    run = _run(40_000, 5, bias=lambda phi: np.where(phi > 0, 0.0, 6.0) + 0.5 * phi)
    blocks = block_histograms(run, block_ps=20.0)  # 200 samples a block, hops every ~500
    w = np.exp(run.log_weight - run.log_weight.max())
    naive, _, _ = np.histogram2d(run.phi[:, 0], run.psi[:, 0], bins=100, weights=w,
                                 range=[[-math.pi, math.pi]] * 2)
    np.testing.assert_allclose(M.normalize(blocks.sum(0)[0]), M.normalize(naive.ravel()), atol=1e-12)
    # and the blocks' total equals the run's Kish effective size
    assert math.isclose(blocks.sum(), M.ess(w) * w.size, rel_tol=1e-9)


def test_halves_and_population_and_self_noise():
    runs = [_run(20_000, s, name=f"r{s}") for s in range(2)]
    blocks = combine_runs(runs, block_ps=50.0)
    rep = quality_report(blocks, n_bootstrap=100)
    frac = np.mean(np.concatenate([r.phi[:, 0] > 0 for r in runs]))
    value, error = rep["phi_positive"][0]
    assert abs(value - frac) < 0.01  # bin-centre rule vs exact sign: a few boundary samples
    assert 0 < error < 0.2
    assert rep["n_blocks"] == 80 and rep["self_js"][0] > 0 and rep["halves_js"][0] > 0


def test_own_noise_is_reported_per_residue():
    # two residues with the same weight per block: residue 1 from 1000 samples a block, residue 2
    # from 10 (each sample weighing 100): residue 2's own noise is far larger, and the average is
    # the reported self_js
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(10_000))  # the 100 x 100 (phi, psi) bins
    blocks = np.zeros((40, 2, 10_000))
    blocks[:, 0] = rng.multinomial(1000, p, size=40)
    blocks[:, 1] = 100.0 * rng.multinomial(10, p, size=40)
    rep = quality_report(blocks, n_bootstrap=200)
    (n1, e1), (n2, e2) = rep["self_js_per_residue"]
    assert n2 > 3 * n1 and e1 > 0 and e2 > 0
    assert rep["self_js"][0] == pytest.approx((n1 + n2) / 2, rel=1e-12)


def test_baseline_scores_rank_a_shifted_run_worse():
    ref = combine_runs([_run(20_000, 1)], 50.0)
    same = combine_runs([_run(20_000, 2)], 50.0)
    shifted = combine_runs([_run(20_000, 3)], 50.0)
    shifted = np.roll(shifted, 300, axis=-1)  # move density by 3 psi-rows: a clearly different map
    rep = quality_report(ref, n_bootstrap=50, baselines={"same": same, "shifted": shifted})
    js_same, js_shift = rep["baselines"]["same"]["js"], rep["baselines"]["shifted"]["js"]
    assert js_shift[0] - js_same[0] > 5 * math.hypot(js_shift[1], js_same[1])
    # an independent run of the same distribution scores at its floor; the shifted one far above it
    floor = rep["baselines"]["same"]["js_floor"]
    assert abs(js_same[0] - floor[0]) < 3 * math.hypot(js_same[1], floor[1])
    assert js_shift[0] - rep["baselines"]["shifted"]["js_floor"][0] > 5 * js_shift[1]


def test_wtmetad_runs_are_refused(tmp_path):
    import json

    from cgbg_bench.reference import load_run_dihedrals

    (tmp_path / "run.json").write_text(json.dumps({"settings": {"bias": "wtmetad", "dihedral_interval_ps": 0.1}}))
    with pytest.raises(ValueError, match="only unbiased and static-bias"):
        load_run_dihedrals(tmp_path, 2.4943)


def test_halves_split_each_run_in_time():
    from cgbg_bench.reference import run_halves

    np.testing.assert_array_equal(run_halves([4, 3]), [1, 1, 0, 0, 1, 0, 0])
    # run A samples bin 0 only in its first half, run B bin 1 only in its second half:
    a = np.zeros((4, 1, 10_000)); a[:2, 0, 0] = 10; a[2:, 0, 2] = 10
    b = np.zeros((2, 1, 10_000)); b[0, 0, 2] = 10; b[1, 0, 1] = 10
    blocks = np.concatenate([a, b])
    rep = quality_report(blocks, n_bootstrap=10, first_half=run_halves([4, 2]))
    # first halves: bins {0: 20, 2: 10}; second halves: {2: 20, 1: 10}
    p, q = np.array([2, 0, 1, 0]) / 3, np.array([0, 1, 2, 0]) / 3
    m = (p + q) / 2
    kl = lambda x: sum(xi * np.log(xi / mi) for xi, mi in zip(x, m) if xi > 0)  # noqa: E731
    assert rep["halves_js"][0] == pytest.approx(0.5 * kl(p) + 0.5 * kl(q), rel=1e-6)
    with pytest.raises(ValueError, match="both halves"):
        quality_report(blocks, n_bootstrap=10, first_half=np.ones(6, bool))


def test_basin_masks_partition_the_grid_by_bin_centre():
    masks = basin_masks()
    total = sum(m.astype(int) for m in masks.values())
    np.testing.assert_array_equal(total, 1)
    grid = {k: m.reshape(100, 100) for k, m in masks.items()}  # [phi bin, psi bin]
    # bin (i, j) has centre (-180 + 3.6 (i + 0.5), -180 + 3.6 (j + 0.5)) degrees
    assert grid["alpha_R"][30, 35]  # (-70.2, -52.2): alpha_R
    assert grid["beta/PPII"][30, 90]  # (-70.2, 145.8)
    assert grid["beta/PPII"][30, 16]  # psi -120.6: just outside alpha_R
    assert grid["alpha_R"][30, 17] and grid["alpha_R"][30, 63]  # psi -117.0 and 48.6: inside
    assert grid["beta/PPII"][30, 64]  # psi 52.2: outside
    assert grid["phi > 0"][50, 35] and not grid["phi > 0"][49, 35]  # phi +1.8 vs -1.8


def test_basin_populations_and_their_bootstrap_error_match_the_block_statistics():
    rng = np.random.default_rng(11)
    masks = basin_masks()
    cells = [np.flatnonzero(masks[k])[0] for k in ("beta/PPII", "alpha_R", "phi > 0")]
    n_blocks, per_block = 400, 50
    hist = np.zeros((n_blocks, 1, 10_000))
    for b in range(n_blocks):
        hist[b, 0, cells] = rng.multinomial(per_block, [0.6, 0.3, 0.1])
    value, error = basin_populations(hist, n_bootstrap=2000, seed=1)
    frac = hist[:, 0, cells] / per_block  # equal blocks: the estimate is the mean block fraction
    np.testing.assert_allclose(value[0], frac.mean(0), atol=1e-12)
    se = frac.std(0, ddof=1) / np.sqrt(n_blocks)
    np.testing.assert_allclose(error[0], se, rtol=0.1)  # bootstrap sd of a mean: ~3% scatter at 2000 reps
    # truth 0.6/0.3/0.1 within 3 standard errors
    assert np.all(np.abs(value[0] - [0.6, 0.3, 0.1]) < 3 * se)
    # blocks of unequal weight (static-bias runs): the population is the ratio of the summed
    # masses, not the mean of the block fractions
    uneven = hist.copy()
    uneven[::2] *= 5.0
    v_uneven, _ = basin_populations(uneven, n_bootstrap=10)
    mass = uneven[:, 0, cells]
    np.testing.assert_allclose(v_uneven[0], mass.sum(0) / mass.sum(), atol=1e-12)
    assert np.abs(v_uneven[0] - (mass / mass.sum(1, keepdims=True)).mean(0)).max() > 1e-4
    one_value, one_error = basin_populations(hist[:1])
    assert np.isnan(one_error).all() and one_value.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_blocks >= 1"):
        basin_populations(hist[:0])


def test_merge_blocks_sums_consecutive_groups():
    blocks = np.arange(5 * 1 * 4, dtype=float).reshape(5, 1, 4)
    merged = merge_blocks(blocks, 2)
    assert merged.shape == (3, 1, 4)
    np.testing.assert_array_equal(merged[0], blocks[0] + blocks[1])
    np.testing.assert_array_equal(merged[2], blocks[4])  # the trailing partial group stays one block
    np.testing.assert_array_equal(merge_blocks(blocks, 1), blocks)
    with pytest.raises(ValueError, match="group"):
        merge_blocks(blocks, 0)


def _basin_blocks(rng, n_blocks, probs, per_block=100):
    cells = [np.flatnonzero(m)[0] for m in basin_masks().values()]
    hist = np.zeros((n_blocks, 1, 10_000))
    for b in range(n_blocks):
        hist[b, 0, cells] = rng.multinomial(per_block, probs)
    return hist


def test_compare_basins_z_leaves_each_reference_run_out_of_its_own_comparison():
    rng = np.random.default_rng(4)
    same = [_basin_blocks(rng, 40, [0.6, 0.3, 0.1]) for _ in range(2)]
    shifted = _basin_blocks(rng, 40, [0.45, 0.45, 0.1])  # alpha_R +15 points
    empty_basin = _basin_blocks(rng, 40, [0.7, 0.3, 0.0])  # never visits phi > 0
    out = compare_basins(["a", "b", "s", "e"], [*same, shifted, empty_basin], 2, n_bootstrap=400, seed=1)
    runs = {r["dir"]: r for r in out["runs"]}
    assert [runs[n]["in_reference"] for n in "abse"] == [True, True, False, False]
    # z by hand: run a against run b alone (a is left out of its own comparison)
    va, ea = basin_populations(same[0], n_bootstrap=400, seed=1)
    vb, eb = basin_populations(same[1], n_bootstrap=400, seed=1)
    np.testing.assert_allclose(runs["a"]["z_vs_other_reference_runs"][0], ((va - vb) / np.hypot(ea, eb))[0])
    assert max(abs(x) for x in runs["a"]["z_vs_other_reference_runs"][0]) < 3  # same distribution
    z_shift = runs["s"]["z_vs_other_reference_runs"][0]
    assert z_shift[1] > 5 and z_shift[0] < -5  # alpha_R up, beta/PPII down: detected
    ref_v, _ = basin_populations(np.concatenate(same), n_bootstrap=10)
    np.testing.assert_allclose(out["reference"]["population"][0], ref_v[0])
    # a basin the run never visits: its own error is zero but the reference's is not, so z is finite
    assert runs["e"]["error"][0][2] == 0.0 and runs["e"]["z_vs_other_reference_runs"][0][2] < -5
    # a single-block run: error undefined -> None (JSON-ready), z undefined -> None
    one = compare_basins(["a", "x"], [same[0], same[1][:1]], 1, n_bootstrap=50)
    x = {r["dir"]: r for r in one["runs"]}
    assert x["x"]["error"][0] == [None, None, None] and x["x"]["z_vs_other_reference_runs"][0] == [None] * 3
    assert x["a"]["z_vs_other_reference_runs"] is None  # the only reference run has none to be compared with
    with pytest.raises(ValueError, match="n_reference"):
        compare_basins(["a"], [same[0]], 0)


def test_combine_reference_keeps_one_kind_unchanged():
    runs = [_run(20_000, s, name=f"r{s}", kind="static abc") for s in range(2)]
    blocks, groups = combine_reference(runs, 50.0)
    for b, r in zip(blocks, runs):
        np.testing.assert_array_equal(b, block_histograms(r, 50.0))
    assert groups == {"static abc": {"runs": ["r0", "r1"], "ns": pytest.approx(4.0), "blocks": None,
                                     "basin_variance": None, "share": 1.0}}
    # the kind defaults from the weights: all zero -> unbiased
    assert _run(100, 0).group == "unbiased" and _run(100, 0, bias=lambda phi: phi).group == "static"


def test_combine_reference_weighs_kinds_by_the_inverse_variance_of_their_basins():
    fast = [_run(20_000, s, name=f"f{s}", hop=0.02, kind="static x") for s in (1, 2)]
    slow = _run(30_000, 3, name="u", hop=0.0005, kind="unbiased")
    blocks, groups = combine_reference([fast[0], slow, fast[1]], 50.0, basin_block_ps=100.0, n_bootstrap=300)
    # each kind's V by hand: its runs' Kish-weighted blocks merged to 100 ps, pooled; the basin
    # variances over the mean of the two kinds' populations (the phi > 0 basin's weighs as much
    # as the other's: two basins of ~50% each here)
    pop, err = {}, {}
    for g, members in (("static x", fast), ("unbiased", [slow])):
        merged = np.concatenate([merge_blocks(block_histograms(r, 50.0), 2) for r in members])
        pop[g], err[g] = basin_populations(merged, n_bootstrap=300)
        assert groups[g]["blocks"] == len(merged)
    p_bar = (pop["static x"] + pop["unbiased"]) / 2
    var = {g: float(np.sum(np.where(p_bar > 0, err[g] ** 2 / np.where(p_bar > 0, p_bar, 1), 0))) for g in pop}
    for g in pop:
        assert groups[g]["basin_variance"] == pytest.approx(var[g], rel=1e-12)
    assert groups["unbiased"]["ns"] == pytest.approx(3.0) and groups["static x"]["ns"] == pytest.approx(4.0)
    assert groups["unbiased"]["share"] == pytest.approx((1 / var["unbiased"]) / (1 / var["unbiased"] + 1 / var["static x"]))
    assert groups["unbiased"]["share"] < 0.5 < groups["static x"]["share"]  # the slow run is worth less
    # the reference is the share-weighted mixture of each kind's own normalized histogram
    kind_hist = {g: M.normalize(sum(block_histograms(r, 50.0).sum(0) for r in members)[0])
                 for g, members in (("static x", fast), ("unbiased", [slow]))}
    mix = sum(groups[g]["share"] * h for g, h in kind_hist.items())
    np.testing.assert_allclose(M.normalize(np.concatenate(blocks).sum(0)[0]), mix, atol=1e-12)
    # within a kind the runs keep their relative (Kish) weights
    ratio = blocks[0].sum() / blocks[2].sum()
    assert ratio == pytest.approx(block_histograms(fast[0], 50.0).sum() / block_histograms(fast[1], 50.0).sum())


def test_combine_reference_beats_pooling_by_sample_count_on_a_slow_run():
    # truth: the two basins hold 50% each; a fast-hopping and a slowly hopping run of the same
    # length. Pooling by sample count averages them, although the slow run's phi > 0 share
    # scatters far more (about 10 vs 400 hops); inverse-variance shares (median 0.07 for the
    # slow run) cut the mean squared error 8.3x over these 30 seeds. Asserted: at least 2x.
    err_pool, err_ivw = [], []
    for seed in range(30):
        fast = _run(20_000, 100 + seed, name="f", hop=0.02, kind="static")
        slow = _run(20_000, 200 + seed, name="u", hop=0.0005, kind="unbiased")
        pooled = combine_runs([fast, slow], 50.0)
        ivw, _ = combine_reference([fast, slow], 50.0, basin_block_ps=100.0, n_bootstrap=100)
        for out, blocks in ((err_pool, pooled), (err_ivw, np.concatenate(ivw))):
            p = M.normalize(blocks.sum(0)[0])
            out.append((p[basin_masks()["phi > 0"]].sum() - 0.5) ** 2)
    assert np.mean(err_ivw) < 0.5 * np.mean(err_pool)


def test_combine_reference_refuses_kinds_whose_variance_is_unknown():
    fast = _run(20_000, 1, name="f", hop=0.02, kind="static")
    short = _run(6_000, 2, name="u", hop=0.02, kind="unbiased")  # 600 ps: 6 basin blocks of 100 ps
    with pytest.raises(ValueError, match=f"unbiased runs \\(u, 0.6 ns\\): 6 blocks of 100 ps, fewer than the "
                                         f"{MIN_GROUP_BLOCKS} needed.*leave this kind of run out of runs"):
        combine_reference([fast, short], 50.0, basin_block_ps=100.0)
    stuck = _run(20_000, 3, name="u", hop=0.0, kind="unbiased")  # never leaves its basin
    with pytest.raises(ValueError, match="do not vary between blocks"):
        combine_reference([fast, stuck], 50.0, basin_block_ps=100.0)
    broken = _run(20_000, 4, name="u", hop=0.02, kind="unbiased")
    broken.log_weight[123] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        combine_reference([fast, broken], 50.0, basin_block_ps=100.0)
    with pytest.raises(ValueError, match="residues is empty"):
        combine_reference([fast], 50.0, [])
