"""data/rebuild-ala2-tasks.sh: argument checks and the pins it prints (dry runs only; no build)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "rebuild-ala2-tasks.sh"
RUNS = ("explicit-unbiased", "explicit-static", "explicit-static-2", "explicit-wtmetad", "obc1", "obc2")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _pins(command: str) -> dict[str, int]:
    return {d: int(n) for d, n in re.findall(r"--max-chunks (\S+)=(\d+)", command)}


@pytest.mark.parametrize("args, message", [
    (("x",), "VERSION must be a whole number"),
    (("8", "--only", "foo"), "expected core-beta or heavy-atom"),
    (("8", "--only"), "--only needs"),
    (("8", "--pins-from", "tasks/no-such-task"), "no task.yaml there"),
    (("8", "--pins-from", "tasks/mueller-brown", "--dry-run"), "no --max-chunks pins"),
    (("8", "--bogus"), "unknown argument --bogus"),
])
def test_bad_arguments_exit_2_with_the_reason(args, message):
    r = _run(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_pins_from_a_task_reproduce_its_reference_pins_for_one_representation():
    task = ROOT / "tasks" / "ala2-core-beta"
    meta = yaml.safe_load((task / "task.yaml").read_text())
    # the reference's pins; runs a reference-only refresh does not read (metadynamics) from the flow's
    want = {**_pins(meta["proposal"]["provenance"]["command"]), **_pins(meta["reference"]["provenance"]["command"])}
    assert set(want) == {f"data/ala2/{r}" for r in RUNS}
    r = _run("8", "--only", "heavy-atom", "--pins-from", str(task.relative_to(ROOT)), "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("cgbg-bench make-task")]
    assert len(lines) == 1
    assert "--representation heavy-atom" in lines[0] and "--fm-hidden 64 64" in lines[0]
    assert "--version 8" in lines[0]
    assert _pins(lines[0]) == want


def test_default_dry_run_pins_both_representations_to_one_snapshot():
    r = _run("9", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("cgbg-bench make-task")]
    assert [("core-beta" in ln, "heavy-atom" in ln) for ln in lines] == [(True, False), (False, True)]
    pins = [_pins(ln) for ln in lines]
    assert pins[0] == pins[1] and set(pins[0]) == {f"data/ala2/{r}" for r in RUNS}
    assert all(n >= 1 for n in pins[0].values())


def test_reference_only_dry_run_pins_the_reference_runs_and_reads_no_metadynamics():
    r = _run("9", "--reference-only", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("cgbg-bench make-task")]
    assert len(lines) == 1 and lines[0].endswith("--block-ps 200 --version 9 --reference-only")
    assert "--metad" not in lines[0] and "--fm-" not in lines[0]
    assert set(_pins(lines[0])) == {f"data/ala2/{r}" for r in RUNS if r != "explicit-wtmetad"}
    r = _run("9", "--reference-only", "--only", "core-beta", "--dry-run")
    assert r.stdout.strip().endswith("--reference-only --representation core-beta")


def test_dihedral_correction_from_version_11_only():
    """v11 on: the force-matched baselines get --fm-dihedral-correction 4; v10 keeps its command
    (an interrupted v10 build resumes only with the command it was started with)."""
    for version, expected in (("10", False), ("11", True)):
        r = _run(version, "--dry-run", "--pins-from", "tasks/ala2-core-beta")
        assert r.returncode == 0, r.stderr
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("cgbg-bench make-task")]
        assert len(lines) == 2
        assert all(("--fm-dihedral-correction 4" in ln) is expected for ln in lines)
