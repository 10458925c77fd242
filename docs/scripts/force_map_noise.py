"""Would a statistically optimal force map cut the core-beta force noise? (No: measured here.)

    python docs/scripts/force_map_noise.py data/ala2/explicit-static [--max-chunks 100]

With bonds to hydrogen constrained, an admissible linear force map (constant weights over the
solute's atoms) must give every atom of a
constrained group (a heavy atom and its hydrogens) one common weight, or the unknown constraint
forces would enter the mapped force; and it must give weight 1 to the bead's own atom and 0 to the
other beads' atoms (b c^T = 1 for the coordinate map c). So a bead's mapped force is its own
group force plus any weighted sum of the groups the representation drops, and the stored
heavy-atom-group forces (`forces_kj_per_mol_nm`) are all it needs. For each core-beta bead this
fits those weights (shared over x, y, z) by least squares on the first half of the frames, the
optimum of the mapped force's second moment (Kraemer et al., JPCL 2023), and prints the RMS per
component on the second half for: the bead atom's group alone, the shipped map (dropped groups
summed into the nearest bead, `CGMapping.force_groups`), and the optimized weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import mdtraj as md

    from cgbg_bench.cg.mappings import get_mapping
    from cgbg_bench.md.production import load_chunks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--max-chunks", type=int, default=None)
    args = ap.parse_args()
    top = md.load(str(args.run / "solute.pdb")).topology
    mapping = get_mapping("ala2", "core-beta")
    beads, groups = mapping.atom_indices(top), mapping.force_groups(top)
    forces = load_chunks(args.run, ("forces_kj_per_mol_nm",), max_chunks=args.max_chunks)["forces_kj_per_mol_nm"]
    forces = forces.astype(np.float64)  # (F, n_heavy, 3), each heavy atom with its hydrogens
    dropped = [k for k in range(forces.shape[1]) if k not in set(beads.tolist())]
    n = len(forces)
    fit, test = forces[: n // 2], forces[n // 2:]
    print(f"{args.run}: {n} frames; weights fitted on the first half, RMS per component (kJ/mol/nm) "
          f"on the second; dropped groups {[str(top.atom(k)) for k in dropped]}")
    print("| bead | own group | shipped map | optimized | optimized weights |")
    print("|---|---|---|---|---|")
    for bead, group in zip(beads, groups):
        x = fit[:, dropped]  # (F, n_dropped, 3)
        w = -np.linalg.solve(np.einsum("fkc,flc->kl", x, x), np.einsum("fkc,fc->k", x, fit[:, bead]))
        rms = [np.sqrt(np.mean(f ** 2)) for f in (test[:, bead], test[:, group].sum(1),
                                                  test[:, bead] + np.einsum("k,fkc->fc", w, test[:, dropped]))]
        print(f"| {top.atom(bead)} | " + " | ".join(f"{r:.1f}" for r in rms) + " | "
              + ", ".join(f"{v:+.2f}" for v in w) + " |")


if __name__ == "__main__":
    main()
