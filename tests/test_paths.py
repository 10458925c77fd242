"""cgbg_bench.paths: the repository root, tasks and cache folders and their environment variables."""

from __future__ import annotations

import re
from pathlib import Path

import cgbg_bench
from cgbg_bench import paths

PACKAGE = Path(cgbg_bench.__file__).resolve().parent


def test_defaults_without_the_environment(monkeypatch):
    for var in ("CGBG_BENCH_ROOT", "CGBG_BENCH_TASKS", "CGBG_BENCH_CACHE"):
        monkeypatch.delenv(var, raising=False)
    assert paths.repo_root() == paths.SOURCE_ROOT == PACKAGE.parent
    assert paths.tasks_dir() == PACKAGE.parent / "tasks"
    assert paths.cache_dir() == Path.home() / ".cache" / "cgbg-bench"


def test_each_variable_moves_its_folder_and_only_that(tmp_path, monkeypatch):
    for var in ("CGBG_BENCH_TASKS", "CGBG_BENCH_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(tmp_path / "checkout" / ".." / "checkout"))
    assert paths.repo_root() == (tmp_path / "checkout").resolve()  # resolved
    assert paths.tasks_dir() == PACKAGE.parent / "tasks"  # the shipped tasks stay
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(tmp_path / "tasks"))
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    assert paths.tasks_dir() == tmp_path / "tasks"
    assert paths.cache_dir() == tmp_path / "cache"


def test_the_old_names_are_the_same_functions(tmp_path, monkeypatch):
    from cgbg_bench import bank, task
    from cgbg_bench.leaderboard import paths as lb_paths
    from cgbg_bench.leaderboard import repo_root

    assert lb_paths.repo_root is paths.repo_root and repo_root is paths.repo_root
    assert task.tasks_root is paths.tasks_dir
    assert bank.cache_dir is paths.cache_dir
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(tmp_path))
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "task.yaml").write_text("name: t1\n")
    assert task.list_tasks() == ["t1"]


def test_the_docstrings_name_their_variables():
    assert "CGBG_BENCH_ROOT" in paths.repo_root.__doc__
    assert "CGBG_BENCH_TASKS" in paths.tasks_dir.__doc__
    assert "CGBG_BENCH_CACHE" in paths.cache_dir.__doc__


#: Files that still find the root on their own (owned by the task builders; to move to cgbg_bench.paths).
NOT_YET: set[str] = set()


def test_nothing_new_finds_the_repository_from_its_own_file():
    found = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if p.name != "paths.py" or p.parent != PACKAGE
             if re.search(r"__file__\)?\.(resolve\(\)\.)?parents?\b", p.read_text())}
    assert found <= NOT_YET, f"use cgbg_bench.paths in {sorted(found - NOT_YET)}"
