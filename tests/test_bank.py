"""Generated proposal banks: made on first use, fingerprint-checked, cached, never silently wrong."""

import numpy as np
import pytest
import torch

from cgbg_bench import bank as bank_mod
from cgbg_bench.bank import bank_fingerprint
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.errors import DataError
from cgbg_bench.flows.internal import train_ic_flow
from cgbg_bench.task import load_task
from tests.toys import AnalyticChain, write_chain_task

N = 2000


@pytest.fixture(scope="module")
def flow_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("banktasks")
    d = root / "chain"
    d.mkdir()
    z = zmatrix_for(("ala2", "core-beta"))
    toy = AnalyticChain(z)
    flow, _ = train_ic_flow(z, toy.sample(500, seed=0), seed=0, epochs=1, transforms=1, hidden=16)
    flow.save(d / "flow.pt")
    positions, log_q = flow.sample_bank(N, seed=7)
    write_chain_task(d, n_samples=N, fingerprint=bank_fingerprint(positions, log_q))
    return root, positions, log_q


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_generated_on_first_use_then_cached(flow_task, cache, monkeypatch):
    root, positions, log_q = flow_task
    task = load_task("chain", root=root)
    bank = task.load_proposal()
    np.testing.assert_array_equal(bank.positions, positions)
    np.testing.assert_array_equal(bank.log_q, log_q)
    assert len(list(cache.glob("*.npz"))) == 1

    def fail(*args):
        raise AssertionError("regenerated although cached")

    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", fail)
    np.testing.assert_array_equal(task.load_proposal().positions, positions)


def test_a_verified_cache_is_not_fingerprinted_again(flow_task, cache, monkeypatch):
    """A full bank whose bytes match its record's sha256 has the fingerprint the record holds: it is
    not computed again (~1.3 s per 10^6), unless the record's own disagrees with the task's."""
    import json

    root, positions, _ = flow_task
    task = load_task("chain", root=root)
    task.load_proposal()
    real = bank_mod.bank_fingerprint
    calls = []
    monkeypatch.setattr(bank_mod, "bank_fingerprint", lambda *a: calls.append(1) or real(*a))
    np.testing.assert_array_equal(task.load_proposal().positions, positions)
    assert calls == []
    (path,) = cache.glob("*.npz")
    sidecar = path.with_name(path.name + ".json")
    record = json.loads(sidecar.read_text())
    record["fingerprint"]["mean_rg_nm"] *= 1.01  # a record edited by hand: the bank is fingerprinted
    sidecar.write_text(json.dumps(record))
    np.testing.assert_array_equal(task.load_proposal().positions, positions)
    assert calls == [1]


def test_damaged_cache_is_regenerated(flow_task, cache):
    root, positions, _ = flow_task
    task = load_task("chain", root=root)
    task.load_proposal()
    (path,) = cache.glob("*.npz")
    with np.load(path) as z:
        np.savez(path, positions=z["positions"] * 1.01, log_q=z["log_q"])
    np.testing.assert_array_equal(task.load_proposal().positions, positions)


def test_fingerprint_mismatch_raises_and_caches_nothing(flow_task, cache, monkeypatch):
    root, positions, log_q = flow_task
    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda w, n, s: (positions, log_q + 0.1))
    with pytest.raises(DataError, match="does not match the fingerprint"):
        load_task("chain", root=root).load_proposal()
    assert not cache.exists() or not list(cache.glob("*.npz"))


def test_small_bank_for_quick_checks(flow_task, cache):
    root, _, _ = flow_task
    small = load_task("chain", root=root).load_proposal(n_samples=300)
    assert small.positions.shape == (300, 6, 3) and np.isfinite(small.log_q).all()
    # its log q is the flow's exact density of its own samples
    from cgbg_bench.flows.internal import ICFlow

    flow = ICFlow.load(root / "chain" / "flow.pt")
    with torch.no_grad():
        lq = flow.log_prob(torch.as_tensor(small.positions[:5], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(lq, small.log_q[:5], rtol=1e-10)


class _ScaledChain(torch.nn.Module):
    """The analytic chain in kJ/mol (the task's energy unit)."""

    def __init__(self):
        super().__init__()
        self.toy = AnalyticChain(zmatrix_for(("ala2", "core-beta")))

    def forward(self, x):
        return 2.4943 * self.toy(x)


def test_evaluate_and_plot_a_dihedral_task(flow_task, cache, tmp_path):
    from cgbg_bench.evaluate import evaluate, observable_index
    from cgbg_bench.plot import plot_profiles

    root, _, _ = flow_task
    task = load_task("chain", root=root)
    result, log_w = evaluate(_ScaledChain(), task, device="cpu")
    assert set(result.scores.metrics) == {"js", "pmf_error", "js_floor", "ess", "js_clip99"}
    assert 0 < result.scores.metrics["ess"].value <= 1
    bank = task.load_proposal()
    out = plot_profiles(task, task.load_reference(), observable_index(task, bank.positions), log_w,
                        tmp_path / "fes.png")
    assert out.stat().st_size > 5000
