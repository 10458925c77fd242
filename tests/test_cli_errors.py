"""`evaluate`'s refusals and messages (issue 25 item 7) and its multi-task and quick-check rows (issue 31).

Each test failed before its fix: a bad output path gave a traceback after scoring, a bad
device was reported as a bad file, a directory as "no such file", a PMF for another task
shape was blamed on the dynamic batch; `--task A --task B` scored only B; `--n-samples`
rows were set beside full-bank baseline rows.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from cgbg_bench._io import sha256_file
from cgbg_bench.cli import build_parser, main
from tests.conftest import Harmonic, write_toy_task


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """toy (no stored baseline scores) and toyb (the same task with stored full-bank baseline scores)."""
    from cgbg_bench.evaluate import evaluate
    from cgbg_bench.pmf import load_pmf
    from cgbg_bench.task import load_task

    root = tmp_path_factory.mktemp("tasks2")
    write_toy_task(root, n_bootstrap=20)
    shutil.copytree(root / "toy", root / "toyb")
    data = yaml.safe_load((root / "toyb" / "task.yaml").read_text())
    data["name"] = "toyb"
    (root / "toyb" / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    task = load_task("toyb", root=root)
    result, _ = evaluate(load_pmf(root / "exact.pt2", "cpu"), task, device="cpu")
    scores = {"task": "toyb", "task_version": task.version, "baselines": {"exact": result.as_dict()}}
    (root / "toyb" / "baseline_scores.json").write_text(json.dumps(scores))
    data["baseline_scores"] = {"path": "baseline_scores.json",
                               "sha256": sha256_file(root / "toyb" / "baseline_scores.json")}
    (root / "toyb" / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


@pytest.fixture
def env(two_tasks, monkeypatch):
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(two_tasks))
    return two_tasks


@pytest.fixture
def no_scoring(monkeypatch):
    """Fail the test if evaluate gets as far as scoring."""
    import cgbg_bench.evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("scoring started before the arguments were checked")

    monkeypatch.setattr(cgbg_bench.evaluate, "evaluate", refuse)


def _evaluate(env, *extra):
    return main(["evaluate", str(env / "exact.pt2"), "--task", "toy", "--n-bootstrap", "20", *extra])


# --- output paths are checked before any work ---------------------------------------------


def test_json_pointing_at_a_directory_is_refused_before_scoring(env, tmp_path, no_scoring, capsys):
    assert _evaluate(env, "--json", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "OutputPathError" in err and "--json" in err and "is a directory" in err


def test_plot_with_an_unsupported_suffix_is_refused_before_scoring(env, tmp_path, no_scoring, capsys):
    assert _evaluate(env, "--plot", str(tmp_path / "x.xyz")) == 2
    err = capsys.readouterr().err
    assert "OutputPathError" in err and "'.xyz'" in err and ".png" in err


def test_output_in_a_missing_folder_is_refused_before_scoring(env, tmp_path, no_scoring, capsys):
    assert _evaluate(env, "--json", str(tmp_path / "nope" / "r.json")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_two_outputs_on_one_file_are_refused(env, tmp_path, no_scoring, capsys):
    assert _evaluate(env, "--json", str(tmp_path / "r.png"), "--plot", str(tmp_path / "r.png")) == 2
    assert "different files" in capsys.readouterr().err


# --- devices and PMF paths: the message names the real problem ------------------------------


def test_unknown_device_is_a_device_error_not_a_bad_file(env, no_scoring, capsys):
    assert _evaluate(env, "--device", "foo") == 2
    err = capsys.readouterr().err
    assert "DeviceError" in err and "'foo'" in err and "UnsupportedFormat" not in err


def test_cuda_without_a_gpu_is_a_device_error(env, no_scoring, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _evaluate(env, "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "DeviceError" in err and "--device cpu" in err and "UnsupportedFormat" not in err


def test_a_directory_given_as_the_pmf_says_so(env, tmp_path, no_scoring, capsys):
    assert main(["evaluate", str(tmp_path), "--task", "toy"]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "no such file" not in err
    assert main(["evaluate", str(tmp_path / "missing.pt2"), "--task", "toy"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_pmf_for_another_input_shape_is_a_shape_mismatch(env):
    """A Mueller-Brown-shaped PMF (B, 1) on an ala2-core-beta-shaped task (B, 6, 3)."""
    from cgbg_bench.errors import PMFContractError
    from cgbg_bench.pmf import check_pmf, load_pmf

    module = load_pmf(env / "exact.pt2", "cpu")
    ala2_like = SimpleNamespace(input_shape=(6, 3))
    with pytest.raises(PMFContractError) as info:
        check_pmf(module, ala2_like, sample=np.zeros((7, 6, 3), np.float32), device="cpu")
    msg = str(info.value)
    assert "the task gives input shape (B, 6, 3), the model expects (B, 1)" in msg
    assert "dynamic" not in msg


def test_a_pmf_exported_with_a_fixed_batch_says_so(tmp_path):
    from cgbg_bench.errors import PMFContractError
    from cgbg_bench.pmf import check_pmf, load_pmf

    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(Harmonic(), (torch.zeros(7, 1),)), str(path))
    with pytest.raises(PMFContractError, match="fixed batch size 7"):
        check_pmf(load_pmf(path, "cpu"), SimpleNamespace(input_shape=(1,)),
                  sample=np.zeros((7, 1), np.float32), device="cpu")


# --- several tasks in one call --------------------------------------------------------------


def test_task_is_repeatable_takes_several_names_and_all(env):
    from cgbg_bench.cli.evaluate import _split_pmf, _task_names

    parser = build_parser()
    for argv in (["evaluate", "m.pt2", "--task", "toy", "--task", "toyb"],
                 ["evaluate", "m.pt2", "--task", "toy", "toyb"],
                 ["evaluate", "--task", "toy", "toyb", "m.pt2"]):
        args = parser.parse_args(argv)
        _split_pmf(args)
        assert args.pmf == "m.pt2" and _task_names(args.task) == ["toy", "toyb"], argv
    assert _task_names(["all"]) == ["toy", "toyb"]
    assert _task_names(["toy", "toy"]) == ["toy"]


def test_unknown_task_among_several_is_refused_before_scoring(env, no_scoring, capsys):
    assert main(["evaluate", str(env / "exact.pt2"), "--task", "toy", "toyy"]) == 2
    assert "TaskNotFound" in capsys.readouterr().err


def test_several_tasks_give_one_table_each_and_a_json_list(env, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["evaluate", str(env / "exact.pt2"), "--task", "toy", "--task", "toyb", "--n-bootstrap", "20",
                 "--n-samples", "5000", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "== toy ==" in text and "== toyb ==" in text and "scored 2 of 2 tasks" in text
    assert text.count("| entry") == 2
    data = json.loads(out.read_text())
    assert [r["task"] for r in data] == ["toy", "toyb"]
    assert all(r["n_samples"] == 5000 and "reliability" in r for r in data)
    # issue 31 item 2: the stored 20000-sample baseline row is rescored on the same 5000 samples
    toyb = text.split("== toyb ==")[1]
    assert "[baseline] exact (rescored)" in toyb and "| 20000" not in toyb
    assert "| bank" in toyb and "rescored on the same 5000 samples" in toyb


def test_stored_full_bank_rows_are_marked_not_comparable(env, capsys):
    code = main(["evaluate", str(env / "exact.pt2"), "--task", "toyb", "--n-bootstrap", "20",
                 "--n-samples", "5000", "--stored-baselines"])
    assert code == 0
    text = capsys.readouterr().out
    assert "[baseline] exact (stored, not comparable)" in text and "| 20000" in text
    assert "not comparable" in text.split("\n", 3)[-1]
