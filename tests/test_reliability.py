"""Issue 31 item 1: scores that cannot be trusted (unit mistakes) are flagged, not ranked silently."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cgbg_bench import reliability as R
from tests.conftest import Harmonic


def _m(value, error=0.0):
    return {"value": value, "error": error, "point": value}


# The Angstrom PMF of issue 31 on ala2-core-beta, and the shipped exact Mueller-Brown PMF.
ANGSTROM = {"js": _m(0.125, 0.003), "js_floor": _m(0.094, 0.012), "ess": _m(0.0058, 0.001)}
EXACT_MB = {"js": _m(0.000196, 2.8e-5), "js_floor": _m(0.000204, 4.1e-5), "ess": _m(0.9877, 0.00015)}
FM_BIASED_ALA2 = {"js": _m(0.00587, 0.00047), "js_floor": _m(0.00273, 0.00023), "ess": _m(0.35, 0.01)}


def test_low_ess_is_flagged_below_one_percent():
    assert R.check_ess(ANGSTROM).code == "LOW_ESS"
    assert R.check_ess({"ess": _m(0.0101)}) is None
    assert R.check_ess({}) is None  # MD rows have no ESS


def test_js_within_noise_of_its_floor_is_flagged_only_with_degenerate_weights():
    flag = R.check_js_floor(ANGSTROM)
    assert flag.code == "JS_AT_FLOOR" and "0.094" in flag.message
    # A PMF at its floor with a healthy ESS is simply better than the bank resolves: no flag.
    assert R.check_js_floor(EXACT_MB) is None
    assert R.check_js_floor(FM_BIASED_ALA2) is None
    # Low ESS but a JS far above its floor (a clearly bad PMF, measured): no JS_AT_FLOOR flag.
    assert R.check_js_floor({"js": _m(0.3, 0.003), "js_floor": _m(0.05, 0.005), "ess": _m(0.05)}) is None
    # Excess above the floor but within 2 combined standard deviations, and ESS 5%: flagged.
    assert R.check_js_floor({"js": _m(0.30, 0.06), "js_floor": _m(0.14, 0.07), "ess": _m(0.05)}).code == "JS_AT_FLOOR"


def test_metric_objects_and_dicts_both_work(toy_task):
    from cgbg_bench.bootstrap import Metric

    metrics = {k: Metric(v["value"], v["error"], v["point"]) for k, v in ANGSTROM.items()}
    assert [f.code for f in R.assess(metrics)] == ["LOW_ESS", "JS_AT_FLOOR"]
    assert R.assess(EXACT_MB) == []


def test_energy_span_of_thousands_of_kt_is_flagged_and_single_outliers_are_not():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=100_000) * 5
    assert R.energy_span(healthy) < 60 and R.check_energy_span(healthy) is None
    assert R.check_energy_span(np.concatenate([healthy, [1e6]])) is None  # one clash: 0.1-99.9 percentile
    angstrom = 100.0 * healthy**2  # positions 10x too large in a harmonic PMF
    flag = R.check_energy_span(angstrom)
    assert flag.code == "ENERGY_SPAN" and "kT" in flag.message


def test_force_scale_is_the_rms_gradient():
    x = np.random.default_rng(1).normal(size=(300, 1)).astype(np.float32)
    # U = k/2 x^2: force -k x, RMS k * sqrt(mean(x^2)) over the first 256 configurations
    got = R.force_scale(Harmonic(k=3.0), x)
    assert got == pytest.approx(3.0 * math.sqrt(np.mean(x[:256].astype(np.float64) ** 2)), rel=1e-5)
    assert R.force_scale(Harmonic(), x[:1]) == pytest.approx(abs(float(x[0, 0])), rel=1e-5)


def test_force_scale_check_is_a_factor_3_either_way():
    assert R.check_force_scale(1.5, 1.0) is None and R.check_force_scale(0.5, 1.0) is None
    assert R.check_force_scale(4.184, 1.0).code == "FORCE_SCALE"  # kcal/mol read as kJ/mol
    assert R.check_force_scale(0.1, 1.0).code == "FORCE_SCALE"
    assert R.check_force_scale(float("nan"), 1.0).code == "FORCE_SCALE"
    assert R.check_force_scale(100.0, None) is None  # no expected scale: no check


def test_a_task_without_table_entry_or_baselines_has_no_expected_scale():
    task = SimpleNamespace(name="not-in-table", baselines=[])
    assert R.expected_force_scale(task, np.zeros((4, 1), np.float32)) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(R.EXPECTED_RMS_FORCE))
def test_expected_scale_table_is_the_shipped_baselines_median(name):
    """The table is a measurement: re-measured on the task's bank it holds (a new task version with
    new baselines or a new bank fails here until `python docs/scripts/expected_rms_force.py` re-measures)."""
    from cgbg_bench.task import load_task

    task = load_task(name)
    scales = R.baseline_force_scales(task, task.load_proposal().positions[:R.FORCE_CONFIGS])
    assert len(scales) >= 3
    assert float(np.median(list(scales.values()))) == pytest.approx(R.EXPECTED_RMS_FORCE[name], rel=1e-3)
    # every baseline within 20% of the median (0.86-1.17x on Mueller-Brown; stiff bonds and angles keep
    # the peptide baselines within 2%)
    assert all(abs(v / R.EXPECTED_RMS_FORCE[name] - 1) < 0.2 for v in scales.values())


def test_evaluate_flags_a_unit_mistake_and_not_the_exact_pmf(toy_task):
    """A toy PMF fitted on positions 10x too large (Angstrom for nm): flagged; the exact one is not."""
    from cgbg_bench.evaluate import evaluate

    class Angstrom(torch.nn.Module):
        def forward(self, x):
            return 0.5 * (10.0 * x[:, 0]) ** 2

    good, _ = evaluate(Harmonic(), toy_task, device="cpu", n_bootstrap=50)
    assert good.info["reliability"] == []
    bad, _ = evaluate(Angstrom(), toy_task, device="cpu", n_bootstrap=50)
    codes = [f["code"] for f in bad.info["reliability"]]
    assert {"ENERGY_SPAN", "FORCE_SCALE"} <= set(codes)  # 1-D: the ESS stays a few %
    assert all(set(f) == {"code", "message"} for f in bad.info["reliability"])
    assert bad.as_dict()["reliability"] == bad.info["reliability"]
    # 10x energies (e.g. a unit slip in the energy only): the force check catches it
    scaled, _ = evaluate(Harmonic(k=10.0), toy_task, device="cpu", n_bootstrap=50)
    assert "FORCE_SCALE" in [f["code"] for f in scaled.info["reliability"]]


def test_cli_prints_flags_and_writes_them_to_json(toy_root, monkeypatch, tmp_path, capsys):
    from cgbg_bench.cli import main
    from cgbg_bench.pmf import export_program

    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))
    pmf = export_program(Harmonic(k=10.0), torch.zeros(4, 1), tmp_path / "tenfold.pt2")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(pmf), "--task", "toy", "--n-bootstrap", "20", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "FORCE_SCALE" in captured.out  # the table's flags column
    assert "WARNING" in captured.err and "cannot be trusted" in captured.err
    data = json.loads(out.read_text())
    assert [f["code"] for f in data["reliability"]] == ["FORCE_SCALE"]


def test_pareto_k_flag_follows_the_sample_size_threshold():
    from cgbg_bench.reliability import check_pareto_k

    assert check_pareto_k(0.5, 100_000) is None
    assert check_pareto_k(0.69, 100_000) is None
    assert check_pareto_k(0.75, 100_000).code == "PARETO_K"
    assert check_pareto_k(0.6, 100).code == "PARETO_K"  # 1 - 1/log10(100) = 0.5
    assert check_pareto_k(float("inf"), 1000).code == "PARETO_K"
    assert check_pareto_k(float("-inf"), 1000) is None  # no tail at all: equal weights


def test_every_score_reports_pareto_k():
    from pathlib import Path

    from cgbg_bench.evaluate import evaluate
    from cgbg_bench.pmf import load_pmf
    from cgbg_bench.task import load_task

    root = Path(__file__).resolve().parents[1]
    task = load_task("mueller-brown")
    result, log_w = evaluate(load_pmf(root / "baselines" / "mueller-brown" / "exact.pt2", "cpu"), task,
                             n_samples=5000, n_bootstrap=5, device="cpu")
    k = result.as_dict()["pareto_k"]
    assert isinstance(k, float) and k < 0.7
    assert "PARETO_K" not in [f["code"] for f in result.info["reliability"]]
