"""What does a (phi, psi) Fourier correction add to a shipped force-matched PMF? Fit it, score it.

    python docs/scripts/dihedral_correction_gain.py ala2-core-beta baselines/ala2-core-beta/fm-biased.pt2 \\
        --orders 1 2 3 4 5 6

Reads the PMF's training data from its sidecar (runs, chunk pins, block length, validation
blocks), fits ``cgbg_bench.fm.fit_dihedral_correction`` of each order to the exported PMF's force
residuals (a) on its training blocks only, to measure the force error on its validation blocks,
and (b) on every frame, as ``train-pmf --dihedral-correction K`` does, and scores PMF + correction
on the task's bank like a submission (the task's weighting, block bootstrap): JS, point JS at the clip and
unclipped, PMF error, ESS, and the populations that docs/scripts/js_decomposition.py splits JS
by. The correction's energy is added to the log-weights (its (phi, psi) are those of each bank
sample), so nothing is exported. Numbers in docs/force-matching.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from cgbg_bench import metrics as M
from cgbg_bench.evaluate import bank_log_weights, observable_index, score_log_weights
from cgbg_bench.fm import fit_dihedral_correction, load_training_data
from cgbg_bench.pmf import default_device, load_pmf
from cgbg_bench.reference import basin_masks
from cgbg_bench.task import load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    ap.add_argument("--orders", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--n-bootstrap", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    side = yaml.safe_load(Path(args.pmf).with_suffix(".yaml").read_text())
    pins = {d["dir"]: d["n_chunks"] for d in side["data"]}
    data = load_training_data(list(pins), side["model"]["representation"], system=side["model"]["system"],
                              block_ps=side["settings"]["block_ps"], max_chunks=pins)
    is_val = np.isin(data.block_ids, side["training"]["val_blocks"])
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    base = load_pmf(args.pmf, device="cpu")

    task = load_task(args.task)
    proposal, reference = task.load_proposal(), task.load_reference()
    _, log_w = bank_log_weights(args.pmf, task, device=default_device(), proposal=proposal)
    index = observable_index(task, proposal.positions)
    obs = task.observables[0]
    p_ref = M.normalize(reference.block_hist[:, 0].sum(0))
    reg = basin_masks(*obs.bins)
    phi_c = np.repeat(-180 + (np.arange(obs.bins[0]) + 0.5) * 360 / obs.bins[0], obs.bins[1])
    c5 = reg["beta/PPII"] & (phi_c < -115)
    ppii = reg["beta/PPII"] & ~c5
    bank_x = torch.as_tensor(proposal.positions)

    def row(label: str, lw: np.ndarray, val_rmse: str) -> str:
        s = score_log_weights(task, lw, index, reference, n_bootstrap=args.n_bootstrap).metrics
        q = M.normalize(M.weighted_histogram(index[0], M.normalized_weights(lw), obs.n_bins))
        cells = [label, val_rmse, f"{s['js'].value:.4f}({s['js'].error * 1e4:.0f})", f"{s['js'].point:.4f}",
                 f"{float(M.js_divergence(p_ref, q)):.4f}", f"{s['pmf_error'].value:.3f}", f"{s['ess'].value:.3f}",
                 f"{q[c5].sum() / q[ppii].sum():.3f}", f"{100 * q[reg['alpha_R']].sum():.1f}%",
                 f"{100 * q[reg['phi > 0']].sum():.2f}%"]
        return "| " + " | ".join(cells) + " |"

    print(f"{task.name} v{task.version}, {args.pmf}: {len(data.positions)} frames ({len(val_idx)} validation), "
          f"{len(log_w)} bank samples, {args.n_bootstrap} bootstrap replicates")
    print("| PMF | val force RMSE | JS | JS point | JS point unclipped | PMF err | ESS | C5/PPII | alpha_R | phi > 0 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| reference | | | | | | | {p_ref[c5].sum() / p_ref[ppii].sum():.3f} | "
          f"{100 * p_ref[reg['alpha_R']].sum():.1f}% | {100 * p_ref[reg['phi > 0']].sum():.2f}% |")
    val_base, notes = None, []
    for order in args.orders:
        held, held_stats = fit_dihedral_correction(base, data.positions, data.forces, data.mapping, order,
                                                   fit_idx=train_idx, eval_idx=val_idx)
        full, full_stats = fit_dihedral_correction(base, data.positions, data.forces, data.mapping, order)
        notes.append(f"order {order}: condition number {full_stats['condition_number']:.3g}, largest |E_c| on "
                     f"the (phi, psi) grid {full_stats['max_abs_kj_per_mol']:.2f} kJ/mol (fitted on every frame)")
        if val_base is None:
            val_base = np.sqrt(held_stats["mse_base"])
            print(row("as shipped", log_w, f"{val_base:.3f}"))
        with torch.no_grad():
            e_held = held(bank_x).double().numpy()
            e_full = full(bank_x).double().numpy()
        print(row(f"+ order {order}, fitted on the training blocks", log_w - e_held / task.kT,
                  f"{np.sqrt(held_stats['mse_corrected']):.3f}"))
        print(row(f"+ order {order}, fitted on every frame", log_w - e_full / task.kT, "(not held out)"))
    print("\n".join(notes))


if __name__ == "__main__":
    main()
