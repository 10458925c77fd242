"""Where the leaderboard lives: ``<repo>/leaderboard/{submissions,LEADERBOARD.md,index.html,plots}``.

Model paths in entries are relative to the repository root; :func:`model_file` resolves one
and refuses a path through a symlink or out of the repository (entries are untrusted).
"""

from __future__ import annotations

from pathlib import Path

from cgbg_bench._schema import short
from cgbg_bench.errors import EntryPathError
from cgbg_bench.paths import repo_root  # re-exported: one definition, in cgbg_bench.paths

__all__ = ["repo_root", "leaderboard_dir", "submissions_dir", "model_file", "MARKDOWN", "HTML", "PLOTS"]

MARKDOWN = "LEADERBOARD.md"
HTML = "index.html"
PLOTS = "plots"


def leaderboard_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "leaderboard"


def submissions_dir(lb_dir: Path) -> Path:
    return lb_dir / "submissions"


def model_file(root: Path, rel: str, where: str = "entry") -> Path:
    """``root / rel`` for an entry's model path, refusing symlinks and escapes.

    Every component below ``root`` must be a plain directory or file (not a symlink), and
    the resolved path must stay inside ``root``. A missing file is returned as is (the
    caller reports it as missing).
    """
    root = Path(root).resolve()
    rel_path = Path(rel)
    if rel_path.is_absolute() or ".." in rel_path.parts:
        raise EntryPathError(f"{where}: model path {short(rel)} must be relative to the repository root, "
                             "without '..'")
    current = root
    for part in rel_path.parts:
        current = current / part
        if current.is_symlink():
            raise EntryPathError(f"{where}: model path {short(rel)} goes through the symlink "
                                 f"{current.relative_to(root).as_posix()}; commit the file itself")
    if not current.resolve().is_relative_to(root):
        raise EntryPathError(f"{where}: model path {short(rel)} resolves outside the repository {root}")
    return current
