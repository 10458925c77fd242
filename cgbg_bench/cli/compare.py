"""``cgbg-bench compare``: several PMFs reweighted on one bank, phi profiles against MD.

    cgbg-bench compare my_pmf.pt2 baselines/ala2-core-beta/fm-biased.pt2 --task ala2-core-beta \
        --label mine fm-biased --plot phi.png
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["add_parser", "EXAMPLE", "labels_for"]

EXAMPLE = """\
example (a PMF of your own beside the task's force-matched baseline):

  cgbg-bench compare my_pmf.pt2 baselines/ala2-core-beta/fm-biased.pt2 \\
      --task ala2-core-beta --label mine fm-biased --plot phi.png

output: one table row per PMF (JS, PMF err, ESS: the scores of `cgbg-bench evaluate`),
then the implicit-solvent MD runs, the raw proposal bank and the MD reference.
P(phi > 0) is the population of phi > 0 with its bootstrap error. For a PMF it is a
value after the weighting step: the bank reweighted by that PMF with the task's weighting
(PSIS, or a percentile clip in task versions before it; as in the scores); for the proposal (raw) row,
the unweighted bank; for MD rows, the runs' histograms. --plot draws -ln p(phi) in kT
of every row on one set of axes. Scoring one PMF on a 10^6-sample bank takes 10-20 s on
2 CPU cores.
"""


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "compare", help="reweight one bank under several PMFs: scores, phi > 0 population, phi profiles",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulation-free comparison: every PMF is scored on the task's bank; the table adds\n"
                    "the population of phi > 0 with its bootstrap error beside the MD reference's (and the\n"
                    "implicit-solvent runs'), and --plot draws the free energy along phi.",
        epilog=EXAMPLE)
    p.add_argument("pmfs", nargs="+", metavar="PMF", help=".pt2 or TorchScript files")
    p.add_argument("--task", required=True)
    p.add_argument("--label", action="extend", nargs="+", default=None, metavar="NAME",
                   help="a name per PMF, in the order of the files: --label A B ... or --label A --label B "
                        "(default: the file stem)")
    p.add_argument("--plot", metavar="PATH", help="free energy along phi (png/pdf/svg)")
    p.add_argument("--n-bootstrap", type=int, default=None, help="default: the task's setting")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_run)


def labels_for(pmfs: list[str], given: list[str] | None) -> list[str]:
    """One label per PMF file: the ``--label`` names in order, else the file stems."""
    from cgbg_bench.errors import CgbgError

    labels = list(given) if given else [Path(p).stem for p in pmfs]
    if len(labels) != len(pmfs):
        raise CgbgError(f"{len(labels)} label(s) ({' '.join(labels)}) for {len(pmfs)} PMF file(s) "
                        f"({' '.join(pmfs)}): give one label per file, in the same order "
                        "(--label A B ... or --label A --label B)")
    if len(set(labels)) != len(labels):
        raise CgbgError(f"labels must differ, got {labels}; name them with --label")
    return labels


def _run(args) -> int:
    from cgbg_bench.compare import compare_pmfs, plot_phi_profiles
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.pmf import default_device
    from cgbg_bench.report import format_value_error
    from cgbg_bench.task import load_task

    labels = labels_for(args.pmfs, args.label)
    for p in args.pmfs:
        if not Path(p).is_file():
            raise CgbgError(f"{p}: no such file")
    task = load_task(args.task)
    comp = compare_pmfs(dict(zip(labels, args.pmfs)), task, device=args.device or default_device(),
                        n_bootstrap=args.n_bootstrap)
    ref = comp["reference"]
    rows = []
    for label, (result, prof) in comp["pmfs"].items():
        m = result.scores.metrics
        rows.append({"entry": label, **{k: [m[k].value, m[k].error] for k in ("js", "pmf_error", "ess") if k in m},
                     "phi_positive": [prof.phi_positive, prof.phi_positive_error]})
    for name, prof in comp["gb"].items():
        rows.append({"entry": f"{name} (MD)", "phi_positive": [prof.phi_positive, prof.phi_positive_error]})
    raw = comp["proposal"]
    rows.append({"entry": "proposal (raw)", "phi_positive": [raw.phi_positive, raw.phi_positive_error]})
    rows.append({"entry": "reference (MD)", "phi_positive": [ref.phi_positive, ref.phi_positive_error]})
    if args.json:
        print(json.dumps({"task": task.name, "task_version": task.version, "rows": rows}, indent=1))
    else:
        from tabulate import tabulate

        fmt = lambda r, k: format_value_error(*r[k]) if k in r else ""  # noqa: E731
        print(f"{task.name} v{task.version}: {len(task.load_proposal().log_q)} proposals, one bank for every PMF")
        print(tabulate([[r["entry"], fmt(r, "js"), fmt(r, "pmf_error"), fmt(r, "ess"), fmt(r, "phi_positive")]
                        for r in rows], headers=["entry", "JS", "PMF err", "ESS", "P(phi > 0)"], tablefmt="github"))
        print(f"P(phi > 0) of a PMF row: after the weighting step (the bank reweighted by that PMF, "
              f"{task.metrics.describe()}); proposal (raw): "
              "unweighted; MD rows: the runs' histograms.")
    if args.plot:
        plot_phi_profiles(comp, args.plot, title=f"{task.name} v{task.version}: free energy along phi")
        print(f"wrote {args.plot}")
    return 0
