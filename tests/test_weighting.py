"""The task's weighting step (cgbg_bench.weighting): PSIS or a clip, and the js_clip99 column."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cgbg_bench import metrics as M
from cgbg_bench.bootstrap import bootstrap_scores
from cgbg_bench.errors import DataError, TaskSchemaError, UsageError
from cgbg_bench.evaluate import evaluate
from cgbg_bench.psis import psis_smooth
from cgbg_bench.task import load_task
from cgbg_bench.weighting import SECONDARY_CLIP, bank_weights, clip_weights
from tests.conftest import write_toy_task


def _heavy_log_w(n=20000, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_t(df=3, size=n) * 1.5  # heavy right tail of w = exp(log w)


def test_psis_weights_are_the_smoothed_log_weights_normalized():
    lw = _heavy_log_w()
    got = bank_weights(lw, "psis")
    smoothed, k = psis_smooth(lw)
    np.testing.assert_allclose(got.weights, M.normalized_weights(smoothed), rtol=1e-12)
    assert got.pareto_k == k
    assert abs(got.weights.sum() - 1.0) < 1e-12
    # smoothing lowers the largest weight (the tail is truncated at the largest raw one, and the
    # fitted quantiles sit below the extreme draws)
    assert got.weights.max() < M.normalized_weights(lw).max()


def test_clip_weights_discard_the_top_percent_and_report_the_same_k():
    lw = _heavy_log_w()
    got = bank_weights(lw, "clip", 99.0)
    assert (got.weights == 0).sum() == len(lw) // 100
    np.testing.assert_array_equal(got.weights, clip_weights(lw, 99.0))
    assert got.pareto_k == bank_weights(lw, "psis").pareto_k


def test_small_bank_is_left_unsmoothed_with_nan_k():
    lw = np.linspace(0.0, 1.0, 12)
    got = bank_weights(lw, "psis")
    np.testing.assert_allclose(got.weights, M.normalized_weights(lw))
    assert np.isnan(got.pareto_k)


@pytest.mark.parametrize("args", [("tempered",), ("clip",)])
def test_bad_weighting_is_a_usage_error(args):
    with pytest.raises(UsageError):
        bank_weights(np.zeros(100), *args)


def _task(root, metrics, name="toy"):
    write_toy_task(root, name=name, extra={"metrics": metrics})
    return load_task(name, root=root)


def test_task_yaml_weighting_is_read_and_checked(tmp_path):
    assert _task(tmp_path, {"weighting": "psis", "n_bootstrap": 10, "proposal_blocks": 10}).metrics.weighting == "psis"
    legacy = _task(tmp_path, {"clip_percentile": 99.0, "n_bootstrap": 10, "proposal_blocks": 10}).metrics
    assert (legacy.weighting, legacy.clip_percentile) == ("clip", 99.0)
    bad = [
        ({"weighting": "tempered", "n_bootstrap": 10, "proposal_blocks": 10}, "weighting"),
        ({"weighting": "psis", "clip_percentile": 99.0, "n_bootstrap": 10, "proposal_blocks": 10}, "clip_percentile"),
        ({"weighting": "clip", "n_bootstrap": 10, "proposal_blocks": 10}, "clip_percentile"),
        ({"weighting": "clip", "clip_percentile": 0, "n_bootstrap": 10, "proposal_blocks": 10}, "clip_percentile"),
    ]
    for metrics, word in bad:
        with pytest.raises(TaskSchemaError, match=word):
            _task(tmp_path, metrics)


def test_js_clip99_is_the_clip_tasks_js_on_the_same_replicates(tmp_path):
    """A PSIS task's js_clip99 equals the js of the same task weighted by the 99% clip, replicate
    for replicate (same seed): the secondary column is the clip score, paired with the headline."""
    psis = _task(tmp_path / "a", {"weighting": "psis", "n_bootstrap": 60, "proposal_blocks": 50}, "toy-psis")
    clip = _task(tmp_path / "b", {"weighting": "clip", "clip_percentile": SECONDARY_CLIP, "n_bootstrap": 60,
                                  "proposal_blocks": 50}, "toy-clip")
    a, _ = evaluate(tmp_path / "a" / "shifted.pt2", psis, device="cpu")
    b, _ = evaluate(tmp_path / "b" / "shifted.pt2", clip, device="cpu")
    ma, mb = a.scores.metrics, b.scores.metrics
    assert ma["js_clip99"].value == pytest.approx(mb["js"].value, rel=1e-12)
    assert ma["js_clip99"].error == pytest.approx(mb["js"].error, rel=1e-12)
    assert ma["js_clip99"].point == pytest.approx(mb["js"].point, rel=1e-12)
    assert mb["js_clip99"].value == pytest.approx(mb["js"].value, rel=1e-12)
    # and the headline differs: the shifted PMF's weights have a real tail that the clip cuts
    assert ma["js"].point != pytest.approx(mb["js"].point, rel=1e-3)
    assert np.isfinite(a.info["pareto_k"]) and a.info["pareto_k"] == b.info["pareto_k"]
    saved = yaml.safe_load((tmp_path / "a" / "toy-psis" / "task.yaml").read_text())
    assert saved["metrics"]["weighting"] == "psis"


def test_exact_pmf_scores_at_its_floor_under_psis(tmp_path):
    task = _task(tmp_path, {"weighting": "psis", "n_bootstrap": 200, "proposal_blocks": 100})
    r, _ = evaluate(tmp_path / "exact.pt2", task, device="cpu")
    js, floor = r.scores.metrics["js"], r.scores.metrics["js_floor"]
    assert abs(js.value - floor.value) < 3 * np.hypot(js.error, floor.error)
    shifted, _ = evaluate(tmp_path / "shifted.pt2", task, device="cpu")
    assert shifted.scores.metrics["js"].value > js.value + 5 * shifted.scores.metrics["js"].error


def test_secondary_blocks_of_the_wrong_shape_are_refused():
    q = np.ones((4, 1, 3))
    with pytest.raises(DataError, match="secondary"):
        bootstrap_scores(q, q, observable_names=["x"], one_dimensional=[True], n_bootstrap=5,
                         secondary={"js_clip99": np.ones((4, 1, 2))})
