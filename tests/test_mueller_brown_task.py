"""The shipped Mueller-Brown tasks score their baselines as the exact reference says they must."""

import numpy as np
import pytest

from cgbg_bench.evaluate import evaluate_baseline
from cgbg_bench.task import load_task

TASKS = ["mueller-brown", "mueller-brown-biased"]


# the biased task scores the same way: its full scoring runs with -m slow
@pytest.fixture(scope="module", params=[TASKS[0], pytest.param(TASKS[1], marks=pytest.mark.slow)])
def scored(request):
    task = load_task(request.param)
    reference = task.load_reference()
    proposal = task.load_proposal()
    return task, {b.name: evaluate_baseline(task, b.name, device="cpu", proposal=proposal, reference=reference)
                  for b in task.baselines}


def test_shipped_files_match_their_hashes():
    for name in TASKS:
        task = load_task(name)
        assert task.load_proposal().positions.shape == (100_000, 1)
        assert task.load_reference().exact
        for b in task.baselines:
            b.file.verify()


def test_exact_pmf_scores_at_the_noise_floor(scored):
    task, results = scored
    m = results["exact"].scores.metrics
    # nothing but sampling noise: JS equals the floor within 2 combined standard errors
    assert abs(m["js"].value - m["js_floor"].value) < 2 * np.hypot(m["js"].error, m["js_floor"].error)
    assert m["fe_rmse"].value < 0.1  # kT


def test_wrong_pmf_is_clearly_worse(scored):
    task, results = scored
    good, bad = results["exact"].scores.metrics, results["potential-minimum"].scores.metrics
    # more than 3 combined errors, the benchmark's criterion for "beats" (v2, PSIS: 3.9 on the biased
    # bank, whose weights have k-hat 0.8; 5.2 with the raw weights of v1)
    assert bad["js"].value - good["js"].value > 3 * np.hypot(bad["js"].error, good["js"].error)
    assert bad["fe_rmse"].value - good["fe_rmse"].value > 4 * np.hypot(bad["fe_rmse"].error,
                                                                         good["fe_rmse"].error)


def test_cli_end_to_end_on_shipped_task(capsys):
    from cgbg_bench.cli import main

    from pathlib import Path

    exact = Path(__file__).resolve().parents[1] / "baselines" / "mueller-brown" / "exact.pt2"
    assert main(["evaluate", str(exact), "--task", "mueller-brown",
                 "--n-bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    for row in ("[baseline] exact", "[baseline] potential-minimum", "[baseline] fm-unbiased", "[baseline] fm-biased"):
        assert row in out
