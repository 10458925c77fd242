"""Argument parsing and checks shared by several subcommands."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Mapping

from cgbg_bench.errors import CgbgError, DeviceError, OutputPathError

__all__ = ["check_device", "check_output_path", "parse_max_chunks", "plot_suffixes", "param_flags",
           "flags_for_params", "LIBRARY_NAMES"]

#: Library parameter names that differ from the dest of the flag that sets them (parameter -> dest).
LIBRARY_NAMES = {"out_dir": "out", "timeout_s": "timeout", "memory_gb": "memory_limit", "reference_dirs": "reference",
                 "check_dirs": "check", "n_shards": "shards"}


def parse_max_chunks(items: list[str]) -> dict[str, int]:
    """``["DIR=N", ...]`` -> {normalized DIR: N}; a malformed item raises CgbgError naming it."""
    out: dict[str, int] = {}
    for item in items:
        path, sep, n = item.rpartition("=")
        if not sep or not path or not (n.isascii() and n.isdigit()):
            raise CgbgError(f"--max-chunks {item!r}: expected DIR=N, e.g. data/ala2/explicit-unbiased=9")
        out[str(Path(path))] = int(n)
    return out


def check_device(value: str | None, flag: str = "--device") -> str | None:
    """Refuse a torch device that does not exist or is not available here (DeviceError naming ``flag``).

    None (the default device) passes. Checked before any work, so that a typo is not reported
    later as a damaged model file.
    """
    if value is None:
        return None
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeviceError(f"{flag} {value!r} is not a torch device ({first}); use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return value
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "torch sees no CUDA GPU on this machine")
            raise DeviceError(f"{flag} {value}: {why} (torch {torch.__version__}); use {flag} cpu, "
                              "or leave it out to use a GPU when there is one")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{flag} {value}: this machine has {count} CUDA device(s), numbered 0 to {count - 1}")
        return value
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"{flag} {value}: the Apple MPS backend is not available here; use {flag} cpu")
        return value
    raise DeviceError(f"{flag} {value}: device type {dev.type!r} is not supported by cgbg-bench; use cpu or cuda")


def plot_suffixes() -> list[str]:
    """File suffixes matplotlib can write (".png", ".pdf", ".svg", ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted("." + s for s in FigureCanvasBase.get_supported_filetypes())


def check_output_path(path: str | os.PathLike, flag: str, suffixes: list[str] | None = None) -> Path:
    """Refuse, before any work, an output path that cannot be written (OutputPathError naming ``flag``).

    The path must not be a directory, its folder must exist and be writable, and with
    ``suffixes`` its suffix (lower case) must be one of them; an empty suffix is allowed
    when ``""`` is listed.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{flag} {path} is a directory; give a file name in it, e.g. "
                              f"{p / ('result' + (suffixes[0] if suffixes else '.json'))}")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        shown = ", ".join(s for s in suffixes if s)
        raise OutputPathError(f"{flag} {path}: unsupported file type {p.suffix or '(no suffix)'!r}; use one of {shown}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(f"{flag} {path}: the folder {parent} does not exist; create it first "
                              f"(mkdir -p {parent})")
    if not parent.is_dir():
        raise OutputPathError(f"{flag} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: the folder {parent} is not writable; choose another path")
    return p


def param_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Library parameter name -> flag, for the (sub)command that ``args`` ran.

    Every ``--flag`` of that command whose dest is a snake_case name (``block_ps`` ->
    ``--block-ps``), plus :data:`LIBRARY_NAMES` whose dest the command has (``out_dir`` ->
    ``--out``). One-word dests (``system``, ``data``) are left out: as words of a message they
    are too often not the parameter.
    """
    by_dest: dict[str, str] = {}
    p: argparse.ArgumentParser | None = parser
    while p is not None:
        chosen = None
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(args, action.dest, None) if action.dest != argparse.SUPPRESS else None
                chosen = action.choices.get(name) if name else None
                continue
            long = [o for o in action.option_strings if o.startswith("--")]
            if long:
                by_dest[action.dest] = max(long, key=len)
        p = chosen
    out = {dest: flag for dest, flag in by_dest.items() if "_" in dest}
    out.update({param: by_dest[dest] for param, dest in LIBRARY_NAMES.items() if dest in by_dest})
    return out


def flags_for_params(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with every parameter name of ``flags`` as a whole word written as its flag.

    A name inside a longer name, a dotted name (``metrics.n_bootstrap``), a path or a flag
    stays as it is.
    """
    if not flags:
        return message
    names = "|".join(re.escape(n) for n in sorted(flags, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./-])({names})(?![\w/-]|\.\w)")
    return pattern.sub(lambda m: flags[m.group(1)], message)
