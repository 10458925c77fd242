"""Scoring on a Dask cluster: ``--scheduler`` values, the missing extra, sharded scores equal to the
single-process ones, ``leaderboard reproduce --all`` in parallel, MD walkers dispatched to workers.

The cluster is two single-threaded workers in this process (a LocalCluster without worker
processes, on TCP so that the CLI can be given its address); model code still runs in the
confined child processes that each shard starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cgbg_bench.errors import MissingExtra, SchedulerError, UsageError

ROOT = Path(__file__).resolve().parents[1]
EXACT = ROOT / "baselines" / "mueller-brown" / "exact.pt2"
N_SAMPLES, BATCH, N_BOOTSTRAP = 8192, 1024, 20


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)  # no lines to a stream pytest has closed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                                  protocol="tcp", host="127.0.0.1") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    from distributed import Client

    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def task():
    from cgbg_bench.task import load_task

    return load_task("mueller-brown")


@pytest.fixture(scope="module")
def single(task):
    """The single-process evaluation every sharded one must equal."""
    from cgbg_bench.evaluate import evaluate

    return evaluate(EXACT, task, device="cpu", n_samples=N_SAMPLES, batch_size=BATCH, n_bootstrap=N_BOOTSTRAP)


def _metric_values(metrics: dict) -> dict:
    return {(k, part): v for k, m in metrics.items() for part, v in m.items() if isinstance(v, float)}


# ------------------------------------------------------------------ --scheduler values


@pytest.mark.parametrize("value, expected", [
    ("local:1", (1, None)), ("local:16", (16, None)), ("tcp://10.0.0.5:8786", (None, "tcp://10.0.0.5:8786")),
    ("node17:8786", (None, "tcp://node17:8786")), ("localhost:8786", (None, "tcp://localhost:8786")),
    ("[::1]:8786", (None, "tcp://[::1]:8786")), (" tls://head.cluster.org:8786 ", (None, "tls://head.cluster.org:8786")),
])
def test_scheduler_values(value, expected):
    from cgbg_bench.distributed import parse_scheduler

    spec = parse_scheduler(value)
    assert (spec.n_workers, spec.address) == expected


@pytest.mark.parametrize("value", ["local", "local:0", "local:-2", "local:two", "local:1.5", "node17",
                                   "tcp://node17", "node17:99999", "http://node17:8786", "", "local:2:3"])
def test_bad_scheduler_values_are_typed_errors_naming_the_parameter_and_the_fix(value):
    from cgbg_bench.distributed import parse_scheduler

    with pytest.raises(SchedulerError, match=r"^scheduler .*local:N") as info:
        parse_scheduler(value)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_cli_refuses_a_bad_scheduler_before_any_work(capsys):
    from cgbg_bench.cli import main

    assert main(["evaluate", str(EXACT), "--task", "mueller-brown", "--scheduler", "local:0"]) == 2
    assert "SchedulerError: --scheduler 'local:0'" in capsys.readouterr().err
    assert main(["leaderboard", "reproduce", "--all", "--scheduler", "nowhere"]) == 2
    assert "SchedulerError: --scheduler 'nowhere'" in capsys.readouterr().err
    assert main(["evaluate", str(EXACT), "--task", "mueller-brown", "--shards", "2"]) == 2
    assert "--shards needs --scheduler" in capsys.readouterr().err


def test_no_scheduler_at_an_address_is_a_typed_error(monkeypatch):
    pytest.importorskip("distributed")
    import socket

    from cgbg_bench import distributed as D

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(D, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(SchedulerError, match=f"no Dask scheduler answered at tcp://127.0.0.1:{port}"):
        with D.connect(f"127.0.0.1:{port}"):
            pass


# ------------------------------------------------------------------ dask is optional


def test_missing_dask_is_a_typed_error_naming_the_extra(monkeypatch, capsys):
    from cgbg_bench.cli import main
    from cgbg_bench.distributed import require_dask

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'cgbg-bench\[dask\]'") as info:
        require_dask()
    assert isinstance(info.value, ImportError)
    assert main(["evaluate", str(EXACT), "--task", "mueller-brown", "--scheduler", "local:2"]) == 2
    err = capsys.readouterr().err
    assert "MissingExtra" in err and "cgbg-bench[dask]" in err


def test_nothing_imports_dask_without_a_scheduler():
    code = ("import sys, cgbg_bench.cli, cgbg_bench.distributed, cgbg_bench.sharded, cgbg_bench.md.dispatch; "
            "import cgbg_bench.leaderboard.reproduce; cgbg_bench.cli.build_parser(); "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ sharded scoring


def test_shard_bounds_cover_the_bank_on_batch_boundaries():
    from cgbg_bench.sharded import default_shard_count, shard_bounds

    assert shard_bounds(10_000, 3, 1024) == [(0, 4096), (4096, 8192), (8192, 10_000)]
    assert shard_bounds(10_000, 2, 16384) == [(0, 10_000)]  # one batch: one shard
    assert shard_bounds(5, 8, 1) == [(i, i + 1) for i in range(5)]
    assert shard_bounds(0, 2, 4) == []
    for n, k, b in [(1, 1, 1), (99_999, 7, 1000), (65_536, 4, 16384), (12_345, 64, 100)]:
        bounds = shard_bounds(n, k, b)
        assert bounds[0][0] == 0 and bounds[-1][1] == n and len(bounds) <= k
        assert all(a % b == 0 and a < c for a, c in bounds)
        assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    assert default_shard_count(1000, 4) == 4 and default_shard_count(10**8, 2) == 24
    with pytest.raises(UsageError, match="n_shards"):
        shard_bounds(10, 0, 4)


def test_sharded_scores_equal_single_process_scores(client, task, single):
    from cgbg_bench.sharded import evaluate_sharded

    ref, ref_log_w = single
    got, log_w = evaluate_sharded(EXACT, task, client, n_shards=3, device="cpu", n_samples=N_SAMPLES,
                                  batch_size=BATCH, n_bootstrap=N_BOOTSTRAP)
    assert got.info["shards"] == 3 and got.n_samples == ref.n_samples == N_SAMPLES
    np.testing.assert_allclose(log_w, ref_log_w, rtol=1e-12, atol=0)
    assert got.scores.metrics.keys() == ref.scores.metrics.keys()
    a, b = _metric_values(got.as_dict()["metrics"]), _metric_values(ref.as_dict()["metrics"])
    assert a.keys() == b.keys() and a
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-12, atol=0)
    assert got.info["pareto_k"] == pytest.approx(ref.info["pareto_k"], rel=1e-12)
    assert got.info["reliability"] == ref.info["reliability"]
    assert (got.submission, got.submission_sha256, got.device) == (ref.submission, ref.submission_sha256, "cpu")


def test_a_failing_shard_raises_the_typed_error_of_the_model_with_its_own_path(client, task):
    from cgbg_bench.confine import Limits
    from cgbg_bench.errors import ModelTimeout
    from cgbg_bench.sharded import evaluate_sharded

    with pytest.raises(ModelTimeout, match=r"ran for more than 0.2 s") as info:
        evaluate_sharded(EXACT, task, client, n_shards=2, device="cpu", n_samples=2048, batch_size=1024,
                         n_bootstrap=5, limits=Limits(timeout_s=0.2))
    message = str(info.value)
    assert f"the PMF {EXACT} ran" in message and "cgbg-bench-shard-" not in message
    assert "(bank samples 0..1023, on device cpu of worker tcp://127.0.0.1:" in message


def test_a_device_the_workers_lack_is_a_device_error(client, task):
    from cgbg_bench.errors import DeviceError
    from cgbg_bench.sharded import evaluate_sharded

    with pytest.raises(DeviceError, match=r"device cuda:99: .*of worker tcp://127.0.0.1:"):
        evaluate_sharded(EXACT, task, client, n_shards=1, device="cuda:99", n_samples=1024, batch_size=1024,
                         n_bootstrap=5)


def test_cli_evaluate_on_a_scheduler_address_writes_the_single_process_scores(cluster, single, tmp_path, capsys):
    from cgbg_bench.cli import main

    out = tmp_path / "sharded.json"
    assert main(["evaluate", str(EXACT), "--task", "mueller-brown", "--n-samples", str(N_SAMPLES),
                 "--batch-size", str(BATCH), "--n-bootstrap", str(N_BOOTSTRAP), "--stored-baselines",
                 "--scheduler", cluster.scheduler_address, "--shards", "2", "--json", str(out)]) == 0
    assert ", 2 shards," in capsys.readouterr().out
    got, ref = json.loads(out.read_text()), single[0].as_dict()
    a, b = _metric_values(got["metrics"]), _metric_values(ref["metrics"])
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-12, atol=0)
    assert got["shards"] == 2 and got["reliability"] == ref["reliability"]


# ------------------------------------------------------------------ leaderboard reproduce --all


def test_reproduce_all_in_parallel_prints_what_the_serial_run_prints(cluster, toy_root, toy_recorded, tmp_path,
                                                                     monkeypatch, capsys):
    import yaml

    from cgbg_bench.cli import main

    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(toy_root))  # the workers are threads of this process
    lb = tmp_path / "lb"
    (lb / "submissions").mkdir(parents=True)
    _, data = toy_recorded
    for name in ("toy-a", "toy-b"):
        (lb / "submissions" / f"{name}.yaml").write_text(yaml.safe_dump({**data, "name": name}, sort_keys=False))
    args = ["leaderboard", "--dir", str(lb), "reproduce", "--all", "--quick", "--device", "cpu"]
    assert main(args) == 0
    serial = capsys.readouterr()
    assert main([*args, "--scheduler", cluster.scheduler_address]) == 0
    parallel = capsys.readouterr()
    assert parallel.out == serial.out and parallel.err == serial.err
    assert serial.out.index("== toy-a") < serial.out.index("== toy-b")
    assert "2 of 2 entries reproduced" in serial.out and "| ok " in serial.out


# ------------------------------------------------------------------ MD walkers


WALKER = ("-c", "import os, sys; print('walker', sys.argv[1], os.getcwd()); sys.exit(int(sys.argv[1]))")


def test_walkers_run_on_workers_and_report_their_exit_codes(client, tmp_path):
    from cgbg_bench.md.dispatch import dispatch_walkers

    seen = []
    results = dispatch_walkers([["0"], ["3"], ["0"]], client, command=WALKER, cwd=tmp_path, log_dir="logs",
                               on_result=lambda i, r: seen.append(i))
    assert [r.returncode for r in results] == [0, 3, 0] and [r.ok for r in results] == [True, False, True]
    assert sorted(seen) == [0, 1, 2]
    assert f"walker 3 {tmp_path}" in results[1].output_tail
    assert all(r.worker.startswith("tcp://127.0.0.1:") for r in results)
    logs = sorted((tmp_path / "logs").glob("walker-*.log"))
    assert len(logs) == 3 and any("walker 3" in p.read_text() for p in logs)


def test_a_walker_in_a_folder_the_worker_lacks_does_not_start(client, tmp_path):
    from cgbg_bench.md.dispatch import dispatch_walkers

    (result,) = dispatch_walkers([["0"]], client, command=WALKER, cwd=tmp_path / "missing")
    assert result.returncode is None and not result.ok and "does not exist on worker" in result.output_tail


def test_read_walkers(tmp_path):
    from cgbg_bench.md.dispatch import read_walkers

    f = tmp_path / "walkers.txt"
    f.write_text("# ala2 in OBC2\n--system ala2 --solvent obc2 --ns 10 --seed 1 --out 'runs/a b'\n\n"
                 "cgbg-bench md run --system ala2 --solvent obc2 --ns 10 --seed 2 --out runs/b  # second\n")
    assert read_walkers(f) == [["--system", "ala2", "--solvent", "obc2", "--ns", "10", "--seed", "1", "--out",
                                "runs/a b"],
                               ["--system", "ala2", "--solvent", "obc2", "--ns", "10", "--seed", "2", "--out",
                                "runs/b"]]
    for text, match in [("# nothing\n", "no walker"), ("md run\n", "line 1: no md run arguments"),
                        ("--out 'open\n", "line 1: No closing quotation")]:
        f.write_text(text)
        with pytest.raises(UsageError, match=match):
            read_walkers(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_walkers(tmp_path / "absent.txt")


def test_cli_md_dispatch_reports_each_walker(cluster, tmp_path, capsys):
    from cgbg_bench.cli import main

    f = tmp_path / "walkers.txt"
    f.write_text("--help\n--system ala2 --solvent vacuum\n")  # the second misses --ns and --out: exit code 2
    assert main(["md", "dispatch", str(f), "--scheduler", cluster.scheduler_address]) == 1
    out, err = capsys.readouterr()
    assert "walker 1/2 (--help) on tcp://" in out and ": ok" in out
    assert "walker 2/2 (--system ala2 --solvent vacuum)" in out and "exit code 2" in out
    assert "required: --ns, --out" in err
    assert "1 of 2 walkers ended with exit code 0; failed: 2" in out
