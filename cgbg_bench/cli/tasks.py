"""`cgbg-bench list` and `cgbg-bench info TASK`."""

from __future__ import annotations

from tabulate import tabulate

from cgbg_bench.report import resolution_line
from cgbg_bench.task import list_tasks, load_task


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the shipped tasks")
    p.set_defaults(func=run_list)
    p = sub.add_parser("info", help="describe one task")
    p.add_argument("task", help="task name (see `cgbg-bench list`)")
    p.add_argument("--verify", action="store_true",
                   help="also check the sha256 of every file in the task folder (and of its baselines)")
    p.add_argument("--json", action="store_true", help="print the description as JSON (keys as in task.yaml)")
    p.set_defaults(func=run_info)


def run_list(args) -> int:
    rows = []
    for name in list_tasks():
        t = load_task(name)
        rows.append([t.name, t.version, t.system, t.representation, t.n_beads,
                     t.bank.n_samples if t.bank is not None else t.proposal.provenance.get("n_samples", ""),
                     len(t.baselines), "provisional" if t.provisional else ""])
    print(tabulate(rows, headers=["task", "version", "system", "representation", "beads", "bank", "baselines",
                                  "status"], tablefmt="github"))
    if any(row[-1] for row in rows):
        print("\nprovisional: the MD reference's own noise (JS between its halves) is still above its target; "
              "`cgbg-bench info TASK` gives the numbers")
    return 0


def info_dict(t) -> dict:
    """What `info --json` prints: the task's settings, files and resolution, keys as in task.yaml."""
    m = t.metrics
    return {
        "name": t.name, "version": t.version, "description": t.description, "system": t.system,
        "representation": t.representation, "n_beads": t.n_beads, "input_shape": list(t.input_shape),
        "energy_unit": t.energy_unit, "temperature_kelvin": t.temperature_kelvin, "kT": t.kT,
        "observables": [{"name": o.name, "kind": o.kind, "indices": [list(i) for i in o.indices],
                         "bins": list(o.bins), "range": [list(r) for r in o.range]} for o in t.observables],
        "metrics": {"weighting": m.weighting, "clip_percentile": m.clip_percentile, "n_bootstrap": m.n_bootstrap,
                    "proposal_blocks": m.proposal_blocks},
        "bank": None if t.bank is None else {"generator": t.bank.generator, "n_samples": t.bank.n_samples,
                                             "seed": t.bank.seed},
        "resolution": None if t.resolution is None else t.resolution.as_dict(),
        "reference_noise": None if t.reference_noise is None else t.reference_noise.as_dict(),
        "provisional": t.provisional,
        "proposal": {"path": t.proposal.path.name, "sha256": t.proposal.sha256},
        "reference": {"path": t.reference.path.name, "sha256": t.reference.sha256},
        "baselines": [{"name": b.name, "kind": b.kind, "description": b.description} for b in t.baselines],
    }


def run_info(args) -> int:
    t = load_task(args.task)
    if args.json:
        import json

        if args.verify:
            t.verify_files()
        print(json.dumps(info_dict(t), indent=2))
        return 0
    print(f"{t.name} (version {t.version}{', provisional' if t.provisional else ''})\n  {t.description}")
    print(f"  system: {t.system}; representation: {t.representation}; n_beads: {t.n_beads}; "
          f"input shape: (B, {', '.join(map(str, t.input_shape))})")
    temp = f"{t.temperature_kelvin:g} K, " if t.temperature_kelvin else ""
    print(f"  energies in {t.energy_unit}; {temp}kT = {t.kT:g} {t.energy_unit}")
    for o in t.observables:
        print(f"  observable {o.name}: {o.kind} {[list(i) for i in o.indices]}, bins {list(o.bins)}, "
              f"range {[list(r) for r in o.range]}")
    m = t.metrics
    print(f"  metrics: {m.describe()}, {m.n_bootstrap} bootstrap "
          f"replicates, {m.proposal_blocks} proposal blocks")
    if t.bank is not None:
        print(f"  bank: {t.bank.n_samples} samples generated on first use by {t.bank.generator} "
              f"(seed {t.bank.seed}), cached, checked against its fingerprint (rtol {t.bank.rtol:g})")
    for label, f in (("proposal", t.proposal), ("reference", t.reference)):
        print(f"  {label}: {f.path.name} sha256 {f.sha256[:12]}... made by: {f.provenance.get('command', '?')}")
    kinds = t.reference.provenance.get("run_kinds")
    if isinstance(kinds, dict) and kinds:  # alanine tasks from v8: unbiased vs static-bias shares
        print("  reference runs by kind (share of the weight): " + "; ".join(
            f"{g} ({', '.join(map(str, v.get('runs', [])))}) {v.get('share', float('nan')):.3f}"
            for g, v in kinds.items()))
    if t.resolution is not None:
        print("  " + resolution_line(t))
    if t.reference_noise is not None:
        print("  " + t.reference_noise.describe())
    for b in t.baselines:
        print(f"  baseline {b.name} ({b.kind}): {b.description}")
    if args.verify:
        checked = t.verify_files()  # raises a TaskError (exit 2) naming the file and the fix
        print(f"  all {len(checked)} files present, hashes match: "
              + ", ".join(sorted({f.path.name for _, f in checked})))
    return 0
