"""`cgbg-bench leaderboard validate|render|reproduce NAME|add-baselines`."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="validate, render and reproduce the leaderboard entries")
    p.add_argument("--dir", type=Path, default=None,
                   help="leaderboard folder (default: leaderboard/ in the repository)")
    lsub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)

    v = lsub.add_parser("validate", help="check every entry: schema, hashes, task versions, results present")
    v.set_defaults(func=run_validate)

    r = lsub.add_parser("render", help="write LEADERBOARD.md and index.html (ranks computed here)")
    r.add_argument("--no-plots", action="store_true", help="do not draw missing plots (no model is evaluated)")
    r.add_argument("--replot", action="store_true", help="redraw every plot")
    r.add_argument("--device", default="cpu", help="torch device for the plots' energies (default cpu)")
    r.set_defaults(func=run_render)

    rp = lsub.add_parser("reproduce", help="re-evaluate entries' in-repo models and compare with stored results")
    rp.add_argument("names", nargs="*", metavar="NAME", help="entry names (file names without .yaml)")
    rp.add_argument("--all", action="store_true", help="every entry")
    rp.add_argument("--task", action="append", default=None, help="only this task (repeatable)")
    rp.add_argument("--quick", action="store_true",
                    help="compare each PMF's quick check (its score on a small fixed bank, stored in the entry) "
                         "instead of the full result: what CI runs")
    rp.add_argument("--n-samples", type=int, default=None,
                    help="N equal to the entries' quick-check size (1000): as --quick; any other N below the "
                         "stored bank size is a smoke test that compares nothing (and fails as such)")
    rp.add_argument("--n-bootstrap", type=int, default=None,
                    help="bootstrap replicates (default: the stored count)")
    rp.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    rp.add_argument("--scheduler", metavar="local:N|ADDRESS", default=None,
                    help="reproduce the entries in parallel on a Dask cluster: local:N (N workers here) or a "
                         "scheduler address; same output as without (docs/scaling.md; needs "
                         "pip install 'cgbg-bench[dask]')")
    rp.set_defaults(func=run_reproduce)

    b = lsub.add_parser("add-baselines", help="write an entry per shipped baseline from the stored baseline "
                                              "scores (quick checks computed where missing or stale)")
    b.add_argument("--device", default="cpu", help="torch device for the quick checks (default cpu)")
    b.add_argument("--recompute-quick-checks", action="store_true",
                   help="recompute every quick check (default: keep those whose model and task are unchanged)")
    b.set_defaults(func=run_add_baselines)


def _dirs(args) -> tuple[Path, Path, Path]:
    from cgbg_bench.leaderboard.paths import leaderboard_dir, repo_root, submissions_dir

    root = repo_root()
    lb_dir = (args.dir or leaderboard_dir(root)).resolve()
    return root, lb_dir, submissions_dir(lb_dir)


def _report_problems(problems: dict) -> int:
    n = sum(len(v) for v in problems.values())
    for found in problems.values():
        for exc in found:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return n


def run_validate(args) -> int:
    from cgbg_bench.leaderboard.validate import validate_all

    root, _, submissions = _dirs(args)
    entries, problems = validate_all(submissions, root=root)
    n = _report_problems(problems)
    if not entries and not problems:
        print(f"no entries in {submissions}", file=sys.stderr)
        return 1
    if n:
        print(f"{n} problem(s) in {len(problems)} file(s)", file=sys.stderr)
        return 1
    from cgbg_bench.leaderboard.validate import missing_tasks

    for entry in entries:
        missing = missing_tasks(entry)
        if missing:
            print(f"note: {entry.name} has no results on {len(missing)} shipped task(s): {', '.join(missing)} "
                  f"(it is ranked only where it has results)")
    print(f"{len(entries)} entries valid ({submissions})")
    return 0


def run_render(args) -> int:
    from cgbg_bench.leaderboard.render import render
    from cgbg_bench.leaderboard.validate import validate_all

    root, lb_dir, submissions = _dirs(args)
    entries, problems = validate_all(submissions, root=root)
    if problems:
        _report_problems(problems)
        print("render refused: fix the entries first (`cgbg-bench leaderboard validate`)", file=sys.stderr)
        return 1
    for path in render(lb_dir, entries, root=root, plots=not args.no_plots, replot=args.replot):
        print(f"wrote {path}")
    from cgbg_bench.leaderboard.readme import update_readme  # the README's results tables
    if args.dir is None and update_readme(root / "README.md", root / "tasks"):
        print(f"wrote {root / 'README.md'}")
    return 0


def run_reproduce(args) -> int:
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.leaderboard.reproduce import reproduce_entries
    from cgbg_bench.leaderboard.schema import entry_paths

    root, _, submissions = _dirs(args)
    for name, value in (("--n-samples", args.n_samples), ("--n-bootstrap", args.n_bootstrap)):
        if value is not None and value < 1:
            raise CgbgError(f"{name} must be a positive integer, got {value}")
    scheduler = None
    if args.scheduler is not None:  # refused before any work
        from cgbg_bench.distributed import parse_scheduler, require_dask

        scheduler = parse_scheduler(args.scheduler, "--scheduler")
        require_dask()
    available = {p.stem: p for p in entry_paths(submissions)}
    names = sorted(available) if args.all else args.names
    if not names:
        print("name an entry, or give --all", file=sys.stderr)
        return 2
    known = [(i, name) for i, name in enumerate(names) if name in available]
    counts = {"failed": 0, "nothing": 0, "shown": 0}  # shown: names[:shown] are reported

    def report_unknown(upto: int) -> None:
        for name in names[counts["shown"]:upto]:
            close = difflib.get_close_matches(name, sorted(available), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            print(f"no entry {name!r} in {submissions}{hint}", file=sys.stderr)
            counts["failed"] += 1
        counts["shown"] = max(counts["shown"], upto)

    def report(k: int, rep) -> None:
        position, name = known[k]
        report_unknown(position)
        _print_reproduction(name, rep)
        counts["failed"] += not rep.ok
        counts["nothing"] += rep.compared == 0
        counts["shown"] = position + 1

    reproduce_entries([available[name] for _, name in known], root=root, scheduler=scheduler, on_result=report,
                      n_samples=args.n_samples, n_bootstrap=args.n_bootstrap, device=args.device,
                      tasks=args.task, quick=args.quick)
    report_unknown(len(names))
    failed, nothing = counts["failed"], counts["nothing"]
    summary = f"{len(names) - failed} of {len(names)} entries reproduced"
    if nothing:
        summary += f"; for {nothing} of them nothing could be compared (see the notes above)"
    print(summary)
    return 1 if failed else 0


def _print_reproduction(name: str, rep) -> None:
    from tabulate import tabulate

    print(f"== {name}")
    if rep.checks:
        print(tabulate([c.row() for c in rep.checks],
                       headers=["task", "metric", "stored", "reproduced", "shift / error", "status"],
                       tablefmt="github"))
    for note in rep.notes:
        print(f"note: {note}")
    for exc in rep.problems:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    for c in rep.moved:
        print(f"{name}: {c.task} {c.metric} moved beyond its error bar", file=sys.stderr)
    print(f"{name}: {rep.compared} stored value(s) compared")


def run_add_baselines(args) -> int:
    from cgbg_bench.leaderboard.baselines import add_baselines

    root, _, submissions = _dirs(args)
    written, removed = add_baselines(submissions, root, device=args.device,
                                     recompute_quick_checks=args.recompute_quick_checks)
    for p in written:
        print(f"wrote {p}")
    for p in removed:
        print(f"removed {p} (its baseline is no longer shipped)")
    print("now run `cgbg-bench leaderboard render`")
    return 0
