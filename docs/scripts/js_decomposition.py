"""Where does a PMF's JS come from? Split the (phi, psi) JS into basins, and vary the clip.

    python docs/scripts/js_decomposition.py ala2-core-beta baselines/ala2-core-beta/fm-biased.pt2

Prints, for the task's first (phi, psi) observable, the JS of the reweighted bank (weighted as
the task defines it: PSIS, or the clip of older versions) against the reference, summed per region (the per-bin terms
0.5 [p ln(p/m) + q ln(q/m)] are non-negative, so the regions add up to the total):
beta/PPII (phi < 0, psi outside alpha_R), alpha_R (phi < 0, -120 < psi < 50 degrees) and
phi > 0 (alpha_L / C7ax). Then the JS after counterfactual changes of the reweighted
histogram: other weightings (the 99%, 99.9% and no clip), and the phi > 0 mass set to the reference's, its
shape kept; and the ratio of C5 (beta/PPII with phi < -115 degrees) to PPII (the rest of
beta/PPII), the shape of the beta basin. Point estimates (no bootstrap): a diagnostic (numbers in
docs/proposals.md and docs/force-matching.md), not a score.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.evaluate import bank_log_weights, observable_index
from cgbg_bench.pmf import default_device
from cgbg_bench.reference import basin_masks
from cgbg_bench.task import load_task
from cgbg_bench.weighting import clip_weights


def js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-bin JS terms (natural log); they sum to M.js_divergence(p, q)."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, p * np.log(p / m), 0.0)
        tq = np.where(q > 0, q * np.log(q / m), 0.0)
    return 0.5 * (tp + tq)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    args = ap.parse_args()
    task = load_task(args.task)
    obs = task.observables[0]
    proposal, reference = task.load_proposal(), task.load_reference()
    _, log_w = bank_log_weights(args.pmf, task, device=default_device(), proposal=proposal)
    index = observable_index(task, proposal.positions)[0]
    n_bins = obs.n_bins
    p = M.normalize(reference.block_hist[:, 0].sum(0))
    reg = basin_masks(*obs.bins)
    pos = reg["phi > 0"]
    phi_centre = np.repeat(-180 + (np.arange(obs.bins[0]) + 0.5) * 360 / obs.bins[0], obs.bins[1])
    c5 = reg["beta/PPII"] & (phi_centre < -115)
    ppii = reg["beta/PPII"] & ~c5
    print(f"{task.name} v{task.version}, {args.pmf} (point estimates; the task's weighting: "
          f"{task.metrics.describe()})")
    print(f"{'weights':>9s} {'ESS':>6s} {'JS':>7s} " + " ".join(f"{k + ' P/JS':>18s}" for k in reg)
          + f" {'JS, phi>0 mass fixed':>21s} {'C5/PPII':>8s}")
    print(f"{'ref':>9s} {'':6s} {'':7s} " + " ".join(f"{p[m].sum():8.4f} {'':9s}" for m in reg.values())
          + f" {'':21s} {p[c5].sum() / p[ppii].sum():8.3f}")
    rows = {"task": task.metrics.bank_weights(log_w).weights,
            **{f"clip {pct:g}": clip_weights(log_w, pct) for pct in (99.0, 99.9, 100.0)}}
    for label, w in rows.items():
        q = M.normalize(M.weighted_histogram(index, w, n_bins))
        terms = js_terms(p, q)
        assert math.isclose(terms.sum(), float(M.js_divergence(p, q)), rel_tol=1e-9)
        q_fixed = q.copy()
        q_fixed[pos] *= p[pos].sum() / q[pos].sum()
        q_fixed[~pos] *= p[~pos].sum() / q[~pos].sum()
        print(f"{label:>9s} {M.ess(w):6.3f} {terms.sum():7.4f} "
              + " ".join(f"{q[m].sum():8.4f} {terms[m].sum():9.4f}" for m in reg.values())
              + f" {float(M.js_divergence(p, q_fixed)):21.4f} {q[c5].sum() / q[ppii].sum():8.3f}")

if __name__ == "__main__":
    main()
