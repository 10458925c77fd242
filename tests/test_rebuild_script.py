"""scripts/rebuild-ala2-tasks.sh: argument checks and the make-task --recipe lines it prints (dry runs
only; no build)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cgbg_bench.build.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "rebuild-ala2-tasks.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _lines(r: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in r.stdout.splitlines() if ln.startswith("cgbg-bench make-task")]


def _recipe_of(line: str):
    """The recipe make-task builds from a printed line (parsed here, in the test only)."""
    from cgbg_bench.cli.make import add_parser, recipe_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return recipe_from_args(parser.parse_args(shlex.split(line)[1:]))


@pytest.mark.parametrize("args, message", [
    (("x",), "VERSION must be a whole number"),
    (("8", "--only", "foo"), "expected core-beta or heavy-atom"),
    (("8", "--only"), "--only needs"),
    (("8", "--pins-from", "tasks/no-such-task"), "no task.yaml there"),
    (("8", "--pins-from", "tasks/mueller-brown", "--dry-run"), "no recipe recorded"),
    (("8", "--bogus"), "unknown argument --bogus"),
])
def test_bad_arguments_exit_2_with_the_reason(args, message):
    r = _run(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_pins_from_a_task_build_the_other_tasks_recipe_on_its_pins():
    pins = load_recipe(ROOT / "tasks" / "ala2-core-beta" / "task.yaml").pins()
    r = _run("8", "--only", "heavy-atom", "--pins-from", "tasks/ala2-core-beta", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = _lines(r)
    assert len(lines) == 1 and "--recipe tasks/ala2-heavy-atom/task.yaml" in lines[0]
    heavy = load_recipe(ROOT / "tasks" / "ala2-heavy-atom" / "task.yaml")
    assert _recipe_of(lines[0]) == dataclasses.replace(heavy, version=8).with_pins(pins)
    assert _recipe_of(lines[0]).fm.hidden == (64, 64)  # the heavy-atom recipe's own settings


def test_default_dry_run_pins_both_representations_to_one_snapshot():
    r = _run("9", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = _lines(r)
    assert [("core-beta" in ln, "heavy-atom" in ln) for ln in lines] == [(True, False), (False, True)]
    recipes = [_recipe_of(ln) for ln in lines]
    assert recipes[0].pins() == recipes[1].pins() and all(r.version == 9 for r in recipes)
    shipped = load_recipe(ROOT / "tasks" / "ala2-core-beta" / "task.yaml").pins()
    assert set(recipes[0].pins()) == set(shipped)
    assert all(recipes[0].pins()[d] >= n for d, n in shipped.items())  # runs only grow


def test_reference_only_dry_run():
    r = _run("9", "--reference-only", "--dry-run", "--pins-from", "tasks/ala2-core-beta")
    assert r.returncode == 0, r.stderr
    lines = _lines(r)
    assert len(lines) == 1
    assert lines[0].endswith("--version 9 --reference-only --representation core-beta --representation heavy-atom")
    assert "--fm-" not in lines[0] and "--metad" not in lines[0]
    r = _run("9", "--reference-only", "--only", "core-beta", "--dry-run", "--pins-from", "tasks/ala2-core-beta")
    assert r.stdout.strip().endswith("--reference-only --representation core-beta")
