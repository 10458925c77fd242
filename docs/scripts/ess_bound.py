"""How high can any PMF's ESS be on a task's bank? An upper bound from the (phi, psi) marginal.

    python docs/scripts/ess_bound.py ala2-core-beta ala2-heavy-atom ala2-core-beta-biased ala2-heavy-atom-biased

The exact PMF p scores a Kish ESS fraction of 1 / (1 + chi^2(p || q)) on a bank drawn from the
proposal q (weights p/q). Marginalizing both onto the scored (phi, psi), and coarsening the bins,
can only lower chi^2 (data-processing inequality for f-divergences), so 1 / (1 + chi^2) of the
reference's (phi, psi) histogram against the bank's unweighted one bounds the ESS of every PMF,
the exact one included, from above. Printed at several bin widths (the reference's own noise
inflates chi^2 at the finest bins: read the coarser ones as the safe bound). Point estimates.
"""

from __future__ import annotations

import argparse

import numpy as np

from cgbg_bench.evaluate import observable_index
from cgbg_bench.task import load_task


def marginal_bound(p: np.ndarray, q: np.ndarray, coarsen: int) -> float:
    """1 / (1 + chi^2(p || q)) of two (n, n) histograms summed over coarsen x coarsen blocks."""
    n = p.shape[0] // coarsen

    def block(h):
        h = h.reshape(n, coarsen, n, coarsen).sum((1, 3)).ravel()
        return h / h.sum()

    P, Q = block(p), block(q)
    if np.any(P[Q == 0] > 0):
        return 0.0
    chi2 = float((P[Q > 0] ** 2 / Q[Q > 0]).sum() - 1.0)
    return 1.0 / (1.0 + chi2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--coarsen", type=int, nargs="+", default=[2, 5, 10, 20],
                    help="bins merged per side (default 2 5 10 20 of the task's 100)")
    args = ap.parse_args()
    print("| task | " + " | ".join(f"{c}x{c} bins merged" for c in args.coarsen) + " |")
    print("|---|" + "---|" * len(args.coarsen))
    for name in args.tasks:
        task = load_task(name)
        obs = task.observables[0]
        if obs.kind != "dihedral_pair" or obs.bins[0] != obs.bins[1]:
            raise SystemExit(f"{name}: the first observable is not a square (phi, psi) histogram")
        n = obs.bins[0]
        p = task.load_reference().block_hist[:, 0].sum(0).reshape(n, n)
        index = observable_index(task, task.load_proposal().positions)[0]
        q = np.bincount(index[index >= 0], minlength=n * n).astype(float).reshape(n, n)
        print(f"| {name} v{task.version} | "
              + " | ".join(f"{marginal_bound(p, q, c):.3f}" for c in args.coarsen) + " |")


if __name__ == "__main__":
    main()
