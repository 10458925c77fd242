"""The leaderboard: every committed entry is valid, the rendered files are current, in-repo
models reproduce on a small bank, bad entries raise the right typed error, ties are ranked
within error bars, and the HTML page renders in a real headless browser."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
import yaml

from cgbg_bench.errors import (
    EntryFileMissing, EntryHashMismatch, EntryPathError, EntrySchemaError, LeaderboardError, MissingResults,
    StaleResults,
)
from cgbg_bench.leaderboard import (
    add_baselines, baseline_entries, check_entry, leaderboard_dir, load_entry, render_html, render_markdown,
    repo_root, reproduce_entry, submissions_dir, tied_ranks,
)
from cgbg_bench.leaderboard.paths import HTML, MARKDOWN
from cgbg_bench.leaderboard.schema import QUICK_N_SAMPLES, StoredMetric, entry_paths, parse_entry, write_entry
from cgbg_bench.leaderboard.validate import without_quick_checks

ROOT = repo_root()
LB_DIR = leaderboard_dir(ROOT)
ENTRY_PATHS = entry_paths(submissions_dir(LB_DIR))
RERENDER = "run `cgbg-bench leaderboard render` and commit the result"


@pytest.fixture(scope="module")
def shipped_baselines():
    return {e.name: e for e in baseline_entries(ROOT)}


@pytest.fixture(scope="module")
def entries():
    return [load_entry(p) for p in ENTRY_PATHS]


# ------------------------------------------------------------------ the committed leaderboard


def test_there_are_entries_for_every_shipped_baseline(shipped_baselines):
    names = {p.stem for p in ENTRY_PATHS}
    missing = sorted(set(shipped_baselines) - names)
    assert not missing, f"no entry for baselines {missing}: run `cgbg-bench leaderboard add-baselines`"


def test_baseline_results_keep_their_evaluations_flags_and_k_hat(shipped_baselines):
    """A baseline whose evaluation was flagged (e.g. PARETO_K: PMF_U's k-hat 0.93 on ala2-core-beta
    v12) carries the flag and its k-hat into the leaderboard, where it is then not ranked."""
    import json

    from cgbg_bench.leaderboard.render import result_flags
    from cgbg_bench.task import list_tasks, load_task

    flagged = 0
    for task_name in list_tasks():
        scores = json.loads(load_task(task_name).baseline_scores.verify().read_text())["baselines"]
        for e in shipped_baselines.values():
            r = e.results.get(task_name)
            if r is None or e.model_name not in scores:
                continue
            stored = scores[e.model_name]
            assert r.reliability == tuple(f["code"] for f in stored.get("reliability") or [])
            k = stored.get("pareto_k")
            assert r.pareto_k == (None if k is None else pytest.approx(k, abs=1e-4))
            flagged += bool(r.reliability)
            assert set(r.reliability) <= set(result_flags(r))
    assert flagged  # the shipped tasks have flagged baselines (PMF_U's k-hat, prior-only's ESS)


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=[p.stem for p in ENTRY_PATHS])
def test_entry_validates(path, shipped_baselines):
    problems = check_entry(load_entry(path), root=ROOT, baselines=shipped_baselines)
    assert not problems, "\n".join(f"{type(p).__name__}: {p}" for p in problems)


def test_rendered_files_are_current(entries):
    assert (LB_DIR / MARKDOWN).read_text() == render_markdown(entries), f"{MARKDOWN} is stale: {RERENDER}"
    assert (LB_DIR / HTML).read_text() == render_html(entries, lb_dir=LB_DIR), f"{HTML} is stale: {RERENDER}"


def test_two_in_repo_entries_reproduce_on_a_small_bank(entries):
    """The fast part of the check below (marked slow): the quick checks of one Mueller-Brown and
    one alanine entry, each on every task it has results for."""
    names = {"baseline-mueller-brown-fm-biased", "baseline-ala2-core-beta-fm-biased"}
    chosen = [e for e in entries if e.name in names]
    assert len(chosen) == len(names)
    for entry in chosen:
        rep = reproduce_entry(entry, root=ROOT, quick=True, device="cpu")
        assert rep.ok, f"{entry.name}: {[str(p) for p in rep.problems]} moved: {rep.moved}"
        assert rep.compared > 0 and any(c.n_samples == QUICK_N_SAMPLES for c in rep.checks)


@pytest.mark.slow
def test_in_repo_entries_reproduce_on_a_small_bank(entries):
    """The CI check: hashes, task versions, loading, contract, and each PMF's quick check (its
    stored score on the small fixed bank) recomputed and compared within its error bar."""
    checked = 0
    for entry in entries:
        rep = reproduce_entry(entry, root=ROOT, quick=True, device="cpu")
        assert rep.ok, f"{entry.name}: {[str(p) for p in rep.problems]} moved: {rep.moved}"
        assert rep.compared > 0
        checked += sum(c.n_samples == QUICK_N_SAMPLES for c in rep.checks)
    assert checked > 0


def test_cheapest_in_repo_entry_reproduces_its_stored_values(entries):
    """Full comparison (stored bank size and seed) for the force-matched baseline: fast, and it
    catches a metric definition that changed without the stored scores being rebuilt."""
    entry = next(e for e in entries if e.name == "baseline-mueller-brown-fm-unbiased")
    rep = reproduce_entry(entry, root=ROOT, n_bootstrap=100, device="cpu", tasks=["mueller-brown"])
    assert rep.checks and all(c.compared for c in rep.checks)
    assert rep.ok, "moved beyond the error bar: " + ", ".join(
        f"{c.metric} {c.stored} -> {c.reproduced}" for c in rep.moved)


def test_html_page_in_headless_chromium(tmp_path, entries):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (LB_DIR / HTML).resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    tasks = sorted({t for e in entries for t in e.results})
    assert tasks
    for task in tasks:
        table = re.search(rf'<table class="leaderboard" id="table-{re.escape(task)}">(.*?)</table>', dom, re.S)
        assert table, f"no table for task {task} in the page chromium rendered"
        n_rows = len(re.findall(r"<tr", table.group(1))) - 1  # minus the header row
        assert n_rows == sum(task in e.results for e in entries)
        assert "JS floor" in table.group(1) and "(baseline)" in table.group(1)
    assert 'id="overview"' in dom and 'id="entries"' in dom
    for src in re.findall(r'<img src="([^"]+)"', dom):
        assert (LB_DIR / src).is_file(), f"the page shows a missing plot {src}"


# ------------------------------------------------------------------ ranking


def test_tied_ranks_on_hand_made_numbers():
    values = [0.0125, 0.010, float("nan"), 0.011, 0.020]
    errors = [0.001, 0.001, 0.001, 0.001, 0.001]
    order, labels = tied_ranks(values, errors)
    assert order == [1, 3, 0, 4, 2]
    # 0.011 is within sqrt(2) * 0.001 of the leader 0.010: tie; 0.0125 is not: competition rank 3
    assert labels == ["3", "=1", "-", "=1", "4"]
    # a chain of small steps does not tie everything: 1.2 is compared with the leader 1.0
    assert tied_ranks([1.0, 1.1, 1.2], [0.08, 0.08, 0.08])[1] == ["=1", "=1", "3"]
    assert tied_ranks([0.3, 0.1, 0.2], [0.0, 0.0, 0.0])[1] == ["3", "1", "2"]


def test_render_shows_ties_and_marks_baselines(toy_entry, toy_root):
    def variant(name, js, err, kind="submission"):
        r = toy_entry.results["toy"]
        metrics = {**r.metrics, "js": StoredMetric(js, err)}
        return dataclasses.replace(toy_entry, name=name, model_name=name, kind=kind,
                                   results={"toy": dataclasses.replace(r, metrics=metrics)})

    entries = [variant("c", 0.0125, 0.001), variant("a", 0.010, 0.001, kind="baseline"), variant("b", 0.011, 0.001)]
    entries[0] = dataclasses.replace(entries[0], links={"paper": None, "code": "https://x.org/c?a=1&b=2"})
    md = render_markdown(entries, tasks_root=toy_root)
    page = render_html(entries, tasks_root=toy_root)
    assert "[code](https://x.org/c?a=1&b=2)" in md and '<a href="https://x.org/c?a=1&amp;b=2">code</a>' in page
    assert '<tr class="baseline"><td>=1</td><td>a (baseline)</td>' in page
    assert "## toy (task version 3; noise floor JS" in md
    rows = [line for line in md.splitlines() if line.startswith(("| =1 ", "| 3 "))]
    assert [r.split(" | ")[:2] for r in rows] == [["| =1", "a (baseline)"], ["| =1", "b v1.0"], ["| 3", "c v1.0"]]


# ------------------------------------------------------------------ bad entries (a tmp repository)


@pytest.fixture
def toy_entry(toy_recorded):
    return parse_entry(toy_recorded[1])


def _problems(data, toy_root, tmp_path, name="toy-pmf"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    entry = load_entry(path)
    return check_entry(entry, root=toy_root, tasks_root=toy_root)


def test_recorded_entry_is_valid_once_filled_in(toy_recorded, toy_root, tmp_path):
    fresh, data = toy_recorded
    assert fresh.models["toy"].path == "exact.pt2" and fresh.results["toy"].n_samples == 20000
    assert set(fresh.results["toy"].metrics) == {"js", "pmf_error", "fe_rmse", "ess", "js_floor", "js_clip99"}
    todo = check_entry(fresh, root=toy_root, tasks_root=toy_root)
    assert todo and all(isinstance(p, EntrySchemaError) and "TODO" in str(p) for p in todo)
    assert _problems(data, toy_root, tmp_path) == []


@pytest.mark.parametrize("key, where, hint", [
    ("modle", None, "did you mean 'model'"),
    ("jss", "metrics", "did you mean 'js'"),
    ("n_paramters", "method", "did you mean 'n_parameters'"),
])
def test_unknown_key_is_an_error_with_a_hint(toy_recorded, key, where, hint):
    data = yaml.safe_load(yaml.safe_dump(toy_recorded[1]))
    target = {None: data, "metrics": data["results"]["toy"]["metrics"], "method": data["method"]}[where]
    target[key] = 1
    with pytest.raises(EntrySchemaError, match=re.escape(f"unknown key {key!r}; {hint}")):
        parse_entry(data)


def test_bad_entries_give_typed_errors(toy_recorded, toy_root, tmp_path):
    good = toy_recorded[1]

    def mutated(fn):
        data = yaml.safe_load(yaml.safe_dump(good))
        fn(data)
        return data

    def kinds(data, **kw):
        return {type(p) for p in _problems(data, toy_root, tmp_path, **kw)}

    # wrong hash: another file under the recorded sha256
    assert kinds(mutated(lambda d: d["models"]["toy"].update(path="shifted.pt2"))) == {EntryHashMismatch}
    # results computed from another file than the one listed
    assert kinds(mutated(lambda d: d["results"]["toy"].update(model_sha256="0" * 64))) == {EntryHashMismatch}
    # stale task version
    problems = _problems(mutated(lambda d: d["results"]["toy"].update(task_version=2)), toy_root, tmp_path)
    assert [type(p) for p in problems] == [StaleResults] and "task version 2, the task is version 3" in str(problems[0])
    # same version, other task data or settings (a bank rebuilt without a version bump)
    problems = _problems(mutated(lambda d: d["results"]["toy"].update(task_fingerprint="1" * 64)), toy_root, tmp_path)
    assert [type(p) for p in problems] == [StaleResults] and "other task data or settings" in str(problems[0])
    # missing results
    assert kinds(mutated(lambda d: d.update(results={}))) == {MissingResults}
    # model file not in the repository
    assert kinds(mutated(lambda d: d["models"]["toy"].update(path="gone.pt2"))) == {EntryFileMissing}
    # a task that is not shipped
    assert EntryPathError in kinds(mutated(lambda d: d.update(models={"toyy": d["models"]["toy"]},
                                                            results={"toyy": d["results"]["toy"]})))
    # a baseline entry that no shipped baseline generates
    assert kinds(mutated(lambda d: d.update(kind="baseline"))) == {StaleResults}
    # schema errors at load time
    for fn, pattern in [
        (lambda d: d["results"]["toy"]["metrics"].pop("js_floor"), r"missing required key\(s\) \['js_floor'\]"),
        (lambda d: d["models"]["toy"].update(sha256="abc"), "64 lowercase hex"),
        (lambda d: d["models"]["toy"].update(url="https://x.org/m.pt2"), "exactly one of 'path'"),
        (lambda d: d["method"].update(training_data="unbiassed"), "not one of"),
        (lambda d: d["links"].update(code="javascript:alert(1)"), "not an http"),
        (lambda d: d["results"]["toy"]["metrics"]["js"].update(value=float("nan")), "finite"),
    ]:
        with pytest.raises(EntrySchemaError, match=pattern):
            parse_entry(mutated(fn))
    with pytest.raises(EntrySchemaError, match="differs from the file name"):
        _problems(good, toy_root, tmp_path, name="other-name")


# ------------------------------------------------------------------ commands


def test_cli_record_validate_render_reproduce(toy_root, tmp_path, monkeypatch, capsys):
    from cgbg_bench.cli import main

    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(toy_root))
    lb = tmp_path / "lb"
    entry = lb / "submissions" / "mine.yaml"
    entry.parent.mkdir(parents=True)  # --record refuses a missing folder before any work
    # a partial bank cannot be recorded; refused before any evaluation
    assert main(["evaluate", str(toy_root / "exact.pt2"), "--task", "toy", "--n-samples", "100",
                 "--record", str(entry)]) == 2
    assert "whole bank" in capsys.readouterr().err and not entry.exists()
    assert main(["evaluate", str(toy_root / "shifted.pt2"), "--task", "toy", "--record", str(entry)]) == 0
    assert load_entry(entry).models["toy"].path == "shifted.pt2"
    # recording again replaces this task's model and results
    assert main(["evaluate", str(toy_root / "exact.pt2"), "--task", "toy", "--record", str(entry)]) == 0
    recorded = load_entry(entry)
    assert recorded.models["toy"].path == "exact.pt2" and recorded.results["toy"].metrics["js"].value < 0.01
    capsys.readouterr()
    assert main(["leaderboard", "--dir", str(lb), "validate"]) == 1
    err = capsys.readouterr().err
    assert "EntrySchemaError" in err and "authors[0] is still a TODO placeholder" in err
    data = yaml.safe_load(entry.read_text())
    data.update(authors=["A. Person"], description="d", license="MIT", model={"name": "mine", "version": "2"},
                method={"approach": "analytic", "training_data": "none"})
    entry.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["leaderboard", "--dir", str(lb), "validate"]) == 0
    assert main(["leaderboard", "--dir", str(lb), "render", "--no-plots"]) == 0
    assert "| 1 | mine v2 |" in (lb / MARKDOWN).read_text()
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "mine"]) == 0
    assert "| ok " in capsys.readouterr().out
    # a metric nudged beyond its error bar is reported, with a non-zero exit
    data["results"]["toy"]["metrics"]["js"]["value"] += 3 * data["results"]["toy"]["metrics"]["js"]["error"]
    entry.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "mine"]) == 1
    assert "toy js moved beyond its error bar" in capsys.readouterr().err
    assert main(["leaderboard", "--dir", str(lb), "reproduce", "mien"]) == 1
    assert "did you mean mine" in capsys.readouterr().err


def test_add_baselines_writes_entries_and_removes_only_stale_baselines(tmp_path, shipped_baselines):
    sub = tmp_path / "submissions"
    sub.mkdir()
    someone = next(iter(shipped_baselines.values()))
    write_entry(dataclasses.replace(someone, name="baseline-gone"), sub / "baseline-gone.yaml")
    write_entry(dataclasses.replace(someone, name="baseline-user-kept", kind="submission"),
                sub / "baseline-user-kept.yaml")
    written, removed = add_baselines(sub, ROOT, reuse_from=submissions_dir(LB_DIR))  # quick checks kept
    assert {p.stem for p in written} == set(shipped_baselines)
    assert [p.name for p in removed] == ["baseline-gone.yaml"]
    assert (sub / "baseline-user-kept.yaml").is_file()
    for p in written:
        assert without_quick_checks(load_entry(p)) == shipped_baselines[p.stem]
        assert (submissions_dir(LB_DIR) / p.name).read_text() == p.read_text(), \
            f"{p.name} is stale: run `cgbg-bench leaderboard add-baselines`"


def test_record_refuses_baseline_entries_and_bad_names(toy_root, tmp_path, shipped_baselines):
    from cgbg_bench.leaderboard import check_record
    from cgbg_bench.task import load_task

    task = load_task("toy", root=toy_root)
    b = next(iter(shipped_baselines.values()))
    path = write_entry(b, tmp_path / f"{b.name}.yaml")
    with pytest.raises(LeaderboardError, match="baseline entry"):
        check_record(path, task, n_samples=None, n_bootstrap=None)
    with pytest.raises(LeaderboardError, match="replicates"):
        check_record(tmp_path / "x.yaml", task, n_samples=None, n_bootstrap=7)
    with pytest.raises(EntrySchemaError, match=r"\.yaml"):
        check_record(tmp_path / "x.json", task, n_samples=None, n_bootstrap=None)


def test_md_histogram_baselines_have_no_ess_and_reproduce(tmp_path):
    """The alanine tasks' GB reference rows are MD histograms, not PMFs: built, rendered with a
    dash for ESS, validated and reproduced through the same path (on the harmonic toy)."""
    import numpy as np

    from cgbg_bench._io import sha256_file
    from cgbg_bench.build.scores import rescore_baselines
    from tests.conftest import BINS, HI, LO, write_toy_task

    tasks = tmp_path / "tasks"
    rng = np.random.default_rng(1)
    hist = np.stack([np.histogram(rng.normal(size=2000), bins=BINS, range=(LO, HI))[0] for _ in range(10)])
    (tmp_path / "baselines").mkdir()
    np.savez(tmp_path / "baselines" / "md.npz", block_hist=hist[:, None, :].astype(np.float64))

    task_dir = write_toy_task(tasks, name="toy", n_bootstrap=20)
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    data["baselines"].append({"name": "gb", "kind": "md-histogram", "path": "../../baselines/md.npz",
                              "sha256": sha256_file(tmp_path / "baselines" / "md.npz"),
                              "description": "implicit-solvent MD histogram"})
    (task_dir / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    rescore_baselines(task_dir, command="test")
    sub = tmp_path / "leaderboard" / "submissions"
    written, _ = add_baselines(sub, tmp_path, tasks)
    gb = load_entry(sub / "baseline-baselines-gb.yaml")
    assert gb.models["toy"].format == "md-histogram" and "ess" not in gb.results["toy"].metrics
    assert gb.method.approach.startswith("MD histogram")
    for p in written:
        assert check_entry(load_entry(p), root=tmp_path, tasks_root=tasks,
                           baselines={e.name: e for e in baseline_entries(tmp_path, tasks)}) == []
    md = render_markdown([load_entry(p) for p in written], tasks_root=tasks)
    gb_row = next(line for line in md.splitlines() if re.match(r"\| =?\d \| gb \(baseline\) \|", line))
    assert gb_row.split(" | ")[5] == "-"  # rank, entry, JS, PMF err, FE RMSE, ESS
    rep = reproduce_entry(gb, root=tmp_path, tasks_root=tasks, device="cpu")
    assert rep.ok and rep.checks and all(c.compared for c in rep.checks)
