"""scripts/build-cache.sh: save, restore and clear in a scratch git repository (no build)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build-cache.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None,
                                reason="needs bash and git")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "baselines" / "t").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "scripts").mkdir(exist_ok=True)
    shutil.copy(SCRIPT, root / "scripts" / "build-cache.sh")
    (root / "pyproject.toml").write_text("")
    (root / "baselines" / "t" / "fm-a.pt2").write_text("old")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "old")
    return root


def _run(repo: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CGBG_BENCH_CACHE": str(cache)}
    return subprocess.run(["bash", "scripts/build-cache.sh", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)


def test_save_restore_and_refusals(repo, tmp_path):
    cache, fresh = tmp_path / "cache", tmp_path / "fresh"
    (cache / "fm-members").mkdir(parents=True)
    (cache / "fm-members" / "fm-member-x.pt").write_text("member")
    (repo / "baselines" / "t" / "fm-a.pt2").write_text("new")  # the build's uncommitted output
    r = _run(repo, cache, "save", "t")
    assert r.returncode == 0, r.stderr
    assert (repo / "data" / "build-cache" / "baselines" / "t" / "fm-a.pt2").read_text() == "new"
    time.sleep(1.1)  # commit times have one-second resolution
    _git(repo, "checkout", "-q", "--", "baselines")
    _git(repo, "add", "data/build-cache")
    _git(repo, "commit", "-q", "-m", "save")
    # next session: the committed old baseline is replaced, the member copied into the cache
    r = _run(repo, fresh, "restore")
    assert r.returncode == 0, r.stderr
    assert (repo / "baselines" / "t" / "fm-a.pt2").read_text() == "new"
    assert (fresh / "fm-members" / "fm-member-x.pt").read_text() == "member"
    # a differing member checkpoint: refused, and nothing else copied
    _git(repo, "checkout", "-q", "--", "baselines")
    (fresh / "fm-members" / "fm-member-x.pt").write_text("other")
    r = _run(repo, fresh, "restore")
    assert r.returncode != 0 and "refusing" in r.stderr
    assert (repo / "baselines" / "t" / "fm-a.pt2").read_text() == "old"
    (fresh / "fm-members" / "fm-member-x.pt").unlink()
    # uncommitted edits to a baseline: refused
    (repo / "baselines" / "t" / "fm-a.pt2").write_text("edited")
    r = _run(repo, fresh, "restore")
    assert r.returncode != 0 and "uncommitted" in r.stderr
    # the build landed after the save: refused, run clear instead
    time.sleep(1.1)
    (repo / "baselines" / "t" / "fm-a.pt2").write_text("landed")
    _git(repo, "commit", "-q", "-am", "landed")
    r = _run(repo, fresh, "restore")
    assert r.returncode != 0 and "committed after" in r.stderr
    assert (repo / "baselines" / "t" / "fm-a.pt2").read_text() == "landed"
    r = _run(repo, fresh, "clear")
    assert r.returncode == 0 and not (repo / "data" / "build-cache").exists()


def test_bad_usage(repo, tmp_path):
    assert _run(repo, tmp_path, "save").returncode == 2
    assert _run(repo, tmp_path, "bogus").returncode == 2
    assert _run(repo, tmp_path, "save", "no-such-task").returncode == 2
    assert _run(repo, tmp_path, "restore").returncode == 1  # nothing saved
