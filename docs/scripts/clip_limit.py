"""How much of a PMF's score is the bank and its clip? Score the PMF made exact along (phi, psi).

    python docs/scripts/clip_limit.py ala2-core-beta baselines/ala2-core-beta/fm-biased.pt2

Takes a PMF's log-weights on the task's bank and adds, per (phi, psi) bin of the first
observable, log(p_ref / p_pmf), p_pmf being the PMF's unclipped reweighted histogram: the result
is the log-weight of a PMF whose (phi, psi) distribution is the reference's, i.e. one that
reproduces the reference exactly on this bank before the clip (samples in bins the reference never
visits get weight 0). Scored as a submission (task clip, block bootstrap), its JS estimates what
the bank, the clip and the reference's noise cost a PMF with the right (phi, psi) distribution.
An estimate, not a bound: within each bin the weights are still the given PMF's, and the clip
discards the heaviest of those (another PMF's would differ); and the correction is fitted to the
reference it is then scored against (optimistic). Scores at 99%, 99.9% and no clip, and the PMF
itself at the same settings; the task's own weighting (PSIS) of the same corrected weights is its
stored resolution (cgbg_bench/resolution.py, `cgbg-bench info TASK`).

``--mirror SHARE`` scores on a fresh bank of the task's flow (same size and seed) with the mirror
part of its mixture (cgbg_bench.flows.internal) set to SHARE instead of the task's bank, e.g.
``--mirror 0.1`` on a v9 task (whose flows have none) to see what that part buys.
"""

from __future__ import annotations

import argparse
import dataclasses


from cgbg_bench import metrics as M
from cgbg_bench.evaluate import bank_log_weights, observable_index, score_log_weights
from cgbg_bench.pmf import default_device
from cgbg_bench.report import format_value_error
from cgbg_bench.resolution import exact_along_log_weights
from cgbg_bench.task import Proposal, load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    ap.add_argument("--n-bootstrap", type=int, default=None, help="default: the task's")
    ap.add_argument("--mirror", type=float, default=None,
                    help="score on a fresh bank of the task's flow with this mirror share")
    args = ap.parse_args()
    task = load_task(args.task)
    reference = task.load_reference()
    if args.mirror is None:
        proposal = task.load_proposal()
    else:
        proposal = _mirror_bank(task, args.mirror)
    index = observable_index(task, proposal.positions)
    _, log_w = bank_log_weights(args.pmf, task, device=default_device(), proposal=proposal)
    bins = index[0]
    n_bins = task.observables[0].n_bins
    p_ref = M.normalize(reference.block_hist[:, 0].sum(0))
    p_pmf = M.normalize(M.weighted_histogram(bins, M.normalized_weights(log_w), n_bins))
    log_w_exact = exact_along_log_weights(bins, p_ref, log_w)  # as the task's stored resolution
    print(f"{task.name} v{task.version}, {len(log_w)} proposals; bins the reference visits but the "
          f"reweighted bank does not: {int(((p_ref > 0) & (p_pmf == 0)).sum())} "
          f"(reference mass {p_ref[p_pmf == 0].sum():.2e})")
    print("| weights | clip | JS | JS (point) | PMF err (kT^2) | ESS | JS floor |")
    print("|---|---|---|---|---|---|---|")
    for clip in (99.0, 99.9, 100.0):
        t = dataclasses.replace(task, metrics=dataclasses.replace(task.metrics, weighting="clip", clip_percentile=clip))
        for label, lw in (("PMF exact along (phi, psi)", log_w_exact), (args.pmf, log_w)):
            s = score_log_weights(t, lw, index, reference, n_bootstrap=args.n_bootstrap).metrics
            cells = [format_value_error(s["js"].value, s["js"].error), f"{s['js'].point:.4f}"]
            cells += [format_value_error(s[m].value, s[m].error) if m in s else "-"
                      for m in ("pmf_error", "ess", "js_floor")]
            print(f"| {label} | {clip:g}% | " + " | ".join(cells) + " |")


def _mirror_bank(task, share: float) -> Proposal:
    from cgbg_bench.flows.internal import ICFlow

    if task.bank is None or task.bank.generator != "ic-flow":
        raise SystemExit(f"{task.name}: --mirror needs a task whose bank an IC flow generates")
    flow = ICFlow.load(task.proposal.verify())
    try:
        flow.set_mirror(share)
    except ValueError as exc:
        raise SystemExit(f"--mirror {share}: {exc}") from exc
    positions, log_q = flow.sample_bank(task.bank.n_samples, task.bank.seed)
    print(f"fresh bank of {len(log_q)} samples, mirror share {share}, uniform share {flow.config['uniform']}")
    return Proposal(positions, log_q)


if __name__ == "__main__":
    main()
