"""The ``cgbg-bench`` command line: parse, dispatch, return an exit code.

Each subcommand lives in its own module with ``add_parser(subparsers)`` that
registers it and sets ``func(args) -> int``. Nothing runs at import time.

Typed errors (:mod:`cgbg_bench.errors`) end a command with exit code 2. The library's
messages name its parameters (``block_ps``); :func:`main` writes them as the flags of the
command that ran (``--block-ps``, see :func:`cgbg_bench.cli._args.param_flags`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Before anything imports torch: OpenMP threads that spin while waiting make every parallel
# region crawl when another process holds a core. Measured on a 2-core VM running MD: scoring
# a 10^6 ala2-core-beta bank took 91 s wall with torch's default 2 threads, 14.8 s with
# OMP_WAIT_POLICY=PASSIVE, 12.4 s with one thread. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["main", "entry_point", "build_parser"]

#: Subcommand modules, in the order ``--help`` lists them.
_COMMAND_MODULES = [
    "cgbg_bench.cli.tasks",
    "cgbg_bench.cli.md",
    "cgbg_bench.cli.evaluate",
    "cgbg_bench.cli.bank",
    "cgbg_bench.cli.compare",
    "cgbg_bench.cli.crosscheck",
    "cgbg_bench.cli.make",
    "cgbg_bench.cli.golden",
    "cgbg_bench.cli.leaderboard",
    "cgbg_bench.cli.train_pmf",
]
#: The module of each subcommand (tests/test_cli.py checks it against what the modules register).
COMMANDS = {
    "list": "cgbg_bench.cli.tasks", "info": "cgbg_bench.cli.tasks", "md": "cgbg_bench.cli.md",
    "evaluate": "cgbg_bench.cli.evaluate", "bank": "cgbg_bench.cli.bank", "compare": "cgbg_bench.cli.compare",
    "crosscheck": "cgbg_bench.cli.crosscheck", "make-task": "cgbg_bench.cli.make",
    "golden": "cgbg_bench.cli.golden", "leaderboard": "cgbg_bench.cli.leaderboard",
    "train-pmf": "cgbg_bench.cli.train_pmf",
}


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word after the global options), or None."""
    for word in argv:
        if word in ("-v", "--verbose"):
            continue
        return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``command``, only that subcommand's module is imported and
    registered (the parser :func:`main` uses when argv names one: a command does not import every
    other command's dependencies, e.g. the task tables and MD tools, before it starts)."""
    from cgbg_bench import __version__

    parser = argparse.ArgumentParser(
        prog="cgbg-bench",
        description="Simulation-free benchmark for coarse-grained potentials of mean force.",
    )
    parser.add_argument("--version", action="version", version=f"cgbg-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES if command is None else [COMMANDS[command]]:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cgbg_bench.errors import CgbgError, LeaderboardError, TaskError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CgbgError as exc:
        message = str(exc)
        if not isinstance(exc, (TaskError, LeaderboardError)):  # those name keys of a file, not parameters
            from cgbg_bench.cli._args import flags_for_params, param_flags

            message = flags_for_params(message, param_flags(parser, args))
        print(f"cgbg-bench: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2


def entry_point() -> None:
    sys.exit(main())
