"""The command line end to end, on the synthetic toy task."""

import json
import os

import pytest

from cgbg_bench.cli import main


@pytest.fixture
def tasks_env(toy_root, monkeypatch):
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))
    return toy_root


def test_evaluate_prints_table_and_writes_json_and_plot(tasks_env, tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["evaluate", str(tasks_env / "exact.pt2"), "--task", "toy", "--n-bootstrap", "50",
                 "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| JS" in text and "ESS" in text and "exact.pt2" in text
    result = json.loads(out_json.read_text())
    assert result["task"] == "toy" and result["task_version"] == 3
    assert set(result["metrics"]) >= {"js", "pmf_error", "ess", "js_floor", "fe_rmse"}
    assert len(result["submission_sha256"]) == 64 and result["device"] == "cpu"
    assert out_png.stat().st_size > 1000


def test_evaluate_refuses_a_pickle_with_exit_code_2(tasks_env, tmp_path, capsys):
    import torch

    bad = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(1, 1), bad)
    assert main(["evaluate", str(bad), "--task", "toy"]) == 2
    err = capsys.readouterr().err
    assert "UnsupportedFormat" in err and "export_pmf" in err


def test_unknown_task_and_bad_option(tasks_env, capsys):
    assert main(["info", "toyy"]) == 2
    assert "did you mean toy" in capsys.readouterr().err
    assert main(["evaluate", str(tasks_env / "exact.pt2"), "--task", "toy", "--batch-size", "0"]) == 2


def test_list_and_info(tasks_env, capsys):
    assert main(["list"]) == 0
    assert "toy" in capsys.readouterr().out
    assert main(["info", "toy", "--verify"]) == 0
    assert "hashes match" in capsys.readouterr().out


def test_cli_sets_passive_openmp_waiting_unless_the_user_chose():
    """Spinning OpenMP threads made a scoring run 7x slower on a busy 2-core machine (cli/__init__.py)."""
    import subprocess
    import sys

    code = "import os, cgbg_bench.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_the_command_table_names_every_command():
    """main() builds only the named command's parser (cgbg_bench.cli.COMMANDS): the table must list
    every command, with the module that registers it."""
    import argparse

    from cgbg_bench.cli import COMMANDS, build_parser

    def commands(parser):
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return set(sub.choices)

    assert commands(build_parser()) == set(COMMANDS)
    for name in COMMANDS:
        assert name in commands(build_parser(name))


def test_scoring_a_file_leaves_torch_to_the_model_process(tasks_env, tmp_path):
    """The command's own process never imports torch when the PMF runs in its confined child
    (~1.2 s of every evaluation; a task missing from reliability.EXPECTED_RMS_FORCE, like the toy,
    loads its baselines here instead); an unknown task still ends the command before any scoring,
    the child started for the model included."""
    import subprocess
    import sys
    from pathlib import Path

    exact = Path(__file__).resolve().parents[1] / "baselines" / "mueller-brown" / "exact.pt2"
    code = ("import sys; from cgbg_bench.cli import main; "
            f"rc = main(['evaluate', {str(exact)!r}, '--task', 'mueller-brown', '--n-samples', '2000', "
            f"'--n-bootstrap', '5', '--stored-baselines', '--json', {str(tmp_path / 'r.json')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "CGBG_BENCH_TASKS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["torch_version"]
    assert main(["evaluate", str(tasks_env / "exact.pt2"), "--task", "toyy"]) == 2
