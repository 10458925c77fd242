"""Where in (phi, psi) is a PMF's free energy wrong? A coarse map of F_PMF - F_reference.

    python docs/scripts/fe_error_map.py ala2-heavy-atom baselines/ala2-heavy-atom/fm-biased.pt2

Reweights the task's bank under the PMF as the benchmark does (the task's weighting), sums the task's
100 x 100 (phi, psi) histograms and the reference into 20 x 20 bins of 18 degrees, and prints
-ln(Q / P) in kT (Q: reweighted PMF, P: reference) for every bin with P > ``--min-population``
(default 0.002) at phi < 0; '.' elsewhere. A uniform offset between basins would show as two flat
patches; a tilt or a local patch points at the region where the PMF's mean forces are off.
Point estimates (no bootstrap): a diagnostic (numbers in docs/proposals.md), not a score.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.evaluate import evaluate, observable_index
from cgbg_bench.task import load_task

COARSE = 20


def coarse(hist: np.ndarray, n: int) -> np.ndarray:
    """(n_fine * n_fine,) flat, phi slow -> (COARSE, COARSE) normalized, summing blocks of n_fine / COARSE."""
    f = n // COARSE
    h = hist.reshape(COARSE, f, COARSE, f).sum((1, 3))
    return h / h.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    ap.add_argument("--min-population", type=float, default=0.002)
    args = ap.parse_args()
    task = load_task(args.task)
    obs = task.observables[0]
    n_phi, n_psi = obs.bins
    if n_phi != n_psi or n_phi % COARSE:
        raise SystemExit(f"{task.name}: bins {obs.bins} do not split into {COARSE} x {COARSE}")
    proposal, reference = task.load_proposal(), task.load_reference()
    _, log_w = evaluate(args.pmf, task, n_bootstrap=2, proposal=proposal, reference=reference)
    index = observable_index(task, proposal.positions)[0]
    w = task.metrics.bank_weights(log_w).weights  # the task's weighting (PSIS, or the clip of older versions)
    Q = coarse(M.weighted_histogram(index, w, obs.n_bins), n_phi)
    P = coarse(reference.block_hist[:, 0].sum(0), n_phi)
    centre = -180 + (360 / COARSE) * (np.arange(COARSE) + 0.5)
    print(f"{task.name} v{task.version}, {args.pmf}: F_PMF - F_ref (kT), rows phi, columns psi (degrees), "
          f"bins with P_ref > {args.min_population:g}")
    print(f"{'phi psi':>8s} " + " ".join(f"{c:5.0f}" for c in centre))
    for i in np.flatnonzero(centre < 0):
        cells = [f"{-math.log(Q[i, j] / P[i, j]):+5.2f}" if P[i, j] > args.min_population and Q[i, j] > 0
                 else f"{'.':>5s}" for j in range(COARSE)]
        if any(c.strip() != "." for c in cells):
            print(f"{centre[i]:8.0f} " + " ".join(cells))


if __name__ == "__main__":
    main()
