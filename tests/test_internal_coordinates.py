"""Z-matrix internal coordinates and the internal-coordinate proposal flow."""

import math

import numpy as np
import pytest
import torch

from cgbg_bench.cg.mappings import BENCHMARK_REPRESENTATIONS, get_mapping
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.flows.internal import ICFlow, random_rotations, train_ic_flow
from cgbg_bench.observables import dihedral
from tests.toys import AnalyticChain


def _chain(z, n, seed=0):
    """Random but chain-like configurations (nm) built from internal coordinates."""
    rng = np.random.default_rng(seed)
    b = 0.15 + 0.01 * rng.normal(size=(n, z.n_bonds))
    a = 1.95 + 0.1 * rng.normal(size=(n, z.n_angles))
    d = rng.uniform(-math.pi, math.pi, size=(n, z.n_dihedrals))
    return z.to_cartesian(*(torch.tensor(v) for v in (b, a, d)))


@pytest.mark.parametrize("system, rep", BENCHMARK_REPRESENTATIONS + (("ala6", "heavy-atom"),))
def test_round_trip_float32_within_1e5_nm(system, rep):
    z = zmatrix_for((system, rep))
    x = _chain(z, 50)
    rot = random_rotations(50, torch.Generator().manual_seed(1))
    x = (x @ rot.transpose(1, 2) + 0.7).to(torch.float32)
    y = z.to_cartesian(*z.to_internal(x))
    # same shape up to rotation and translation: compare all pair distances
    def dist(v):
        return torch.cdist(v, v, compute_mode="donot_use_mm_for_euclid_dist")

    assert (dist(x) - dist(y)).abs().max() < 1e-5


def test_log_jacobian_matches_autograd():
    z = zmatrix_for(("ala2", "heavy-atom"))
    x = _chain(z, 1, seed=3)
    b, a, d = z.to_internal(x)
    nb, na, nd = z.n_bonds, z.n_angles, z.n_dihedrals

    def euler(al, be, ga):
        def rz(t):
            c, s, o, zr = torch.cos(t), torch.sin(t), torch.ones_like(t), torch.zeros_like(t)
            return torch.stack([torch.stack([c, -s, zr]), torch.stack([s, c, zr]), torch.stack([zr, zr, o])])

        def ry(t):
            c, s, o, zr = torch.cos(t), torch.sin(t), torch.ones_like(t), torch.zeros_like(t)
            return torch.stack([torch.stack([c, zr, s]), torch.stack([zr, o, zr]), torch.stack([-s, zr, c])])

        return rz(al) @ ry(be) @ rz(ga)

    def full_map(v):  # (internal coordinates, ZYZ Euler angles, translation) -> Cartesian
        y = z.to_cartesian(v[:nb][None], v[nb:nb + na][None], v[nb + na:nb + na + nd][None])[0]
        return (y @ euler(v[-6], v[-5], v[-4]).T + v[-3:]).reshape(-1)

    v = torch.cat([b[0], a[0], d[0], torch.tensor([0.3, 1.1, -0.7, 0.1, -0.2, 0.3], dtype=torch.float64)])
    logdet = torch.linalg.slogdet(torch.autograd.functional.jacobian(full_map, v))[1]
    # the ZYZ Euler volume element contributes sin(beta)
    assert float(logdet) == pytest.approx(float(z.log_jacobian(b, a)[0]) + math.log(math.sin(1.1)), abs=1e-9)


@pytest.mark.parametrize("system, rep", BENCHMARK_REPRESENTATIONS)
def test_metric_phi_psi_are_internal_coordinates(system, rep):
    m, z = get_mapping(system, rep), zmatrix_for((system, rep))
    x = _chain(z, 20, seed=5)
    _, _, d = z.to_internal(x)
    for quads in (m.phi, m.psi):
        for q in quads:
            np.testing.assert_allclose(d[:, z.dihedral_index(q)].numpy(), dihedral(x.numpy(), q), atol=1e-12)


