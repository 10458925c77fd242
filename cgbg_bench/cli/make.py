"""`cgbg-bench make-task FAMILY`: regenerate a task family's shipped files from scratch.

    cgbg-bench make-task mueller-brown
    cgbg-bench make-task ala2 --unbiased DIR... --static DIR... --metad DIR... --gb obc1=DIR --gb obc2=DIR
    cgbg-bench make-task ala2 --unbiased DIR... --static DIR... --gb ... --version N --reference-only
"""

from __future__ import annotations

from pathlib import Path

from cgbg_bench.errors import CgbgError

_FAMILIES = ("mueller-brown", "ala2", "ala3", "ala6")


def add_parser(sub) -> None:
    p = sub.add_parser("make-task", help="regenerate a task family's data, proposal, reference and baselines")
    p.add_argument("family", choices=_FAMILIES, help="task family to rebuild")
    p.add_argument("--quick", action="store_true", help="mueller-brown: tiny runs to test the pipeline (not for shipping)")
    md = p.add_argument_group("alanine peptides (MD run directories made by `cgbg-bench md run`)")
    md.add_argument("--unbiased", nargs="+", default=[], type=Path, help="unbiased explicit-solvent runs")
    md.add_argument("--static", nargs="+", default=[], type=Path, help="static-bias explicit-solvent runs")
    md.add_argument("--metad", nargs="+", default=[], type=Path, help="metadynamics runs (biased training data)")
    md.add_argument("--gb", action="append", default=[], metavar="NAME=DIR", help="implicit-solvent run, e.g. obc2=DIR")
    md.add_argument("--max-chunks", action="append", default=[], metavar="DIR=N",
                    help="use only the first N chunks of run DIR (default: the chunks finished when the "
                         "build starts; the build records them in its command)")
    md.add_argument("--reference", choices=["all", "static"], default="all",
                    help="runs that make the reference: unbiased and static-bias (all, default; each kind "
                         "weighted by the inverse variance of its basin populations, see --basin-block-ps) or "
                         "the static-bias runs alone")
    md.add_argument("--bank-size", type=int, default=1_000_000, help="proposal bank size (default 10^6)")
    md.add_argument("--block-ps", type=float, default=1000.0, help="reference block length in ps (default 1000)")
    md.add_argument("--basin-block-ps", type=float, default=1000.0,
                    help="block length (ps) of the basin-population variances that weigh unbiased against "
                         "static-bias runs in the reference (default 1000, as `md report`)")
    md.add_argument("--discard-ps", type=float, default=0.0, help="drop this much of each run's start")
    md.add_argument("--version", type=int, default=1, help="task version to write (bump on every change)")
    md.add_argument("--fm-hidden", type=int, nargs="+", default=None, metavar="N",
                    help="hidden layer widths of the force-matched baselines' MLP (default 128 128)")
    md.add_argument("--fm-models", type=int, default=None, metavar="K",
                    help="force-matched baselines as the mean of K networks (seeds 23..23+K-1, one split; default 1)")
    md.add_argument("--fm-repulsion-power", type=int, default=None, metavar="P",
                    help="exponent of the force-matched baselines' prior repulsion (sigma / r)^P (default 6)")
    md.add_argument("--fm-dihedral-correction", type=int, default=None, metavar="K",
                    help="add to PMF_B (fm-biased) the order-K Fourier series in each residue's (phi, psi), "
                         "fitted by least squares on its force residuals (not to fm-unbiased: the unbiased "
                         "run covers phi > 0 too sparsely; docs/force-matching.md; default: none)")
    md.add_argument("--reference-only", action="store_true",
                    help="new --version of existing tasks with only the reference and the GB rows rebuilt "
                         "from the given runs (e.g. after more MD); flows and force-matched baselines are "
                         "kept, every baseline is rescored")
    md.add_argument("--representation", action="append", default=None, choices=["heavy-atom", "core-beta"],
                    help="build only this representation's tasks and baselines (repeatable; default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.family == "mueller-brown":
        if args.reference_only:
            raise CgbgError("--reference-only refreshes the alanine tasks' MD reference; mueller-brown's is exact: "
                            "rebuild it with `cgbg-bench make-task mueller-brown`")
        from cgbg_bench.build import mueller_brown

        written = mueller_brown.build(quick=args.quick)
    else:
        from cgbg_bench.build.alanine import AlanineSources, build

        gb: dict[str, tuple[Path, ...]] = {}
        for item in args.gb:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise CgbgError(f"--gb {item!r}: expected NAME=DIR, e.g. obc2=data/ala2/obc2")
            gb[name] = gb.get(name, ()) + (Path(path),)
        from cgbg_bench.cli._args import parse_max_chunks

        max_chunks = parse_max_chunks(args.max_chunks)
        sources = AlanineSources(tuple(args.unbiased), tuple(args.static), tuple(args.metad), gb, max_chunks)
        representations = None if args.representation is None else tuple(args.representation)
        if args.reference_only:
            from cgbg_bench.build.alanine import refresh_reference

            unused = [flag for flag, given in (("--fm-hidden", args.fm_hidden is not None),
                                               ("--fm-models", args.fm_models is not None),
                                               ("--fm-repulsion-power", args.fm_repulsion_power is not None),
                                               ("--fm-dihedral-correction", args.fm_dihedral_correction is not None),
                                               ("--bank-size", args.bank_size != 1_000_000),
                                               ("--metad", bool(args.metad))) if given]
            if unused:
                raise CgbgError(f"--reference-only keeps the flows and the force-matched baselines: "
                                f"drop {', '.join(unused)}")
            written = _checked(refresh_reference, args.family, sources, task_version=args.version,
                               block_ps=args.block_ps, discard_ps=args.discard_ps, reference_from=args.reference,
                               representations=representations, basin_block_ps=args.basin_block_ps)
            for path in written:
                print(f"refreshed {path}")
            return 0
        fm = None
        if any(v is not None for v in (args.fm_hidden, args.fm_models, args.fm_repulsion_power,
                                       args.fm_dihedral_correction)):
            from cgbg_bench.build.alanine import SEEDS
            from cgbg_bench.fm.pipeline import FMSettings

            if args.fm_hidden is not None and any(h < 1 for h in args.fm_hidden):
                raise CgbgError(f"--fm-hidden {args.fm_hidden}: widths must be positive")
            if args.fm_models is not None and args.fm_models < 1:
                raise CgbgError(f"--fm-models {args.fm_models}: give a number of networks >= 1")
            if args.fm_repulsion_power is not None and args.fm_repulsion_power < 1:
                raise CgbgError(f"--fm-repulsion-power {args.fm_repulsion_power}: give a whole number >= 1")
            if args.fm_dihedral_correction is not None and args.fm_dihedral_correction < 0:
                raise CgbgError(f"--fm-dihedral-correction {args.fm_dihedral_correction}: give an order >= 1 "
                                "(0: none)")
            default = FMSettings()
            fm = FMSettings(seed=SEEDS["fm"],
                            hidden=default.hidden if args.fm_hidden is None else tuple(args.fm_hidden),
                            n_models=default.n_models if args.fm_models is None else args.fm_models,
                            repulsion_power=(default.repulsion_power if args.fm_repulsion_power is None
                                             else args.fm_repulsion_power),
                            dihedral_correction=args.fm_dihedral_correction or 0)
        written = _checked(build, args.family, sources, fm=fm, bank_size=args.bank_size, block_ps=args.block_ps,
                           discard_ps=args.discard_ps, task_version=args.version, reference_from=args.reference,
                           representations=representations, basin_block_ps=args.basin_block_ps)
    for path in written:
        print(f"built {path}")
    return 0


def _checked(builder, *args, **kwargs):
    """Run a task builder; its ValueErrors (bad sources, versions, options) become CLI errors."""
    try:
        return builder(*args, **kwargs)
    except ValueError as exc:
        raise CgbgError(str(exc)) from exc
