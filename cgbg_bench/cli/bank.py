"""``cgbg-bench bank export``: a task's bank, for energies computed outside cgbg-bench."""

from __future__ import annotations

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bank", help="the proposal bank of a task (export for energies submissions)")
    sub = p.add_subparsers(dest="bank_command", metavar="BANK_COMMAND")
    e = sub.add_parser(
        "export", help="write a task's bank positions (nm, float32) with its fingerprint",
        description="Write the task's proposal bank (positions in nm, float32, bank order) with its "
                    "fingerprint, task name, version and units to an .npz file. Compute one energy per "
                    "sample in the task's energy unit and save them with `energies` and the same "
                    "`fingerprint` and `energy_unit`; score them with `cgbg-bench evaluate FILE.npz --task TASK`.")
    e.add_argument("task", metavar="TASK")
    e.add_argument("--out", required=True, metavar="PATH", help="output .npz file")
    e.add_argument("--n-samples", type=int, default=None,
                   help="only the first N samples (quick checks; score with the same --n-samples)")
    e.set_defaults(func=_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _export(args) -> int:
    from cgbg_bench.energies import export_bank
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.task import load_task

    if args.n_samples is not None and args.n_samples < 1:
        raise CgbgError(f"--n-samples must be >= 1, got {args.n_samples}")
    task = load_task(args.task)
    out = export_bank(task, args.out, n_samples=args.n_samples)
    print(f"wrote {out}: task {task.name} v{task.version}, positions in nm, energies expected in "
          f"{task.energy_unit}")
    return 0
