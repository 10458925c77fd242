"""``cgbg-bench train-pmf``: a CG peptide PMF by force matching on MD runs, exported to .pt2.

    cgbg-bench train-pmf --task ala2-core-beta --data biased --out my_pmf.pt2
    cgbg-bench train-pmf --system ala2 --representation heavy-atom --data DIR... --out PATH.pt2

Writes PATH.pt2 and a sidecar PATH.yaml (see :mod:`cgbg_bench.fm.pipeline`). With ``--task``,
``--data unbiased|biased`` is the task's recorded recipe: the runs and chunk counts its
fm-unbiased / fm-biased baseline was trained on (the baseline's sidecar), under the
repository root (:func:`cgbg_bench.paths.repo_root`, ``$CGBG_BENCH_ROOT``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

__all__ = ["add_parser"]  # and FORMAT, sidecar_path of cgbg_bench.fm.pipeline (module __getattr__)


def __getattr__(name: str):
    """``FORMAT`` and ``sidecar_path`` of :mod:`cgbg_bench.fm.pipeline`, re-exported on first use:
    importing the pipeline imports torch (~1.5 s), which building the command-line parser must not."""
    if name in ("FORMAT", "sidecar_path"):
        from cgbg_bench.fm import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EPILOG = """\
how long it takes: about 9 s of CPU per epoch per network on the ala2 recipes (~71,000
training frames; one thread, --threads 1), a few seconds to load the runs and fit the prior.
Training stops early after --patience epochs without a better validation error, typically
after 40-60 epochs: 6-9 minutes for one network on an idle machine (a user's run took
6:14), 25-40 minutes for --n-models 4 (the baselines' setting), more on a busy machine.
--max-epochs bounds it. Progress is shown per epoch with the validation error and an
estimate of the time left (at most: early stopping usually ends sooner): a bar on a
terminal, plain lines in a log or pipe ($CGBG_BENCH_PROGRESS=bar|lines|off overrides).

data: --data biased with --task uses the task's recorded recipe, the runs and chunk counts
of the task's fm-biased baseline (ala2-core-beta v11: data/ala2/explicit-wtmetad,
explicit-static and explicit-static-2, 8 + 137 + 78 chunks, 89,200 frames; each task has its
own counts), and prints them; 'unbiased' likewise (data/ala2/explicit-unbiased); --all-chunks uses
every finished chunk of those runs instead, --max-chunks DIR=N sets one run's. The data/
folders are looked up under the repository root ($CGBG_BENCH_ROOT overrides it: set it to
your checkout when the package is installed elsewhere).

example:
  cgbg-bench train-pmf --task ala2-core-beta --data biased --out my_pmf.pt2
  cgbg-bench evaluate my_pmf.pt2 --task ala2-core-beta