@pytest.mark.parametrize("mirror", [0.0, pytest.param(0.3, marks=pytest.mark.slow)])
def test_reweighted_bank_recovers_analytic_marginals(mirror):
    """log q is exact: reweighting a deliberately imperfect flow's bank gives the analytic marginals
    (also with a share of the soft dihedrals drawn from the flow's mirror image)."""
    torch.manual_seed(0)
    z = zmatrix_for(("ala2", "core-beta"))
    target = AnalyticChain(z)
    flow, _ = train_ic_flow(z, target.sample(5000, seed=1), seed=2, epochs=20, transforms=2, hidden=32,
                            batch_size=256, lr=3e-3, mirror=mirror)
    assert flow.config["mirror"] == mirror
    x, log_q = flow.sample_bank(20000, seed=3)
    with torch.no_grad():
        log_w = -target(torch.as_tensor(x)).numpy() - log_q
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    assert 1.0 / (len(w) * (w**2).sum()) > 0.2  # the flow is decent: the SEs below are meaningful
    b, a, d = (v.numpy() for v in z.to_internal(torch.as_tensor(x, dtype=torch.float64)))
    kappa = target.kappa
    from scipy.special import i0, i1

    mean_cos = i1(kappa) / i0(kappa)  # E[cos(d - mu)] for von Mises
    checks = [
        (np.cos(d - target.mu.numpy()), np.full(z.n_dihedrals, mean_cos)),
        (b, np.full(z.n_bonds, 0.15)),
        (a, np.full(z.n_angles, 1.95)),
        ((b - 0.15) ** 2, np.full(z.n_bonds, 0.01**2)),
    ]
    for values, expected in checks:
        est = (w[:, None] * values).sum(0)
        se = np.sqrt((w[:, None] ** 2 * (values - est) ** 2).sum(0))
        assert np.all(np.abs(est - expected) < 4 * se + 1e-12), (est, expected, se)


def test_flow_log_prob_is_rotation_and_translation_invariant_and_saves(tmp_path):
    z = zmatrix_for(("ala2", "core-beta"))
    flow, _ = train_ic_flow(z, _chain(z, 500).numpy(), seed=0, epochs=1, transforms=2, hidden=16)
    x = _chain(z, 7, seed=9)
    rot = random_rotations(7, torch.Generator().manual_seed(4))
    with torch.no_grad():
        lp = flow.log_prob(x)
        lp_moved = flow.log_prob(x @ rot.transpose(1, 2) - 3.0)
        torch.testing.assert_close(lp, lp_moved)
        flow.save(tmp_path / "f.pt")
        torch.testing.assert_close(ICFlow.load(tmp_path / "f.pt").log_prob(x), lp)


