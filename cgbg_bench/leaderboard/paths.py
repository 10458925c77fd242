"""Where the leaderboard lives: ``<repo>/leaderboard/{submissions,LEADERBOARD.md,index.html,plots}``.

Model paths in entries are relative to the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "leaderboard_dir", "submissions_dir", "MARKDOWN", "HTML", "PLOTS"]

MARKDOWN = "LEADERBOARD.md"
HTML = "index.html"
PLOTS = "plots"


def repo_root() -> Path:
    """The repository root (``$CGBG_BENCH_ROOT`` overrides)."""
    env = os.environ.get("CGBG_BENCH_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def leaderboard_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "leaderboard"


def submissions_dir(lb_dir: Path) -> Path:
    return lb_dir / "submissions"
