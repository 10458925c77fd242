"""Why are the biased-data flows broad, and what does weighting their training data buy?

    python docs/scripts/biased_flow_weights.py ala2-core-beta-biased --power 0 0.5 1

The -biased tasks' flows are trained on metadynamics and static-bias frames, which the bias
flattens along (phi, psi): a flow fitted to them by plain maximum likelihood spreads its mass
over the whole Ramachandran plane, and a PMF close to the unbiased distribution then finds
few bank samples where its mass is (low ESS). Weighting each frame's likelihood by
w = exp(V/kT)^power (V the bias energy of the frame; ``cgbg_bench.reference.frame_log_weights``)
interpolates between the biased distribution (power 0, the flows up to ala2 v12) and the
unbiased one (power 1, exact for the static-bias frames). For each power this trains the flow
with the task's recipe (settings and seed; the training frames of the task), draws a bank of
``--bank-size`` samples and scores the PMF (default: the task's PMF_B, fm-biased) on it with
the task's weighting: JS with its error, the JS floor, ESS, k-hat, and the training data's Kish
fraction. Trusted PMF files only (our own baselines): the PMF runs in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from cgbg_bench.build.alanine import train_flow, training_frames
    from cgbg_bench.build.recipe import load_recipe
    from cgbg_bench.cg.mappings import get_mapping
    from cgbg_bench.cg.zmatrix import zmatrix_for
    from cgbg_bench.evaluate import bank_log_weights, observable_index, score_log_weights
    from cgbg_bench.report import format_value_error
    from cgbg_bench.task import Proposal, load_task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", help="a -biased alanine task, e.g. ala2-core-beta-biased")
    ap.add_argument("--power", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--pmf", type=Path, default=None, help="default: the task's fm-biased baseline")
    ap.add_argument("--bank-size", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--n-bootstrap", type=int, default=100)
    args = ap.parse_args()
    task = load_task(args.task)
    recipe = load_recipe(task.root / "task.yaml")
    flow = recipe.flow if args.epochs is None else dataclasses.replace(recipe.flow, epochs=args.epochs)
    pmf = args.pmf or next(b.file.verify() for b in task.baselines if b.name == "fm-biased")
    mapping = get_mapping(task.system, task.representation)
    z = zmatrix_for(mapping)
    soft = [z.dihedral_index(q) for q in mapping.phi + mapping.psi]
    reference = task.load_reference()
    print(f"{task.name} v{task.version}; PMF {pmf}; bank {args.bank_size}; flow {dataclasses.asdict(flow)}")
    print("| power | Kish fraction (train) | val NLL | JS | JS floor | ESS | k-hat | train s |")
    print("|---|---|---|---|---|---|---|---|")
    frames, log_w = training_frames(recipe, "biased", task.representation, task.kT)
    for power in args.power:
        t0 = time.perf_counter()
        trial = dataclasses.replace(recipe, flow=dataclasses.replace(flow, bias_weight_power=power))
        model, report = train_flow(z, frames, log_w, soft, trial)
        train_s = time.perf_counter() - t0
        positions, log_q = model.sample_bank(args.bank_size, seed=recipe.seeds.bank)
        proposal = Proposal(positions, log_q)
        index = observable_index(task, positions)
        _, lw = bank_log_weights(pmf, task, device="cpu", proposal=proposal)
        weights = task.metrics.bank_weights(lw)
        s = score_log_weights(task, lw, index, reference, n_bootstrap=args.n_bootstrap, weights=weights).metrics
        kish = report.get("weights", {}).get("kish_fraction", {}).get("train", 1.0)
        print(f"| {power:g} | {kish:.3f} | {report['val_nll_mixture']:.3f} | "
              f"{format_value_error(s['js'].value, s['js'].error)} | {s['js_floor'].value:.4f} | "
              f"{s['ess'].value:.3f} | {weights.pareto_k:.2f} | {train_s:.0f} |", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
