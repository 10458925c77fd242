"""The CI gates: accuracy (golden baseline scores of every shipped task) and speed (asv ratios).

The accuracy gate is ``test_golden_scores`` below (marked slow): it re-scores every baseline of every
shipped task and fails with the task, baseline, metric, old and new value. The speed
gate runs in CI as ``python benchmarks/gate_speed.py``; here only its pieces are tested
(reading asv results, the comparison, the stored baseline's consistency).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from cgbg_bench._io import sha256_file
from cgbg_bench.cli import main
from cgbg_bench.cli.golden import HEADLINE, TOLERANCE_SIGMAS, check_task, compare_scores
from cgbg_bench.task import list_tasks, load_task

from .conftest import write_toy_task

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [t for t in list_tasks() if load_task(t).baseline_scores is not None]


# Re-scoring every baseline on its full bank takes minutes per task on 2 cores (10^6 flow samples
# for the alanine tasks): `pytest -m slow`, which CI runs. The default run keeps the golden files'
# consistency below and the leaderboard's quick check (every baseline re-scored on a small bank).
@pytest.mark.slow
@pytest.mark.parametrize("task", SHIPPED or [pytest.param(None, marks=pytest.mark.skip("no shipped task"))])
def test_golden_scores(task):
    """Accuracy gate: every shipped baseline still scores as its task's baseline_scores.json says."""
    problems = check_task(load_task(task))
    assert not problems, (
        "baseline scores changed beyond the tolerance:\n  " + "\n  ".join(problems)
        + f"\nIf intended, run `cgbg-bench golden update {task}`, review the diff and commit it."
    )


@pytest.mark.parametrize("task", SHIPPED or [pytest.param(None, marks=pytest.mark.skip("no shipped task"))])
def test_golden_files_match_their_tasks(task):
    """The fast part of the accuracy gate for every shipped task (the re-scoring of the large ones
    is slow): the golden file's hash verifies, it is for the task's version and it holds exactly
    the task's baselines, each with headline metrics."""
    t = load_task(task)
    golden = json.loads(t.baseline_scores.verify().read_text())
    assert golden.get("task_version") == t.version
    assert sorted(golden.get("baselines", {})) == sorted(b.name for b in t.baselines)
    for name, stored in golden["baselines"].items():
        assert set(stored["metrics"]) & set(HEADLINE), f"{task}, baseline {name}: no headline metric"


def _m(value, error, point=None):
    return {"value": value, "error": error, "point": value if point is None else point}


def test_compare_scores_names_task_baseline_metric_old_and_new():
    old = {"js": _m(0.0100, 0.0004), "ess": _m(0.50, 0.01)}
    same = compare_scores("t", "b", old, {"js": _m(0.0100, 0.0004), "ess": _m(0.50, 0.01)})
    within = compare_scores("t", "b", old, {"js": _m(0.0100 + 0.2 * 0.0004, 0.0004), "ess": _m(0.50, 0.01)})
    assert same == [] and within == []
    moved = compare_scores("mueller-brown", "fm-biased", old,
                           {"js": _m(0.0103, 0.0004), "ess": _m(0.50, 0.01)})
    assert len(moved) == 2  # the bootstrap mean and the full-data value both moved
    msg = moved[0]
    for part in ("mueller-brown", "fm-biased", "js", "old 0.01", "new 0.0103", f"{TOLERANCE_SIGMAS} x"):
        assert part in msg, msg
    missing = compare_scores("t", "b", old, {"js": _m(0.0100, 0.0004)})
    assert missing and "ess" in missing[0]
    nan_point = {"js_floor": _m(0.001, 1e-4, point=float("nan"))}
    assert compare_scores("t", "b", nan_point, nan_point) == []


