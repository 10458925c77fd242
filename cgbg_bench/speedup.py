"""The benchmark's headline claim, measured: scoring by reweighting against scoring by simulation.

    python -m cgbg_bench.speedup ala2-core-beta baselines/ala2-core-beta/fm-biased.pt2 \\
        --walkers 128 --ns 0.05 --out benchmarks/speedup.json

Both ways estimate the same thing, the PMF's (phi, psi) distribution, scored by JS against the
reference. On one machine, in one process:

1. ``evaluate`` of the PMF on the task's bank, timed (the bank is loaded from the cache; the
   model runs in its confined child as for any submission).
2. CG Langevin dynamics of the same PMF (:mod:`cgbg_bench.simulate`, as ``crosscheck`` runs it:
   BAOAB, 2 fs, friction 1/ps, 12 amu beads), ``walkers`` independent walkers of ``ns`` each,
   the first tenth of every walker discarded, timed.
3. The **PMF-side** error of each estimate: the bootstrap standard deviation of its JS with the
   reference held fixed (its blocks summed into one exact block), so that the reference's own
   noise, common to both, does not enter: the bank resampled by proposal blocks, the
   simulation by walkers (frames of one walker are correlated; walkers are not).
4. The simulation time needed to reach the bank's error. Asymptotically sigma ~ t^(-1/2) in the
   production time t; while the simulated histogram is sparse, JS is dominated by its own
   sampling noise and sigma falls faster, up to ~ t^-1. The exponent a is measured from the
   first half of every walker's production against all of it (sigma(t/2) / sigma(t) = 2^a) and
   held in [1/2, 1]: t_needed = t_equilibration + t_production (sigma_sim / sigma_bank)^(1/a),
   and the ratio t_needed / t_evaluate. With a = 1 the same formula gives a lower bound on the
   time (``speedup_at_least``): sigma never falls faster than 1/t.

The walkers start from bank samples drawn by importance weight, i.e. already in the PMF's
distribution; a simulation started anywhere else would need a longer equilibration, so the
ratio favours the simulation. With few walkers sigma_sim is itself uncertain (its bootstrap over
walkers); the JSON records the inputs so the extrapolation can be checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from cgbg_bench import __version__
from cgbg_bench._io import atomic_write_text
from cgbg_bench.bootstrap import block_sums, bootstrap_scores
from cgbg_bench.crosscheck import simulate_walkers
from cgbg_bench.evaluate import evaluate, observable_index, score_log_weights
from cgbg_bench.pmf import load_pmf
from cgbg_bench.task import Reference, Task, load_task

__all__ = ["measure_speedup", "main"]

#: Share of every walker discarded as equilibration (as ``crosscheck``'s default).
DISCARD = 0.1


def _fixed_reference(reference: Reference) -> Reference:
    """The reference with its blocks summed into one block that the bootstrap does not resample."""
    hist = np.asarray(reference.block_hist, np.float64).sum(axis=0, keepdims=True)
    return dataclasses.replace(reference, block_hist=hist, exact=True)


def measure_speedup(task: Task, pmf: str | Path, *, n_walkers: int = 128, ns: float = 0.05, dt_fs: float = 2.0,
                    save_fs: float = 100.0, seed: int = 0, device: str = "cpu") -> dict:
    """Time and error of ``evaluate`` and of a CG simulation of ``pmf`` on ``task`` (module docstring)."""
    reference = task.load_reference()
    proposal = task.load_proposal()
    fixed = _fixed_reference(reference)

    t0 = time.perf_counter()
    result, log_w = evaluate(pmf, task, device=device, proposal=proposal, reference=reference)
    t_eval = time.perf_counter() - t0
    bank = score_log_weights(task, log_w, observable_index(task, proposal.positions), fixed, seed=seed)

    dt_ps, stride = dt_fs / 1000.0, max(1, int(round(save_fs / dt_fs)))
    n_frames = max(10, int(round(ns * 1000.0 / (stride * dt_ps))))
    n_discard = int(round(DISCARD * n_frames))
    w = task.metrics.bank_weights(log_w).weights
    starts = np.random.default_rng([seed, 1]).choice(len(w), size=n_walkers, replace=True, p=w)
    module = load_pmf(pmf, device)
    t1 = time.perf_counter()
    frames, _ = simulate_walkers(module, proposal.positions[starts], kT=task.kT, n_frames=n_frames, stride=stride,
                          dt_ps=dt_ps, friction_per_ps=1.0, mass_amu=12.0, seed=seed, progress=True)
    t_sim = time.perf_counter() - t1
    names = [o.name for o in task.observables]
    one_d = [o.ndim == 1 for o in task.observables]
    n_boot, n_bins = task.metrics.n_bootstrap, task.observables[0].n_bins

    def walker_blocks(n_keep: int) -> np.ndarray:
        prod = frames[n_discard:n_discard + n_keep].transpose(1, 0, 2, 3)  # walker-major
        prod = prod.reshape((-1,) + prod.shape[2:])
        return block_sums(observable_index(task, prod), np.ones(len(prod)), n_walkers, n_bins)

    def sigma(blocks: np.ndarray) -> float:
        return bootstrap_scores(blocks, fixed.block_hist, observable_names=names, one_dimensional=one_d,
                                n_bootstrap=n_boot, seed=seed, p_exact=True).metrics["js"].error

    n_prod = n_frames - n_discard
    sim_blocks = walker_blocks(n_prod)
    sigma_sim, sigma_half = sigma(sim_blocks), sigma(walker_blocks(n_prod // 2))
    sim_full = bootstrap_scores(sim_blocks, reference.block_hist, observable_names=names, one_dimensional=one_d,
                                n_bootstrap=n_boot, seed=seed)

    sigma_bank = bank.metrics["js"].error
    exponent = float(np.clip(np.log2(sigma_half / sigma_sim), 0.5, 1.0))
    t_equil = t_sim * n_discard / n_frames
    t_prod = t_sim - t_equil
    t_needed = t_equil + t_prod * (sigma_sim / sigma_bank) ** (1.0 / exponent)
    t_at_least = t_equil + t_prod * (sigma_sim / sigma_bank)
    return {
        "task": task.name, "task_version": task.version, "pmf": str(pmf),
        "evaluate": {"wall_s": t_eval, "n_samples": result.n_samples, "js": result.scores.metrics["js"].as_dict(),
                     "js_error_pmf_side": sigma_bank},
        "simulation": {"wall_s": t_sim, "n_walkers": n_walkers, "ns_per_walker": ns, "dt_fs": dt_fs,
                       "save_fs": save_fs, "discarded_share": DISCARD, "js": sim_full.metrics["js"].as_dict(),
                       "js_error_pmf_side": sigma_sim, "js_error_pmf_side_half": sigma_half,
                       "error_exponent": exponent},
        "simulation_wall_s_to_match": t_needed,
        "speedup": t_needed / t_eval,
        "speedup_at_least": t_at_least / t_eval,
        "machine": {"cpu": platform.processor() or platform.machine(), "device": device},
        "cgbg_bench": __version__,
        "command": (f"python -m cgbg_bench.speedup {task.name} {pmf} --walkers {n_walkers} --ns {ns:g} "
                    f"--seed {seed}"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    ap.add_argument("--walkers", type=int, default=128)
    ap.add_argument("--ns", type=float, default=0.05, help="ns per walker, equilibration included")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="write the measurement as JSON here")
    args = ap.parse_args(argv)
    out = measure_speedup(load_task(args.task), args.pmf, n_walkers=args.walkers, ns=args.ns, seed=args.seed,
                          device=args.device)
    text = json.dumps(out, indent=2) + "\n"
    print(text, end="")
    if args.out is not None:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
