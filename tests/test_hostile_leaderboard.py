"""Leaderboard entries and task files as hostile input (issue 25, items 3, 4, 9, 10 and 11).

Each test failed before its fix: a YAML alias bomb, fabricated results that validated and
"reproduced", task keys that were paths and model paths through symlinks, shipped files that
`info --verify` did not hash, and entry strings carried verbatim into LEADERBOARD.md.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from cgbg_bench.errors import (
    CgbgError, EntryPathError, EntrySchemaError, HashMismatch, ImpossibleResult, LeaderboardError, NothingCompared,
    TaskFileUnlisted, TaskSchemaError,
)
from cgbg_bench.leaderboard import check_entry, load_entry, render_markdown, repo_root, reproduce_entry
from cgbg_bench.leaderboard.schema import parse_entry

QUICK_N_SAMPLES = 1000  # cgbg_bench.leaderboard.schema.QUICK_N_SAMPLES (checked below)


def _bomb(levels: int = 6, width: int = 10) -> str:
    """A billion-laughs document: each level repeats the previous one ``width`` times."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def recorded(toy_recorded):
    """A real recorded entry of the toy task (placeholders filled in), as a mapping."""
    return toy_recorded[1]


def _copy(data):
    return yaml.safe_load(yaml.safe_dump(data))


def _write(tmp_path, data, name="toy-pmf"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------ 3: YAML alias bomb


def test_alias_bomb_entry_is_refused_before_it_expands(tmp_path, recorded):
    text = yaml.safe_dump(recorded, sort_keys=False).replace("name: toy-pmf\n", "name: toy-pmf\nbomb_anchor: 0\n", 1)
    text = _bomb() + text.replace("model: {name: toy-pmf", "model: {name: *a6", 1)
    path = tmp_path / "toy-pmf.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(EntrySchemaError) as info:
        load_entry(path)
    assert time.perf_counter() - t0 < 2.0
    message = str(info.value)
    assert "anchors and aliases" in message and len(message) < 500


def test_alias_bomb_is_refused_by_validate_and_in_task_yaml(tmp_path, toy_root):
    from cgbg_bench.leaderboard.validate import validate_all
    from cgbg_bench.task import load_task

    sub = tmp_path / "submissions"
    sub.mkdir()
    (sub / "x.yaml").write_text(_bomb() + "name: *a6\n")
    _, problems = validate_all(sub, root=tmp_path, tasks_root=toy_root)
    [found] = problems.values()
    assert len(str(found[0])) < 500 and "aliases" in str(found[0])
    task_dir = tmp_path / "tasks" / "t"
    task_dir.mkdir(parents=True)
    (task_dir / "task.yaml").write_text((toy_root / "toy" / "task.yaml").read_text()
                                        + "x0: &x 1\nx1: *x\n")
    with pytest.raises(TaskSchemaError, match="anchors and aliases"):
        load_task("t", root=tmp_path / "tasks")


def test_error_messages_do_not_format_huge_values():
    from cgbg_bench._schema import check_keys, require

    huge = [["lol"] * 1000] * 1000  # a million strings, as an expanded alias bomb would give
    with pytest.raises(EntrySchemaError) as info:
        require(huge, str, where="model.name", error=EntrySchemaError)
    assert len(str(info.value)) < 200
    with pytest.raises(EntrySchemaError) as info:
        check_keys({"x" * 10**6: 1}, where="entry", required=set(), error=EntrySchemaError)
    assert len(str(info.value)) < 400


# ------------------------------------------------------------------ 4: fabricated results


@pytest.mark.parametrize("mutate, pattern", [
    (lambda r: r["metrics"]["js"].update(value=r["metrics"]["js_floor"]["value"] / 10), "noise floor"),
    (lambda r: r["metrics"]["ess"].update(value=1.5), r"outside \(0, 1\]"),
    (lambda r: r["metrics"]["ess"].update(value=0.0), r"outside \(0, 1\]"),
    (lambda r: r["metrics"]["pmf_error"].update(error=-0.1), ">= 0"),
    (lambda r: r["metrics"]["js"].update(value=-0.01), "negative"),
    (lambda r: r["metrics"]["js"].update(value=0.9), "ln 2"),
    (lambda r: r["metrics"]["fe_rmse"].update(value=float("inf")), "finite"),
    (lambda r: r["quick_check"]["metrics"]["js"].update(value=-1.0), "negative"),
])
def test_impossible_values_are_refused(recorded, mutate, pattern):
    data = _copy(recorded)
    mutate(data["results"]["toy"])
    with pytest.raises(ImpossibleResult, match=pattern):
        parse_entry(data)


def test_recorded_entry_has_a_quick_check_and_validates(recorded, toy_root, tmp_path):
    from cgbg_bench.leaderboard import schema

    assert schema.QUICK_N_SAMPLES == QUICK_N_SAMPLES
    q = recorded["results"]["toy"]["quick_check"]
    assert q["n_samples"] == QUICK_N_SAMPLES and "js" in q["metrics"]
    assert check_entry(load_entry(_write(tmp_path, recorded)), root=toy_root, tasks_root=toy_root) == []
    data = _copy(recorded)
    del data["results"]["toy"]["quick_check"]
    problems = check_entry(load_entry(_write(tmp_path, data)), root=toy_root, tasks_root=toy_root)
    assert problems and "quick_check" in str(problems[0])


def test_quick_reproduce_compares_the_quick_check(recorded, toy_root, tmp_path):
    honest = load_entry(_write(tmp_path, recorded))
    rep = reproduce_entry(honest, root=toy_root, tasks_root=toy_root, n_samples=QUICK_N_SAMPLES, device="cpu")
    assert rep.ok and rep.compared > 0 and all(c.compared and c.n_samples == QUICK_N_SAMPLES for c in rep.checks)
    # a fabricated quick-check JS is caught by the quick reproduction CI runs
    data = _copy(recorded)
    js = data["results"]["toy"]["quick_check"]["metrics"]["js"]
    js["value"] += 5 * js["error"] + 1e-3
    rep = reproduce_entry(load_entry(_write(tmp_path, data)), root=toy_root, tasks_root=toy_root, quick=True,
                          device="cpu")
    assert not rep.ok and [c.metric for c in rep.moved] == ["js"]


def test_quick_reproduce_says_when_nothing_was_compared(recorded, toy_root, tmp_path, monkeypatch, capsys):
    from cgbg_bench.cli import main

    entry = load_entry(_write(tmp_path, recorded))
    rep = reproduce_entry(entry, root=toy_root, tasks_root=toy_root, n_samples=500, device="cpu")
    assert not rep.ok and rep.compared == 0 and any(isinstance(p, NothingCompared) for p in rep.problems)

    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(toy_root))
    lb = tmp_path / "lb"
    (lb / "submissions").mkdir(parents=True)
    data = _copy(recorded)
    data["name"] = "mine"
    _write(lb / "submissions", data, "mine")
    capsys.readouterr()
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "mine", "--n-samples", "500"]) == 1
    out = capsys.readouterr()
    assert "1 of 1 entries reproduced" not in out.out and "nothing could be compared" in out.out
    assert "NothingCompared" in out.err
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "mine", "--quick"]) == 0
    assert "1 of 1 entries reproduced" in capsys.readouterr().out


