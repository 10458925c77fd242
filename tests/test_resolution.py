"""A task's resolution (cgbg_bench.resolution): the score of a PMF exact along the headline observable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cgbg_bench import metrics as M
from cgbg_bench._io import sha256_file
from cgbg_bench.build.scores import rescore_baselines
from cgbg_bench.errors import DataError, TaskSchemaError
from cgbg_bench.evaluate import evaluate
from cgbg_bench.resolution import exact_along_log_weights, measure_resolution
from cgbg_bench.task import load_task
from tests.conftest import write_toy_task


def test_corrected_weights_reproduce_the_reference_histogram():
    rng = np.random.default_rng(0)
    n, n_bins = 5000, 7
    bins = rng.integers(-1, n_bins, size=n)  # -1: outside the range
    base = rng.normal(size=n)
    p_ref = np.array([0.1, 0.2, 0.0, 0.3, 0.25, 0.15, 0.0])
    log_w = exact_along_log_weights(bins, p_ref, base)
    w = M.normalized_weights(log_w)
    got = np.bincount(bins[bins >= 0], weights=w[bins >= 0], minlength=n_bins)
    np.testing.assert_allclose(got, p_ref, atol=1e-12)
    assert w[bins < 0].max() == 0 and w[np.isin(bins, [2, 6])].max() == 0
    # inside a bin the base PMF's weights keep their ratios
    b3 = bins == 3
    np.testing.assert_allclose(log_w[b3] - base[b3], (log_w[b3] - base[b3])[0], atol=1e-12)
    # no base: the proposal corrected along the observable (equal weights inside a bin)
    flat = exact_along_log_weights(bins, p_ref)
    assert np.ptp(flat[bins == 4]) == 0


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="shape"):
        exact_along_log_weights(np.zeros(4, int), np.ones(2) / 2, np.zeros(3))
    with pytest.raises(DataError, match="range"):
        exact_along_log_weights(np.full(4, -1), np.ones(2) / 2)
    with pytest.raises(DataError, match="reference visits"):
        exact_along_log_weights(np.zeros(4, int), np.array([0.0, 1.0]))


def test_resolution_of_a_corrected_wrong_pmf_is_half_the_floor_on_an_exact_reference(tmp_path):
    """Known answer: on a 1-D task with an exact reference the corrected PMF's full-bank histogram
    is the reference, so its replicates' mean JS is the bank's own resampling noise, half the
    floor (which counts it twice); the uncorrected wrong PMF scores far above."""
    write_toy_task(tmp_path, extra={"metrics": {"weighting": "psis", "n_bootstrap": 200, "proposal_blocks": 100}})
    task = load_task("toy", root=tmp_path)
    wrong, log_w = evaluate(tmp_path / "shifted.pt2", task, device="cpu")
    res = measure_resolution(task, base_log_w=log_w, base="shifted")
    js, floor = res["js"], res["js_floor"]
    assert res["observable"] == "x" and res["base"] == "shifted"
    assert abs(js["value"] - floor["value"] / 2) < 3 * np.hypot(js["error"], floor["error"] / 2)
    assert wrong.scores.metrics["js"].value > 10 * js["value"]


def test_rescore_writes_the_resolution_from_the_best_baseline(tmp_path):
    extra = {"metrics": {"weighting": "psis", "n_bootstrap": 50, "proposal_blocks": 50}}
    write_toy_task(tmp_path, extra=extra)
    data = yaml.safe_load((tmp_path / "toy" / "task.yaml").read_text())
    data["baselines"].append({"name": "shifted", "kind": "pmf", "path": "../shifted.pt2",
                              "sha256": sha256_file(tmp_path / "shifted.pt2")})
    (tmp_path / "toy" / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    rescore_baselines(tmp_path / "toy", command="test")
    task = load_task("toy", root=tmp_path)
    assert task.resolution is not None and task.resolution.base == "exact"
    assert task.resolution.js[0] < task.resolution.js_floor[0]  # exact reference: about half the floor
    stored = json.loads((tmp_path / "toy" / "baseline_scores.json").read_text())
    assert set(stored["baselines"]) == {"exact", "shifted"}


@pytest.mark.parametrize("resolution, word", [
    ({"observable": "y", "base": "exact", "js": {"value": 0.1, "error": 0.01},
      "js_floor": {"value": 0.1, "error": 0.01}}, "headline"),
    ({"observable": "x", "base": "exact", "js": {"value": -0.1, "error": 0.01},
      "js_floor": {"value": 0.1, "error": 0.01}}, ">= 0"),
    ({"observable": "x", "js": {"value": 0.1, "error": 0.01}, "js_floor": {"value": 0.1, "error": 0.01}}, "base"),
])
def test_bad_stored_resolution_is_a_schema_error(tmp_path, resolution, word):
    write_toy_task(tmp_path, extra={"resolution": resolution})
    with pytest.raises(TaskSchemaError, match=word):
        load_task("toy", root=tmp_path)


def test_info_prints_the_resolution_and_json(tmp_path, monkeypatch, capsys):
    from cgbg_bench.cli import main

    res = {"observable": "x", "base": "exact", "js": {"value": 0.0012, "error": 0.0001},
           "js_floor": {"value": 0.002, "error": 0.0002}}
    write_toy_task(tmp_path, extra={"resolution": res})
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(tmp_path))
    assert main(["info", "toy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resolution"] == res and out["metrics"]["weighting"] == "clip"
    assert main(["info", "toy"]) == 0
    assert "resolution of toy v3: JS 0.0012(1)" in capsys.readouterr().out

