"""`cgbg-bench make-task NAME`: regenerate a task family's shipped files from scratch."""

from __future__ import annotations

import importlib

_BUILDERS = {"mueller-brown": "cgbg_bench.build.mueller_brown"}


def add_parser(sub) -> None:
    p = sub.add_parser("make-task", help="regenerate a task family's data, proposal, reference and baselines")
    p.add_argument("family", choices=sorted(_BUILDERS), help="task family to rebuild")
    p.add_argument("--quick", action="store_true", help="tiny runs for testing the pipeline (not for shipping)")
    p.set_defaults(func=run)


def run(args) -> int:
    builder = importlib.import_module(_BUILDERS[args.family])
    for path in builder.build(quick=args.quick):
        print(f"built {path}")
    return 0