# ------------------------------------------------------------------ 9: task keys and symlinks


def test_task_keys_must_be_task_names(recorded, toy_root, tmp_path):
    for key in ("../../../somewhere/task", "/etc/x", "a/b"):
        data = _copy(recorded)
        data["models"] = {key: data["models"]["toy"]}
        data["results"] = {key: data["results"]["toy"]}
        with pytest.raises(EntryPathError, match="not a task name"):
            parse_entry(data)
    data = _copy(recorded)
    data["models"] = {"nosuchtask": data["models"]["toy"]}
    data["results"] = {"nosuchtask": data["results"]["toy"]}
    problems = check_entry(load_entry(_write(tmp_path, data)), root=toy_root, tasks_root=toy_root)
    assert [type(p) for p in problems] == [EntryPathError] and "not a shipped task" in str(problems[0])


def test_plot_paths_cannot_leave_the_leaderboard():
    from cgbg_bench.leaderboard.render import plot_relpath

    with pytest.raises(EntryPathError):
        plot_relpath("../../../x", 1, "e", "0" * 64)
    assert plot_relpath("mueller-brown", 1, "e", "0" * 64) == "plots/mueller-brown-v1/e-000000000000.png"


def test_model_paths_through_symlinks_are_refused(recorded, toy_root, tmp_path):
    import shutil

    root = tmp_path / "repo"
    (root / "real").mkdir(parents=True)
    shutil.copy(toy_root / "exact.pt2", root / "real" / "exact.pt2")
    (root / "link.pt2").symlink_to(root / "real" / "exact.pt2")
    (root / "linkdir").symlink_to(root / "real")
    for rel in ("link.pt2", "linkdir/exact.pt2"):
        data = _copy(recorded)
        data["models"]["toy"]["path"] = rel
        entry = load_entry(_write(tmp_path, data))
        problems = check_entry(entry, root=root, tasks_root=toy_root)
        assert [type(p) for p in problems] == [EntryPathError] and "symlink" in str(problems[0])
        rep = reproduce_entry(entry, root=root, tasks_root=toy_root, device="cpu")
        assert not rep.ok and any(isinstance(p, EntryPathError) for p in rep.problems)
    data = _copy(recorded)
    data["models"]["toy"]["path"] = "real/exact.pt2"
    assert check_entry(load_entry(_write(tmp_path, data)), root=root, tasks_root=toy_root) == []


