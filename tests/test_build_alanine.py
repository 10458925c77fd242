"""The alanine task builder end to end on tiny vacuum/implicit runs (ps long, not physics)."""

import numpy as np
import pytest
import torch

from cgbg_bench.build.alanine import AlanineSources, FlowSettings, build
from cgbg_bench.md.production import RunSettings, run
from cgbg_bench.task import load_task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("ala")
    metad, static, unbiased, obc2 = (base / n for n in ("metad", "static", "unbiased", "obc2"))
    short = dict(chunk_ps=2.0, equilibration_ps=1.0)
    run(RunSettings("ala2", "vacuum", "wtmetad", seed=1, **short), metad, ns=0.006, platform="CPU")
    run(RunSettings("ala2", "vacuum", "static", seed=2, **short), static, ns=0.006, bias_from=metad,
        platform="CPU")
    run(RunSettings("ala2", "vacuum", seed=3, **short), unbiased, ns=0.006, platform="CPU")
    run(RunSettings("ala2", "obc2", seed=4, **short), obc2, ns=0.004, platform="CPU")
    sources = AlanineSources(unbiased=(unbiased,), static=(static,), metad=(metad,), gb={"obc2": (obc2,)})
    cache = base / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("CGBG_BENCH_CACHE", str(cache))
    written = build("ala2", sources, root=base / "repo", bank_size=3000, block_ps=2.0,
                    flow=FlowSettings(epochs=2, transforms=1, hidden=16, batch_size=64))
    yield base / "repo", written, cache
    mp.undo()


def test_builds_four_tasks_with_the_fixed_observables(built):
    root, written, _ = built
    assert sorted(p.name for p in written) == ["ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom",
                                               "ala2-heavy-atom-biased"]
    cb = load_task(root / "tasks" / "ala2-core-beta")
    assert cb.input_shape == (6, 3) and cb.kT == pytest.approx(2.4943, abs=1e-4)
    assert cb.observables[0].indices == ((0, 1, 2, 4), (1, 2, 4, 5))  # science.md section 3
    ha = load_task(root / "tasks" / "ala2-heavy-atom")
    assert ha.observables[0].indices == ((1, 3, 4, 6), (3, 4, 6, 8))
    ref = cb.load_reference()
    assert not ref.exact and ref.block_hist.shape == (6, 1, 10_000)  # 3 x 2 ps blocks per run, 2 runs


def test_generated_bank_is_cached_and_scores(built, monkeypatch):
    root, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(cache))
    from cgbg_bench import bank as bank_mod
    from cgbg_bench.evaluate import evaluate

    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda *a: pytest.fail("bank was not cached"))
    task = load_task(root / "tasks" / "ala2-core-beta-biased")
    bank = task.load_proposal()
    assert bank.positions.shape == (3000, 6, 3) and np.isfinite(bank.log_q).all()

    class Flat(torch.nn.Module):
        def forward(self, x):
            return 0.0 * x.sum((1, 2))

    result, _ = evaluate(Flat(), task, device="cpu", n_bootstrap=20)
    assert 0 < result.scores.metrics["js"].value <= np.log(2)


def test_gb_rows_are_stored_without_ess(built):
    import json

    root, _, _ = built
    scores = json.loads((root / "tasks" / "ala2-core-beta" / "baseline_scores.json").read_text())
    gb = scores["baselines"]["gb-obc2"]["metrics"]
    assert set(gb) == {"js", "pmf_error", "js_floor"}


def test_refuses_without_reference_runs(tmp_path):
    with pytest.raises(ValueError, match="reference needs"):
        build("ala2", AlanineSources(unbiased=(), static=(), metad=(tmp_path,)), root=tmp_path)
