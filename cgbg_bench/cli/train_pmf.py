"""``cgbg-bench train-pmf``: a CG peptide PMF by force matching on MD runs, exported to .pt2.

Writes PATH.pt2 and a sidecar PATH.yaml (training command, data runs with chunk
count and sha256, seed, settings, parameter count, train/validation force RMSE of
the model and of the prior alone, the fitted prior, versions).
"""

from __future__ import annotations

import shlex

__all__ = ["add_parser", "sidecar_path"]

FORMAT = "cgbg-bench force-matching pmf v1"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-pmf", help="train a CG peptide PMF by force matching on MD runs (export .pt2)",
        description="Fit the prior (harmonic bonds/angles, peaked dihedrals, repulsion) to the "
                    "runs' CG positions, then train the network correction on the mapped unbiased "
                    "forces (time-block split, early stopping on validation force error). Writes "
                    "--out (.pt2) and a sidecar with the same stem and suffix .yaml.")
    p.add_argument("--system", required=True, choices=["ala2", "ala3", "ala6"])
    p.add_argument("--representation", required=True, choices=["heavy-atom", "core-beta"])
    p.add_argument("--data", required=True, nargs="+", metavar="DIR", help="MD run directories (cgbg-bench md run)")
    p.add_argument("--out", required=True, metavar="PATH.pt2")
    p.add_argument("--prior-only", action="store_true", help="export the fitted prior alone (the lower-bar baseline)")
    p.add_argument("--seed", type=int, default=0, help="split, weights and minibatch order (default 0)")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20, help="epochs without a better validation error (default 20)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--block-ps", type=float, default=100.0,
                   help="length of the time blocks of the train/validation split (ps, default 100)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--n-rbf", type=int, default=16, help="Gaussians per pair distance (default 16)")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="MLP widths (default 128 128)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_train)


def sidecar_path(out):
    from pathlib import Path

    return Path(out).with_suffix(".yaml")


def _train(args) -> int:
    import datetime as dt
    from pathlib import Path

    import torch
    import yaml

    import cgbg_bench
    from cgbg_bench._io import atomic_write_text, sha256_file
    from cgbg_bench.errors import DataError
    from cgbg_bench.fm.peptide import export_peptide_pmf, load_training_data, train_peptide_pmf

    out = Path(args.out)
    if out.suffix != ".pt2":
        raise DataError(f"--out {out}: the model is saved as a torch.export program; use the suffix .pt2")
    torch.set_num_threads(max(1, args.threads))
    command = "cgbg-bench train-pmf " + _argv_of(args)
    data = load_training_data(args.data, args.representation, system=args.system, block_ps=args.block_ps)
    print(f"data: {len(data.positions)} frames of {data.mapping.name} from {len(data.sources)} run(s), "
          f"{len(set(data.block_ids.tolist()))} blocks of {args.block_ps:g} ps", flush=True)
    result = train_peptide_pmf(
        data, prior_only=args.prior_only, seed=args.seed, val_fraction=args.val_fraction, lr=args.lr,
        max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
        n_rbf=args.n_rbf, hidden=tuple(args.hidden),
    )
    # a few frames spread over the data as the export example
    example = data.positions[:: max(1, len(data.positions) // 7)][:7]
    export_peptide_pmf(result.model, example, out)
    rep = result.report
    sidecar = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": {"path": out.name, "sha256": sha256_file(out),
                  "kind": "prior" if args.prior_only else "prior + MLP(RBF pair distances, cos/sin Z-matrix dihedrals)",
                  "system": args.system, "representation": args.representation,
                  "n_beads": data.mapping.n_beads, "input": "(B, n_beads, 3) float32 nm",
                  "output": "(B,) kJ/mol", "n_parameters": result.n_parameters},
        "data": [dict(s) for s in data.sources],
        "seed": args.seed,
        "settings": result.settings,
        "force_rmse_kj_per_mol_nm": {
            "train": round(result.train_force_rmse, 4), "val": round(result.val_force_rmse, 4),
            "prior_train": round(result.prior_train_force_rmse, 4),
            "prior_val": round(result.prior_val_force_rmse, 4),
            "note": "RMS per force component on the time-block split; mapped forces carry a large "
                    "irreducible noise, so compare val with prior_val",
        },
        "training": None if rep is None else {
            "epochs": rep.epochs, "best_epoch": rep.best_epoch, "stopped_early": rep.stopped_early,
            "n_train": rep.n_train, "n_val": rep.n_val, "val_blocks": list(rep.val_blocks)},
        "prior": (result.model if args.prior_only else result.model.prior).to_dict(),
        "versions": {"cgbg_bench": cgbg_bench.__version__, "torch": str(torch.__version__)},
    }
    atomic_write_text(sidecar_path(out), yaml.safe_dump(sidecar, sort_keys=False))
    print(f"force RMSE (kJ/mol/nm): val {result.val_force_rmse:.2f} (prior alone {result.prior_val_force_rmse:.2f}), "
          f"train {result.train_force_rmse:.2f} (prior alone {result.prior_train_force_rmse:.2f})")
    if rep is not None:
        print(f"epochs {rep.epochs} (best {rep.best_epoch}), {result.n_parameters} parameters")
    print(f"wrote {out} and {sidecar_path(out)}")
    return 0


def _argv_of(args) -> str:
    """The command line rebuilt from the parsed arguments, every default written out."""
    parts = [f"--system {args.system}", f"--representation {args.representation}",
             "--data " + " ".join(shlex.quote(d) for d in args.data), f"--out {shlex.quote(args.out)}"]
    if args.prior_only:
        parts.append("--prior-only")
    parts += [f"--seed {args.seed}", f"--max-epochs {args.max_epochs}", f"--patience {args.patience}",
              f"--lr {args.lr:g}", f"--batch-size {args.batch_size}", f"--block-ps {args.block_ps:g}",
              f"--val-fraction {args.val_fraction:g}", f"--n-rbf {args.n_rbf}",
              "--hidden " + " ".join(str(h) for h in args.hidden), f"--threads {args.threads}"]
    return " ".join(parts)