# ------------------------------------------------------------------ 10: info --verify hashes every file


def _toy_task_with_scores(tmp_path):
    from cgbg_bench._io import sha256_file
    from tests.conftest import write_toy_task

    tasks = tmp_path / "tasks"
    task_dir = write_toy_task(tasks, name="toy", n=2000)
    (task_dir / "baseline_scores.json").write_text(json.dumps({"baselines": {"exact": {"js": 0.001}}}))
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    data["baseline_scores"] = {"path": "baseline_scores.json", "sha256": sha256_file(task_dir / "baseline_scores.json")}
    (task_dir / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tasks, task_dir


def test_info_verify_hashes_baseline_scores_and_every_file(tmp_path, monkeypatch, capsys):
    from cgbg_bench.cli import main

    tasks, task_dir = _toy_task_with_scores(tmp_path)
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(tasks))
    assert main(["info", "toy", "--verify"]) == 0
    assert "baseline_scores.json" in capsys.readouterr().out
    scores = task_dir / "baseline_scores.json"
    good = scores.read_text()
    scores.write_text(good.replace("0.001", "0.0001"))  # an edited golden file
    assert main(["info", "toy", "--verify"]) == 2
    assert "baseline_scores.json" in capsys.readouterr().err
    from cgbg_bench.task import load_task

    with pytest.raises(HashMismatch, match="baseline_scores.json"):
        load_task("toy", root=tasks).verify_files()
    scores.write_text(good)
    (task_dir / "extra.npz").write_bytes(b"not recorded anywhere")
    assert main(["info", "toy", "--verify"]) == 2
    with pytest.raises(TaskFileUnlisted, match="extra.npz"):
        load_task("toy", root=tasks).verify_files()


def test_every_shipped_task_file_is_hashed():
    from cgbg_bench.task import list_tasks, load_task

    names = list_tasks()
    assert names
    for name in names:
        task = load_task(name)
        checked = {f.path.resolve() for _, f in task.verify_files()}
        on_disk = {p.resolve() for p in task.root.iterdir() if p.name != "task.yaml"}
        assert on_disk <= checked, f"{name}: files with no sha256 in task.yaml: {sorted(on_disk - checked)}"
        assert task.baseline_scores is None or task.baseline_scores.path.resolve() in checked


# ------------------------------------------------------------------ 11: Markdown escaping


HOSTILE = {
    "model_name": "<script>alert(1)</script>",
    "description": '<iframe src="https://evil.example"></iframe> see [here](javascript:alert(1)) | x',
    "authors": ("<img src=x onerror=alert(1)>", "**bold** _it_ `code`"),
    "license": "MIT\n# heading",
    "links": {"paper": None, "code": "https://x.org/a) [x](javascript:alert(1)"},
}


