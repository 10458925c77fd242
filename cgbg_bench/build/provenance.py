"""Provenance records for shipped files and task.yaml writing."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cgbg_bench import __version__
from cgbg_bench._io import atomic_write_text, sha256_file

__all__ = ["code_version", "provenance", "file_entry", "write_task_yaml"]


def code_version() -> str:
    """Package version plus the git commit of the checkout (with '-dirty' for local changes)."""
    from cgbg_bench.paths import SOURCE_ROOT

    root = SOURCE_ROOT
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{__version__}+g{commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return __version__


def provenance(command: str, seed: int | None, **extra: Any) -> dict[str, Any]:
    return {"command": command, "seed": seed, "code_version": code_version(),
            "created": _dt.date.today().isoformat(), **extra}


def file_entry(path: Path, task_dir: Path, prov: dict[str, Any]) -> dict[str, Any]:
    import os

    return {"path": os.path.relpath(path, task_dir), "sha256": sha256_file(path), "provenance": prov}


def write_task_yaml(task_dir: Path, data: dict[str, Any]) -> Path:
    path = task_dir / "task.yaml"
    from cgbg_bench._schema import NoAliasDumper  # task.yaml is read with anchors/aliases refused

    atomic_write_text(path, yaml.dump(data, Dumper=NoAliasDumper, sort_keys=False, default_flow_style=None,
                                      width=100))
    return path