def test_training_keeps_the_epoch_with_the_best_validation_nll():
    """300 frames and a flow far too big for them: it overfits, and each part of the returned
    flow is its best-validation epoch, whose validation NLL we recompute from the weights."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    x = _chain(z, 300).numpy()
    flow, rep = train_ic_flow(z, x, seed=0, epochs=40, transforms=2, hidden=64, batch_size=32, lr=3e-3)
    assert all(1 <= e < rep["epochs"] for e in rep["best_epoch"].values())
    assert rep["val_nll"] < rep["last_val_nll"]
    soft, stiff, _ = flow._features(torch.as_tensor(x[-rep["n_val"]:], dtype=torch.float64))
    with torch.no_grad():
        lp_soft, lp_stiff = flow.log_prob_parts(soft, stiff)
    assert float(-(lp_soft + lp_stiff).mean()) == pytest.approx(rep["val_nll"], rel=1e-5)


def _stiff_chain(z, n, seed=0):
    """Chain-like frames whose only soft dihedrals are 0 and 2 (like phi/psi in core-beta):
    narrow bonds (sd 0.003 nm) and angles (0.05 rad), dihedral 1 narrow (sd 0.07 rad) at -2.17,
    phi near -1.5 only (von Mises kappa 8), psi broad."""
    rng = np.random.default_rng(seed)
    b = 0.15 + 0.003 * rng.normal(size=(n, z.n_bonds))
    a = 1.95 + 0.05 * rng.normal(size=(n, z.n_angles))
    d = np.stack([rng.vonmises(-1.5, 8.0, n), -2.17 + 0.07 * rng.normal(size=n), rng.vonmises(2.5, 1.0, n)], -1)
    return z.to_cartesian(*(torch.tensor(v) for v in (b, a, d))).numpy()


def test_flow_fits_stiff_coordinates_and_keeps_a_uniform_floor_on_the_soft_ones():
    """The v2 flows (one circular spline for every coordinate) made bonds ~30% too broad and put
    1.5% of their mass at the mirror-image CB. Here: bond and angle spreads within 10% of the
    data's, no sample with dihedral 1 far from its peak, and the uniform share of the proposals
    in the phi region that the data never visit, within 4 standard errors."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    data = _stiff_chain(z, 3000)
    flow, rep = train_ic_flow(z, data, seed=0, soft=[0, 2], epochs=15, transforms=2, hidden=32, uniform=0.1)
    assert rep["soft_dihedrals"] == [0, 2]
    # positive soft dihedrals counted on each side of the time split (last 10% validate)
    d_data = z.to_internal(torch.as_tensor(data, dtype=torch.float64))[2].numpy()[:, [0, 2]] > 0
    assert rep["soft_positive_frames"] == {"train": d_data[:2700].sum(0).tolist(), "val": d_data[2700:].sum(0).tolist()}
    assert rep["soft_positive_frames"]["train"][1] > 1500  # psi ~ 2.5 (kappa 1): ~2/3 positive, a real count
    n = 20000
    x, log_q = flow.sample_bank(n, seed=1)
    b, a, d = (v.numpy() for v in z.to_internal(torch.as_tensor(x, dtype=torch.float64)))
    assert np.all(np.abs(b.std(0) / 0.003 - 1) < 0.1), b.std(0)
    assert np.all(np.abs(a.std(0) / 0.05 - 1) < 0.1), a.std(0)
    assert np.abs(d[:, 1] + 2.17).max() < 1.0
    # phi in (0.5, 2.5), which the data never visit: a share 0.9 * (the soft flow's own share)
    # + 0.1 * 2 / (2 pi) of the proposals
    torch.manual_seed(2)
    with torch.no_grad():
        own = float(((lambda s: (s > 0.5) & (s < 2.5))(flow.soft().sample((n,))[:, 0])).float().mean())
    p = 0.9 * own + 0.1 * 2.0 / (2 * math.pi)
    frac = np.mean((d[:, 0] > 0.5) & (d[:, 0] < 2.5))
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n + 0.81 * own * (1 - own) / n), (frac, p)
    # and log q there is at least the uniform floor times the stiff density
    with torch.no_grad():
        soft, stiff, _ = flow._features(torch.as_tensor(x[:200], dtype=torch.float64))
        floor = math.log(0.1) - 2 * math.log(2 * math.pi) + flow.log_prob_parts(soft, stiff)[1]
        assert (flow.log_prob_features(soft, stiff) >= floor - 1e-6).all()


