"""``cgbg-bench train-pmf``: a CG peptide PMF by force matching on MD runs, exported to .pt2.

    cgbg-bench train-pmf --task ala2-core-beta --data biased --out my_pmf.pt2
    cgbg-bench train-pmf --system ala2 --representation heavy-atom --data DIR... --out PATH.pt2

Writes PATH.pt2 and a sidecar PATH.yaml (see :mod:`cgbg_bench.fm.pipeline`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from cgbg_bench.fm.pipeline import FORMAT, sidecar_path  # noqa: F401  (re-exported for tests)

__all__ = ["add_parser", "sidecar_path"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-pmf", help="train a CG peptide PMF by force matching on MD runs (export .pt2)",
        description="Fit the prior (harmonic bonds/angles, peaked dihedrals, repulsion) to the "
                    "runs' CG positions, then train the network correction on the mapped unbiased "
                    "forces (time-block split, early stopping on validation force error). Writes "
                    "--out (.pt2) and a sidecar with the same stem and suffix .yaml.")
    p.add_argument("--task", help="take system and CG representation from this task (e.g. ala2-core-beta)")
    p.add_argument("--system", choices=["ala2", "ala3", "ala6"])
    p.add_argument("--representation", choices=["heavy-atom", "core-beta"])
    p.add_argument("--data", required=True, nargs="+", metavar="DIR|unbiased|biased",
                   help="MD run directories (cgbg-bench md run), or 'unbiased' (data/SYSTEM/explicit-unbiased) "
                        "or 'biased' (data/SYSTEM/explicit-wtmetad and explicit-static)")
    p.add_argument("--out", required=True, metavar="PATH.pt2")
    p.add_argument("--prior-only", action="store_true", help="export the fitted prior alone (the lower-bar baseline)")
    p.add_argument("--seed", type=int, default=0, help="split, weights and minibatch order (default 0)")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20, help="epochs without a better validation error (default 20)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-halve-after", type=int, default=5, metavar="N",
                   help="halve the learning rate after N epochs without a better validation error "
                        "(and again after N more); 0 keeps it constant (default 5)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-models", type=int, default=1, metavar="K",
                   help="export the mean energy of K networks trained with seeds SEED..SEED+K-1 on one split "
                        "(default 1)")
    p.add_argument("--block-ps", type=float, default=100.0,
                   help="length of the time blocks of the train/validation split (ps, default 100)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--n-rbf", type=int, default=16, help="Gaussians per pair distance (default 16)")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="MLP widths (default 128 128)")
    p.add_argument("--repulsion-power", type=int, default=6, metavar="P",
                   help="exponent of the prior's repulsion eps (sigma / r)^P (default 6)")
    p.add_argument("--dihedral-correction", type=int, default=0, metavar="K",
                   help="after the networks, fit the order-K Fourier series in each residue's (phi, psi) by "
                        "least squares on their force residuals, on every frame (default 0: none)")
    p.add_argument("--max-chunks", action="append", default=[], metavar="DIR=N",
                   help="use only the first N chunks of run DIR (repeatable; default: all finished chunks)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_train)


def _resolve(args) -> tuple[str, str, list[str]]:
    from pathlib import Path

    from cgbg_bench.errors import DataError
    from cgbg_bench.fm.pipeline import DATA_KINDS, runs_for

    if args.task:
        from cgbg_bench.task import load_task

        task = load_task(args.task)
        for flag, given, value in (("--system", args.system, task.system),
                                   ("--representation", args.representation, task.representation)):
            if given is not None and given != value:
                raise DataError(f"{flag} {given} contradicts task {task.name} ({value}); drop {flag}")
        system, rep = task.system, task.representation
        if rep not in ("heavy-atom", "core-beta"):
            raise DataError(f"task {task.name} is not a peptide task; force matching here is for ala2/ala3/ala6")
    elif args.system and args.representation:
        system, rep = args.system, args.representation
    else:
        raise DataError("give --task NAME, or both --system and --representation")
    root = Path(__file__).resolve().parents[2]
    if len(args.data) == 1 and args.data[0] in DATA_KINDS:
        dirs = [str(d) for d in runs_for(args.data[0], system, root)]
    else:
        dirs = list(args.data)
    return system, rep, dirs


def _train(args) -> int:
    import torch

    from cgbg_bench.cli._args import parse_max_chunks
    from cgbg_bench.errors import DataError
    from cgbg_bench.fm.pipeline import FMSettings, train_and_export

    if args.repulsion_power < 1:
        raise DataError(f"--repulsion-power {args.repulsion_power}: give a whole number >= 1")
    if args.dihedral_correction < 0:
        raise DataError(f"--dihedral-correction {args.dihedral_correction}: give an order >= 1 (0: none)")
    if args.dihedral_correction and args.prior_only:
        raise DataError("--dihedral-correction corrects a trained network; drop it or --prior-only")
    torch.set_num_threads(max(1, args.threads))
    system, rep, dirs = _resolve(args)
    dirs = [str(Path(d)) for d in dirs]
    # --max-chunks keys match a run directory however it is spelled (relative, absolute, 'biased')
    by_resolved = {Path(d).resolve(): d for d in dirs}
    if len(by_resolved) < len(dirs):
        raise DataError(f"--data {' '.join(dirs)} names one run more than once; give each run once")
    max_chunks = {}
    for key, n in parse_max_chunks(args.max_chunks).items():
        if Path(key).resolve() not in by_resolved:
            raise DataError(f"--max-chunks names {key}, which is not among --data {' '.join(dirs)}")
        d = by_resolved[Path(key).resolve()]
        if max_chunks.get(d, n) != n:
            raise DataError(f"--max-chunks gives run {d} two different limits ({max_chunks[d]} and {n})")
        max_chunks[d] = n
    settings = FMSettings(seed=args.seed, max_epochs=args.max_epochs, patience=args.patience, lr=args.lr,
                          batch_size=args.batch_size, block_ps=args.block_ps, val_fraction=args.val_fraction,
                          n_rbf=args.n_rbf, hidden=tuple(args.hidden),
                          lr_halve_after=args.lr_halve_after or None, n_models=args.n_models,
                          repulsion_power=args.repulsion_power, dihedral_correction=args.dihedral_correction)
    command = "cgbg-bench train-pmf " + _argv_of(args, system, rep, dirs)
    train_and_export(system, rep, dirs, args.out, settings=settings, prior_only=args.prior_only,
                     command=command, log=lambda m: print(m, flush=True), max_chunks=max_chunks or None)
    return 0


def _argv_of(args, system, rep, dirs) -> str:
    """The command line rebuilt from the parsed arguments, every default written out."""
    parts = [f"--system {system}", f"--representation {rep}",
             "--data " + " ".join(shlex.quote(d) for d in dirs), f"--out {shlex.quote(args.out)}"]
    if args.prior_only:
        parts.append("--prior-only")
    parts += [f"--seed {args.seed}", f"--max-epochs {args.max_epochs}", f"--patience {args.patience}",
              f"--lr {args.lr:g}", f"--lr-halve-after {args.lr_halve_after}", f"--batch-size {args.batch_size}",
              f"--n-models {args.n_models}", f"--block-ps {args.block_ps:g}",
              f"--val-fraction {args.val_fraction:g}", f"--n-rbf {args.n_rbf}",
              "--hidden " + " ".join(str(h) for h in args.hidden), f"--repulsion-power {args.repulsion_power}"]
    if args.dihedral_correction:
        parts.append(f"--dihedral-correction {args.dihedral_correction}")
    parts += [f"--max-chunks {shlex.quote(item)}" for item in args.max_chunks]
    parts.append(f"--threads {args.threads}")
    return " ".join(parts)