def test_golden_update_then_check_then_drift(tmp_path, monkeypatch, capsys):
    """The explicit update command writes the golden file; check passes; an edited golden value fails."""
    root = tmp_path / "tasks"
    write_toy_task(root, n=4000, n_bootstrap=50)
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(root))
    assert main(["golden", "update", "toy"]) == 0
    task = load_task("toy")
    assert task.baseline_scores is not None
    assert main(["golden", "check", "toy"]) == 0
    assert check_task(task) == []

    # a reviewer-visible edit of the golden file (hash re-recorded) must now fail the check
    path = task.baseline_scores.path
    golden = json.loads(path.read_text())
    js = golden["baselines"]["exact"]["metrics"]["js"]
    js["value"] += 1.0 * js["error"]
    path.write_text(json.dumps(golden))
    data = yaml.safe_load((root / "toy" / "task.yaml").read_text())
    data["baseline_scores"]["sha256"] = sha256_file(path)
    (root / "toy" / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    capsys.readouterr()
    assert main(["golden", "check", "toy"]) == 1
    err = capsys.readouterr().err
    assert "task toy, baseline exact, metric js (bootstrap mean)" in err and "golden update" in err


# ---- speed gate -------------------------------------------------------------------------

def _gate():
    spec = importlib.util.spec_from_file_location("gate_speed", REPO / "benchmarks" / "gate_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_gate_reads_asv_results_and_compares_ratios():
    gate = _gate()
    cols = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
            "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]
    data = {"result_columns": cols, "results": {
        gate.CALIBRATION: [[0.1], [], "v", 0, 1.0, None, None, None, None, None, None, None, None],
        "bench_x.A.time_a": [[0.2, None], [["'u'", "'v'"]], "v", 0, 1.0] + [None] * 8,
        "bench_x.B.time_b": [[1.0, 3.0], [["1", "2"], ["10"]], "v", 0, 1.0] + [None] * 8,
    }}
    seconds = gate.read_results(data)
    assert seconds["bench_x.A.time_a('u')"] == 0.2
    assert seconds["bench_x.B.time_b(2, 10)"] == 3.0
    ratios = gate.ratios(seconds)
    assert ratios["bench_x.A.time_a('u')"] == pytest.approx(2.0)
    stored = {"bench_x.A.time_a('u')": 1.5, "bench_x.A.time_a('v')": 1.0, "bench_x.B.time_b(1, 10)": 10.0,
              "bench_x.gone": 1.0}
    failures = gate.compare(ratios, stored, factor=1.3)
    text = "\n".join(failures)
    assert "time_a('u'): 1.33x slower" in text  # 2.0 / 1.5 > 1.3
    assert "time_a('v'): the benchmark failed" in text
    assert "time_b(1, 10)" not in text  # faster is fine
    assert "bench_x.gone: in speed_baseline.json but not run" in text
    assert gate.compare(ratios, {"bench_x.A.time_a('u')": 1.6}, factor=1.3) == []


def _benchmark_names() -> set[str]:
    names = set()
    for path in (REPO / "benchmarks" / "benchmarks").glob("bench_*.py"):
        tree = ast.parse(path.read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                if fn.name.startswith(("time_", "peakmem_", "track_", "mem_")):
                    names.add(f"{path.stem}.{cls.name}.{fn.name}")
    return names


def test_speed_baseline_matches_the_quick_set():
    gate = _gate()
    stored = json.loads((REPO / "benchmarks" / "speed_baseline.json").read_text())
    assert stored["calibration"] == gate.CALIBRATION
    assert stored["calibration_sha256"] == gate.calibration_sha256(), (
        "bench_calibration.py changed: every stored ratio is void; re-record with "
        "`python benchmarks/gate_speed.py --update --runs 5`"
    )
    names = _benchmark_names()
    assert gate.CALIBRATION in names
    for key, ratio in stored["ratios"].items():
        base = key.split("(")[0]
        assert base in names, f"{key}: no such benchmark"
        assert any(re.search(rx, base) for rx in gate.QUICK_SET), f"{key}: not in the quick set"
        assert ratio > 0
