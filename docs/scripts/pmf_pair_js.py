"""How far apart are PMFs on one bank? JS of each against the reference, and between every pair.

    python docs/scripts/pmf_pair_js.py ala2-core-beta A.pt2 B.pt2 [C.pt2 ...]

Reweights the task's bank under every PMF and histograms its first (phi, psi) observable, with the
task's weighting (PSIS; the clip of older versions) and with the raw weights. Prints each PMF's JS
against the reference's mean histogram, what the weighting alone changes (JS between its two
histograms), and the JS between
every pair of reweighted histograms. For two PMFs trained the same way on independent
data, E JS(A, B) is about twice the variance part of each one's JS against the truth (small
deviations: JS ~ sum (p - q)^2 / 8p), which separates a force-matched PMF's variance from its
bias (numbers in docs/force-matching.md). Point estimates (no bootstrap): a diagnostic, not a score.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.evaluate import bank_log_weights, observable_index
from cgbg_bench.pmf import default_device
from cgbg_bench.task import load_task
from cgbg_bench.weighting import clip_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmfs", nargs="+", metavar="PMF")
    args = ap.parse_args()
    if len(set(args.pmfs)) != len(args.pmfs) or len(args.pmfs) < 2:
        ap.error("give at least two different PMFs")
    task = load_task(args.task)
    obs = task.observables[0]
    proposal, reference = task.load_proposal(), task.load_reference()
    index = observable_index(task, proposal.positions)[0]
    p = M.normalize(reference.block_hist[:, 0].sum(0))
    labels = ("task's weighting", "no clip")
    hists: dict[tuple[str, str], np.ndarray] = {}
    print(f"{task.name} v{task.version}: JS against the reference ({task.metrics.describe()} / no clip)")
    for pmf in args.pmfs:
        _, log_w = bank_log_weights(pmf, task, device=default_device(), proposal=proposal)
        for label, w in zip(labels, (task.metrics.bank_weights(log_w).weights, clip_weights(log_w, 100.0))):
            hists[pmf, label] = M.normalize(M.weighted_histogram(index, w, obs.n_bins))
        print(f"  {pmf}: " + " / ".join(f"{float(M.js_divergence(p, hists[pmf, c])):.4f}" for c in labels)
              + f"; the weighting alone: JS(task's, none) "
              f"{float(M.js_divergence(*(hists[pmf, c] for c in labels))):.4f}")
    print(f"JS between reweighted histograms ({task.metrics.describe()} / no clip)")
    for a, b in itertools.combinations(args.pmfs, 2):
        print(f"  {a} vs {b}: " + " / ".join(f"{float(M.js_divergence(hists[a, c], hists[b, c])):.4f}"
                                             for c in labels))

if __name__ == "__main__":
    main()