"""


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "train-pmf", help="train a CG peptide PMF by force matching on MD runs (export .pt2; minutes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit the prior (harmonic bonds/angles, peaked dihedrals, repulsion) to the\n"
                    "runs' CG positions, then train the network correction on the mapped unbiased\n"
                    "forces (time-block split, early stopping on validation force error). Writes\n"
                    "--out (.pt2) and a sidecar with the same stem and suffix .yaml.",
        epilog=EPILOG)
    p.add_argument("--task", help="take system and CG representation from this task (e.g. ala2-core-beta), "
                                  "and with --data unbiased|biased its recorded runs and chunk counts")
    p.add_argument("--system", choices=["ala2", "ala3", "ala6"])
    p.add_argument("--representation", choices=["heavy-atom", "core-beta"])
    p.add_argument("--data", required=True, nargs="+", metavar="DIR|unbiased|biased",
                   help="MD run directories (cgbg-bench md run), or 'unbiased' or 'biased': with --task, the "
                        "runs and chunk counts the task's fm-unbiased / fm-biased baseline was trained on; "
                        "without, every finished chunk of data/SYSTEM/explicit-unbiased ('unbiased') or of "
                        "data/SYSTEM/explicit-wtmetad, explicit-static and explicit-static-2 ('biased'), "
                        "those that exist")
    p.add_argument("--all-chunks", action="store_true",
                   help="with --task and --data unbiased|biased: every finished chunk of the recipe's runs, "
                        "not the chunk counts the task recorded")
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
                   help="use only the first N chunks of run DIR (repeatable; default: all finished chunks, or for "
                        "--data unbiased|biased with --task the counts the task recorded)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_train)


def task_recipe(task, kind: str, root: Path) -> dict | None:
    """The data recipe of the task's ``fm-<kind>`` baseline, from its sidecar; None if it has none.

    {"baseline": name, "sidecar": path, "runs": [{"dir": Path under root, "label": as recorded,
    "n_chunks", "n_frames", "chunks_sha256"}], "settings": the sidecar's training settings}.
    """
    import yaml

    from cgbg_bench.fm.pipeline import sidecar_path

    name = f"fm-{kind}"
    baseline = next((b for b in task.baselines if b.name == name and b.kind == "pmf"), None)
    if baseline is None:
        return None
    side_path = sidecar_path(baseline.file.path)
    if not side_path.is_file():
        return None
    side = yaml.safe_load(side_path.read_text())
    data = side.get("data") if isinstance(side, dict) else None
    if not isinstance(data, list) or not data:
        return None
    runs = []
    for rec in data:
        rel = Path(rec["dir"])
        runs.append({"dir": rel if rel.is_absolute() else root / rel, "label": str(rec["dir"]),
                     "n_chunks": int(rec["n_chunks"]), "n_frames": int(rec.get("n_frames", 0)),
                     "chunks_sha256": rec.get("chunks_sha256")})
    return {"baseline": name, "sidecar": side_path, "runs": runs, "settings": side.get("settings") or {}}


def _resolve(args, log=print) -> tuple[str, str, list[str]]:
    """System, representation and run directories; for a data alias with --task, the task's recipe
    (its chunk counts are added to ``args.max_chunks`` unless --all-chunks or the user set one)."""
    from cgbg_bench.errors import DataError
    from cgbg_bench.fm.pipeline import DATA_KINDS, runs_for
    from cgbg_bench.paths import repo_root

    task = None
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
    alias = args.data[0] if len(args.data) == 1 and args.data[0] in DATA_KINDS else None
    if alias is None:
        if args.all_chunks:
            raise DataError("--all-chunks is for --data unbiased|biased with --task; with run directories "
                            "every finished chunk is used unless --max-chunks limits it")
        return system, rep, list(args.data)
    root = repo_root()
    recipe = None if task is None else task_recipe(task, alias, root)
    if recipe is None:
        dirs = runs_for(alias, system, root)
        if args.all_chunks:
            raise DataError(f"--all-chunks: {'no --task' if task is None else f'task {task.name} records no recipe'} "
                            f"for --data {alias}; every finished chunk is used already")
        log(f"data {alias!r}: every finished chunk of {', '.join(str(d) for d in dirs)} "
            f"({'no --task given' if task is None else f'task {task.name} records no {alias} recipe'})")
        return system, rep, [str(d) for d in dirs]
    missing = [r for r in recipe["runs"] if not (r["dir"] / "run.json").is_file()]
    if missing:
        raise DataError(
            f"--data {alias} for task {task.name} is the runs its {recipe['baseline']} baseline was trained on; "
            f"{', '.join(str(r['dir']) for r in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not an MD run directory under the repository root {root} "
            "(set $CGBG_BENCH_ROOT to the checkout that has the data/ folder, make the runs with "
            "`cgbg-bench md run` (docs/md.md), or pass run directories to --data)")
    from cgbg_bench.cli._args import parse_max_chunks
    from cgbg_bench.fm.peptide import _chunks_sha256
    from cgbg_bench.md.production import chunk_paths

    given = {Path(k).resolve() for k in parse_max_chunks(args.max_chunks)}
    pinned = not args.all_chunks
    lines, total = [], 0
    for r in recipe["runs"]:
        d, n_finished = r["dir"], len(chunk_paths(r["dir"]))
        if pinned and d.resolve() not in given:
            args.max_chunks.append(f"{d}={r['n_chunks']}")
            if n_finished < r["n_chunks"]:
                raise DataError(f"{d}: the task's recipe uses {r['n_chunks']} chunks, only {n_finished} are there; "
                                "continue the run (`cgbg-bench md run`) or give --all-chunks")
            same = _chunks_sha256(chunk_paths(d)[:r["n_chunks"]]) == r["chunks_sha256"]
            note = "" if same else ": NOT the task's snapshot (the chunk files differ from those recorded)"
            lines.append(f"  {r['label']}: {r['n_chunks']} of {n_finished} chunks, "
                         f"{r['n_frames']} frames{note}")
            total = None if total is None else total + r["n_frames"]
        else:
            why = "--all-chunks" if not pinned else "--max-chunks"
            lines.append(f"  {r['label']}: the chunks {why} sets ({n_finished} on disk; the task's recipe: "
                         f"{r['n_chunks']})")
            total = None
    settings = recipe["settings"]
    log(f"data {alias!r}: task {task.name}'s recipe, the runs {'and chunks ' if pinned else ''}its "
        f"{recipe['baseline']} baseline was trained on ({recipe['sidecar']}), under {root}:")
    for line in lines:
        log(line)
    if total:
        log(f"  {total} frames in all; --all-chunks uses every finished chunk of these runs")
    hint = [f"--{k.replace('_', '-')} {settings[k]}" for k, default in
            (("n_models", 1), ("dihedral_correction", 0), ("seed", None)) if settings.get(k, default) != default]
    if hint:
        log(f"  (the baseline was trained with {' '.join(hint)}; add them to reproduce it)")
    return system, rep, [str(r["dir"]) for r in recipe["runs"]]


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
    system, rep, dirs = _resolve(args, log=lambda m: print(m, flush=True))
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
                     command=command, log=lambda m: print(m, flush=True), max_chunks=max_chunks or None,
                     progress=True)
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