def test_markdown_escapes_every_entry_string(recorded, toy_root):
    import dataclasses

    from cgbg_bench.leaderboard.schema import Method

    entry = parse_entry(_copy(recorded))
    entry = dataclasses.replace(entry, model_version="1<b>", **HOSTILE,
                                method=Method(approach="<a href='javascript:x'>a</a>", architecture="![i](x)",
                                              training_data="none", n_parameters=1))
    md = render_markdown([entry], tasks_root=toy_root)
    for bad in ("<script", "<iframe", "<img", "<a href", "<b>", "**bold**", "\n# heading"):
        assert bad not in md, f"{bad!r} reached LEADERBOARD.md verbatim"
    for link in (r"(?<!\\)\]\(javascript", r"(?<!\\)\[here(?<!\\)\]", r"!(?<!\\)\[i"):  # unescaped links
        assert not re.search(link, md), f"a link {link!r} reached LEADERBOARD.md"
    assert "&lt;script&gt;" in md
    link = re.search(r"\[code\]\(([^)]*)\)", md)
    assert link and " " not in link.group(1) and link.group(1).startswith("https://x.org/a%29")
    # every table row keeps its column count: nothing breaks out of a cell
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            counts = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
            assert len(counts) == 1, block


def test_cli_maps_hostile_entries_to_exit_code_2_or_1(tmp_path, monkeypatch, capsys):
    """validate reports problems (exit 1); a broken entry named to reproduce is a typed error (exit 2)."""
    from cgbg_bench.cli import main

    lb = tmp_path / "lb"
    (lb / "submissions").mkdir(parents=True)
    (lb / "submissions" / "x.yaml").write_text(_bomb() + "name: *a6\n")
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(tmp_path))
    assert main(["leaderboard", "--dir", str(lb), "validate"]) == 1
    assert "aliases" in capsys.readouterr().err
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "x"]) == 2
    err = capsys.readouterr().err
    assert "aliases" in err and len(err) < 2000
    assert issubclass(ImpossibleResult, LeaderboardError) and issubclass(EntryPathError, CgbgError)
    assert repo_root().is_dir()


def test_unreliable_results_are_not_ranked_above_reliable_ones():
    """A result flagged by cgbg_bench.reliability follows the ranked rows, marked with its codes."""
    import dataclasses

    from cgbg_bench.leaderboard.render import render_markdown, result_flags, task_tables
    from cgbg_bench.leaderboard.schema import StoredMetric

    submissions = repo_root() / "leaderboard" / "submissions"
    entries = [e for e in (load_entry(p) for p in sorted(submissions.glob("*.yaml")))
               if "mueller-brown" in e.results][:2]
    good, bad = entries
    r = bad.results["mueller-brown"]
    low = dict(r.metrics)
    low["js"] = StoredMetric(value=r.metrics["js"].value / 10, error=r.metrics["js"].error)
    low["ess"] = StoredMetric(value=0.004, error=0.001)  # a unit mistake's ESS
    flagged = dataclasses.replace(r, metrics=low, reliability=("FORCE_SCALE",), pareto_k=1.3)
    bad = dataclasses.replace(bad, results={"mueller-brown": flagged},
                              models={"mueller-brown": bad.models["mueller-brown"]})
    assert result_flags(flagged) == ("FORCE_SCALE", "LOW_ESS", "JS_AT_FLOOR")
    table = next(t for t in task_tables([good, bad]) if t.task == "mueller-brown")
    assert [e.name for _, e, _ in table.rows] == [good.name, bad.name]  # better JS, still last
    assert table.rows[-1][0] == "unreliable (FORCE_SCALE, LOW_ESS, JS_AT_FLOOR)"
    assert "unreliable (FORCE\\_SCALE, LOW\\_ESS, JS\\_AT\\_FLOOR)" in render_markdown([good, bad])


def test_validate_names_the_tasks_an_entry_misses():
    import dataclasses

    from cgbg_bench.leaderboard.validate import missing_tasks
    from cgbg_bench.task import list_tasks

    submissions = repo_root() / "leaderboard" / "submissions"
    baseline = load_entry(next(iter(sorted(submissions.glob("*.yaml")))))
    assert missing_tasks(baseline) == []  # a baseline belongs to its own tasks
    mine = dataclasses.replace(baseline, kind="model")
    assert mine.is_baseline is False
    assert missing_tasks(mine) == sorted(set(list_tasks()) - set(baseline.results))


def test_deeply_nested_yaml_is_a_typed_error():
    from cgbg_bench._schema import load_yaml_text
    from cgbg_bench.errors import TaskSchemaError

    for text in ("[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * (2 * k) + "- \n" for k in range(1, 200))):
        with pytest.raises(TaskSchemaError, match="nested"):
            load_yaml_text(text, where="entry.yaml")
