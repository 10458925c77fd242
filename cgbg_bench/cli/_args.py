"""Argument parsing shared by several subcommands."""

from __future__ import annotations

from pathlib import Path

from cgbg_bench.errors import CgbgError

__all__ = ["parse_max_chunks"]


def parse_max_chunks(items: list[str]) -> dict[str, int]:
    """``["DIR=N", ...]`` -> {normalized DIR: N}; a malformed item raises CgbgError naming it."""
    out: dict[str, int] = {}
    for item in items:
        path, sep, n = item.rpartition("=")
        if not sep or not path or not (n.isascii() and n.isdigit()):
            raise CgbgError(f"--max-chunks {item!r}: expected DIR=N, e.g. data/ala2/explicit-unbiased=9")
        out[str(Path(path))] = int(n)
    return out
