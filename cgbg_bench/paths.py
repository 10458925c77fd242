"""Where cgbg-bench finds the repository, the shipped tasks and its cache.

Three environment variables move them; each function below reads its variable on every call
(so a test or a user can set it at any time):

- ``CGBG_BENCH_ROOT``: the repository checkout (``data/``, ``leaderboard/``, ``baselines/``).
- ``CGBG_BENCH_TASKS``: the folder of task folders.
- ``CGBG_BENCH_CACHE``: generated banks and other rebuildable files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SOURCE_ROOT", "repo_root", "tasks_dir", "cache_dir"]

#: The checkout this package was imported from (``cgbg_bench/..``), whatever the environment says.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def repo_root() -> Path:
    """The repository root: ``$CGBG_BENCH_ROOT`` (resolved) when set, else :data:`SOURCE_ROOT`.

    Set ``CGBG_BENCH_ROOT`` to use another checkout's ``data/`` runs and ``leaderboard/`` (for
    example when the package is installed from a different tree).
    """
    env = os.environ.get("CGBG_BENCH_ROOT")
    return Path(env).resolve() if env else SOURCE_ROOT


def tasks_dir() -> Path:
    """The folder holding one sub-folder per task: ``$CGBG_BENCH_TASKS`` when set, else
    ``tasks/`` of :data:`SOURCE_ROOT`.

    ``CGBG_BENCH_TASKS`` is independent of ``CGBG_BENCH_ROOT``: moving the repository root
    (for its data or leaderboard) keeps the shipped tasks; set both to move both.
    """
    env = os.environ.get("CGBG_BENCH_TASKS")
    return Path(env) if env else SOURCE_ROOT / "tasks"


def cache_dir() -> Path:
    """The cache folder: ``$CGBG_BENCH_CACHE`` when set, else ``~/.cache/cgbg-bench``.

    Everything in it can be rebuilt (generated proposal banks, checkpoints of a task build);
    deleting it costs time, not results.
    """
    env = os.environ.get("CGBG_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cgbg-bench"