def test_mirror_part_puts_the_flows_density_on_the_mirror_basin():
    """Data with phi near -1.5 only, mirror 0.2 and uniform 0.1: the bank's share of phi in
    (0.5, 2.5), which the data never visit, is 0.7 own(0.5, 2.5) + 0.2 own(-2.5, -0.5) + 0.1 * 2 / (2 pi)
    (own: the soft flow's share) within 4 standard errors, mostly from the mirror part; and log q
    is at least the mirror part's log 0.2 + log q_soft(-s) + log q_stiff."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    flow, rep = train_ic_flow(z, _stiff_chain(z, 3000), seed=0, soft=[0, 2], epochs=15, transforms=2, hidden=32,
                              uniform=0.1, mirror=0.2)
    assert rep["mixture"] == {"uniform": 0.1, "mirror": 0.2}
    n = 20000
    x, log_q = flow.sample_bank(n, seed=1)
    d = z.to_internal(torch.as_tensor(x, dtype=torch.float64))[2].numpy()
    torch.manual_seed(2)
    with torch.no_grad():
        phi = flow.soft().sample((n,))[:, 0]
    own, own_mirror = (float(((phi > lo) & (phi < hi)).float().mean()) for lo, hi in ((0.5, 2.5), (-2.5, -0.5)))
    assert 0.2 * own_mirror > 2 * 0.7 * own  # the mirror part dominates the region
    p = 0.7 * own + 0.2 * own_mirror + 0.1 * 2.0 / (2 * math.pi)
    frac = np.mean((d[:, 0] > 0.5) & (d[:, 0] < 2.5))
    se = math.sqrt(p * (1 - p) / n + (0.49 * own * (1 - own) + 0.04 * own_mirror * (1 - own_mirror)) / n)
    assert abs(frac - p) < 4 * se, (frac, p, se)
    with torch.no_grad():
        soft, stiff, _ = flow._features(torch.as_tensor(x[:200], dtype=torch.float64))
        lp_mirror = flow.soft().log_prob((-soft).to(torch.float32)).double()
        floor = math.log(0.2) + lp_mirror + flow.log_prob_parts(soft, stiff)[1]
        assert (flow.log_prob_features(soft, stiff) >= floor - 1e-5).all()
    # the mixture term by term, at the samples and at the edges of the torus (s = -pi maps to -pi)
    soft = torch.cat([soft, torch.tensor([[-math.pi, -math.pi], [math.pi - 1e-9, 0.3]], dtype=torch.float64)])
    stiff = torch.cat([stiff, stiff[:2]])
    with torch.no_grad():
        lp_s, lp_z = flow.log_prob_parts(soft, stiff)
        mirrored = torch.remainder(-soft + math.pi, 2 * math.pi) - math.pi
        expected = torch.logsumexp(torch.stack([
            lp_s.double() + math.log(0.7),
            flow.soft().log_prob(mirrored.to(torch.float32)).double() + math.log(0.2),
            torch.full_like(lp_s.double(), math.log(0.1) - 2 * math.log(2 * math.pi))]), 0) + lp_z.double()
        torch.testing.assert_close(flow.log_prob_features(soft, stiff).double(), expected, rtol=0, atol=1e-5)
    for bad in (dict(uniform=0.5, mirror=0.5), dict(mirror=-0.1), dict(mirror=float("nan"))):
        with pytest.raises(ValueError, match="mirror"):
            ICFlow(z, flow.loc.numpy(), flow.scale.numpy(), [0, 2], **bad)


def test_flow_saved_before_the_mirror_part_loads_with_none(tmp_path):
    """Flows of the v9 tasks have no 'mirror' in their config: they load with mirror 0 and the
    same log q (and, by construction of sample_bank, the same bank)."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    flow, _ = train_ic_flow(z, _chain(z, 300).numpy(), seed=0, epochs=1, transforms=1, hidden=16)
    flow.save(tmp_path / "new.pt")
    blob = torch.load(tmp_path / "new.pt", weights_only=True)
    del blob["config"]["mirror"]
    torch.save(blob, tmp_path / "old.pt")
    old = ICFlow.load(tmp_path / "old.pt")
    assert old.config["mirror"] == 0.0
    x = _chain(z, 5, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(old.log_prob(x), flow.log_prob(x))
    xa, lqa = old.sample_bank(300, seed=4)
    xb, lqb = flow.sample_bank(300, seed=4)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(lqa, lqb)


def test_soft_dihedrals_are_the_broad_ones():
    from cgbg_bench.flows.internal import soft_dihedrals

    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    _, _, d = z.to_internal(torch.as_tensor(_stiff_chain(z, 2000)))
    assert soft_dihedrals(d.numpy()) == [2]  # phi at kappa 8 has a circular sd of ~0.36 rad < 0.5
    assert soft_dihedrals(d.numpy(), threshold=0.2) == [0, 2]


def test_flow_rejects_bad_soft_indices_and_old_files(tmp_path):
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    n = z.n_bonds + z.n_angles + 1
    with pytest.raises(ValueError, match="soft dihedrals"):
        ICFlow(z, np.zeros(n), np.ones(n), [0, 5])
    torch.save({"zmatrix": {}, "config": {}, "state_dict": {}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="make-task"):
        ICFlow.load(tmp_path / "old.pt")


def test_bank_redraws_samples_outside_the_support(monkeypatch):
    """A sample whose float32 positions fall outside the flow's window gets log q = -inf (an
    infinite weight); sample_bank must replace it, not ship it (v2 build hit this at 10^6)."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    flow, _ = train_ic_flow(z, _chain(z, 200).numpy(), seed=0, epochs=1, transforms=1, hidden=16)
    true_log_prob = flow.log_prob
    calls = {"n": 0}

    def leaky(x):
        lp = true_log_prob(x)
        calls["n"] += 1
        if calls["n"] <= 3:  # the first three batches each lose every 5th sample
            lp[::5] = -math.inf
        return lp

    monkeypatch.setattr(flow, "log_prob", leaky)
    x, log_q = flow.sample_bank(1000, seed=1, batch_size=400)
    assert x.shape == (1000, 6, 3) and np.isfinite(log_q).all() and calls["n"] >= 4
    monkeypatch.setattr(flow, "log_prob", true_log_prob)
    with torch.no_grad():
        np.testing.assert_allclose(flow.log_prob(torch.as_tensor(x, dtype=torch.float64)).numpy(), log_q)


@pytest.mark.parametrize("system, rep", [("ala3", "heavy-atom"), ("ala3", "core-beta")])
def test_ala3_flow_log_q_matches_a_numerical_jacobian(system, rep):
    """log q_cart of a (tiny, barely trained) ala3 flow is the density of its features (soft dihedrals,
    whitened stiff coordinates) divided by the volume change of features -> Cartesian, measured here by
    central finite differences of the full map (features, ZYZ Euler angles, translation) on a few
    samples: the Euler volume element sin(beta) enters, nothing else."""
    m = get_mapping(system, rep)
    z = zmatrix_for(m)
    soft = [z.dihedral_index(q) for q in m.phi + m.psi]
    flow, _ = train_ic_flow(z, _chain(z, 300, seed=1).numpy(), seed=4, soft=soft, epochs=1, transforms=1,
                            hidden=8, batch_size=64)
    flow = flow.double()
    x, _ = flow.sample_bank(3, seed=5)
    f_soft, f_stiff, _ = flow._features(torch.as_tensor(x, dtype=torch.float64))
    k = f_soft.shape[1]

    def euler(al, be, ga):
        def rz(t):
            c, s = math.cos(t), math.sin(t)
            return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)

        def ry(t):
            c, s = math.cos(t), math.sin(t)
            return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)

        return rz(al) @ ry(be) @ rz(ga)

    def full_map(v):  # (soft, stiff features, Euler angles, translation) -> Cartesian, flattened
        y, _ = flow._positions(v[None, :k], v[None, k:-6])
        return (y[0] @ euler(*v[-6:-3].tolist()).T + v[-3:]).reshape(-1)

    h = 1e-6
    for i in range(len(x)):
        v = torch.cat([f_soft[i], f_stiff[i], torch.tensor([0.4, 1.2, -0.9, 0.1, -0.2, 0.3], dtype=torch.float64)])
        assert v.numel() == 3 * m.n_beads  # the map is square: 3n - 6 features and 6 external coordinates
        jac = torch.stack([(full_map(v + h * e) - full_map(v - h * e)) / (2 * h)
                           for e in torch.eye(v.numel(), dtype=torch.float64)], 1)
        logdet = float(torch.linalg.slogdet(jac)[1])
        with torch.no_grad():
            log_q_features = float(flow.log_prob_features(f_soft[i:i + 1], f_stiff[i:i + 1])[0])
            log_q_cart = float(flow.log_prob(full_map(v).reshape(1, m.n_beads, 3))[0])
        assert log_q_cart == pytest.approx(log_q_features + math.log(math.sin(1.2)) - logdet, abs=1e-5)


def _two_basin_chain(z, n, seed=0):
    """As _stiff_chain, but phi in two basins, -1.5 and +1.2 (von Mises kappa 8), half the frames each."""
    rng = np.random.default_rng(seed)
    b = 0.15 + 0.003 * rng.normal(size=(n, z.n_bonds))
    a = 1.95 + 0.05 * rng.normal(size=(n, z.n_angles))
    phi = np.where(rng.random(n) < 0.5, rng.vonmises(-1.5, 8.0, n), rng.vonmises(1.2, 8.0, n))
    d = np.stack([phi, -2.17 + 0.07 * rng.normal(size=n), rng.vonmises(2.5, 1.0, n)], -1)
    return z.to_cartesian(*(torch.tensor(v) for v in (b, a, d))).numpy(), phi


@pytest.mark.parametrize("log_ratio, share", [(0.0, 0.5), (math.log(4.0), 0.8)])
def test_weighted_likelihood_fits_the_reweighted_basin_shares(log_ratio, share):
    """Frames half in each phi basin; weight 4 on the phi < 0 frames (as exp(V/kT) of a bias that
    had pushed them out) must give a flow with 4/5 of its mass there, unweighted 1/2. Tolerance:
    4 standard errors of the 20000 flow samples plus 0.03 for the fit (the two cases differ by 0.3)."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    data, phi = _two_basin_chain(z, 4000)
    log_w = np.where(phi < 0, log_ratio, 0.0)
    flow, rep = train_ic_flow(z, data, seed=0, soft=[0, 2], epochs=12, lr=3e-3, transforms=2, hidden=32, uniform=0.0,
                              log_weights=log_w)
    kish = rep["weights"]["kish_fraction"]["train"]
    w = np.exp(log_w[:3600])
    assert kish == pytest.approx(w.sum() ** 2 / (w ** 2).sum() / len(w), rel=1e-9)
    n = 20000
    torch.manual_seed(3)
    with torch.no_grad():
        s = flow.soft().sample((n,))[:, 0].numpy()
    frac = np.mean(s < 0)
    assert abs(frac - share) < 4 * math.sqrt(share * (1 - share) / n) + 0.03, (frac, share)


def test_constant_weights_are_plain_maximum_likelihood():
    """Weights that are all equal change nothing but rounding: the same epochs and NLLs."""
    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    x = _chain(z, 300).numpy()
    kw = dict(seed=0, epochs=3, transforms=1, hidden=16)
    _, plain = train_ic_flow(z, x, **kw)
    _, weighted = train_ic_flow(z, x, log_weights=np.full(len(x), 7.5), **kw)
    assert weighted["weights"]["kish_fraction"] == {"train": pytest.approx(1.0), "val": pytest.approx(1.0)}
    assert weighted["best_epoch"] == plain["best_epoch"]
    assert weighted["val_nll"] == pytest.approx(plain["val_nll"], rel=1e-5)


@pytest.mark.parametrize("log_w, match", [(np.zeros(5), "one value per frame"),
                                          (np.r_[np.zeros(299), np.nan], "not finite")])
def test_bad_log_weights_are_refused(log_w, match):
    from cgbg_bench.errors import UsageError

    z = zmatrix_for(get_mapping("ala2", "core-beta"))
    with pytest.raises(UsageError, match=match):
        train_ic_flow(z, _chain(z, 300).numpy(), seed=0, epochs=1, transforms=1, hidden=16, log_weights=log_w)
