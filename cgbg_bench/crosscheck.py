"""Correctness check of a proposal bank: reweighted bank vs CG Langevin simulation of one PMF.

Importance reweighting claims that the bank, weighted by exp(-U/kT) / q, samples the
Boltzmann distribution of the PMF U. A CG Langevin simulation of the same U samples it
too, without any proposal. If log q is exact (and the bank covers the support), the
two (phi, psi) distributions agree within their sampling noise:

- bank side: energies, log-weights, clipping and histograms exactly as
  :func:`cgbg_bench.evaluate.evaluate` computes them; bootstrap over the task's
  proposal blocks;
- simulation side: ``n_walkers`` walkers started from bank samples drawn by importance
  weight (or uniformly, ``start="raw"``), BAOAB Langevin (:func:`cgbg_bench.simulate.cg_langevin`)
  in nm, ps, kJ/mol, amu; the first ``n_discard`` frames of every walker are dropped;
  bootstrap over walkers (each walker is one block: walkers are independent, frames
  within a walker are not).

Reported per (phi, psi) observable: JS(sim, reweighted) beside its noise floor (the
expected JS of two independent samples of these sizes, computed as
:func:`cgbg_bench.bootstrap.bootstrap_scores` does), the phi > 0 population of each
side, and the 1-D phi free-energy profiles. Verdict: agreement when, for every
observable, JS exceeds the floor by at most 2 combined standard errors and the phi > 0
populations differ by at most 2 combined standard errors. docs/crosscheck.md has the
method, its limits (walkers started from the weighted bank test basin populations only
as far as they cross barriers) and a measured result.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from cgbg_bench import metrics as M
from cgbg_bench.bootstrap import Metric, block_sums
from cgbg_bench.errors import CgbgError
from cgbg_bench.evaluate import DEFAULT_BATCH_SIZE, bank_log_weights, observable_index
from cgbg_bench.observables import dihedral
from cgbg_bench.progress import progress as make_progress
from cgbg_bench.pmf import default_device, load_pmf
from cgbg_bench.simulate import cg_langevin
from cgbg_bench.task import Proposal, Task
from cgbg_bench.weighting import clip_weights, describe

__all__ = [
    "CrosscheckError",
    "SimulationDiverged",
    "ObservableCheck",
    "CrosscheckResult",
    "crosscheck",
    "plot_crosscheck",
    "N_SIGMA",
    "START_MODES",
]

#: Tolerance of the verdict, in combined standard errors.
N_SIGMA = 2.0
#: How walkers are started: from bank samples drawn by importance weight, or uniformly.
START_MODES = ("weighted", "raw")


class CrosscheckError(CgbgError, ValueError):
    """The crosscheck cannot run with these inputs (task kind, sizes, settings)."""


class SimulationDiverged(CgbgError, FloatingPointError):
    """The CG Langevin simulation produced non-finite positions or energies."""


@dataclass(frozen=True)
class ObservableCheck:
    """One (phi, psi) observable: simulation (sim) against the reweighted bank (bank).

    js and js_floor are bootstrap means (value), standard deviations (error) and the
    full-data JS (point; js_floor has none, its point is the replicate mean). Populations
    are the phi > 0 fractions. Profiles: free energy -ln p(phi) in kT over the observable's
    phi bins (min subtracted, NaN where empty), with bootstrap standard deviations.
    """

    name: str
    js: Metric
    js_floor: Metric
    pmf_error: Metric
    phi_positive_sim: Metric
    phi_positive_bank: Metric
    phi_fe_rmse: Metric
    walkers_mixed: float  # fraction of walkers with >= 5% of their production frames on each side of phi = 0
    phi_centres: np.ndarray
    phi_profile_sim: np.ndarray
    phi_profile_sim_error: np.ndarray
    phi_profile_bank: np.ndarray
    phi_profile_bank_error: np.ndarray
    hist_sim: np.ndarray  # (bins_phi, bins_psi), normalized to sum 1
    hist_bank: np.ndarray

    @property
    def js_excess_sigma(self) -> float:
        """(JS - floor) in combined standard errors."""
        se = math.hypot(self.js.error, self.js_floor.error)
        return (self.js.value - self.js_floor.value) / se if se > 0 else math.inf

    @property
    def population_sigma(self) -> float:
        """(phi>0 population sim - bank) in combined standard errors (signed)."""
        se = math.hypot(self.phi_positive_sim.error, self.phi_positive_bank.error)
        diff = self.phi_positive_sim.point - self.phi_positive_bank.point
        return diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))

    @property
    def js_agrees(self) -> bool:
        return self.js_excess_sigma <= N_SIGMA

    @property
    def population_agrees(self) -> bool:
        return abs(self.population_sigma) <= N_SIGMA

    def as_dict(self) -> dict:
        return {
            "js": self.js.as_dict(),
            "js_floor": self.js_floor.as_dict(),
            "pmf_error": self.pmf_error.as_dict(),
            "phi_positive_sim": self.phi_positive_sim.as_dict(),
            "phi_positive_bank": self.phi_positive_bank.as_dict(),
            "phi_fe_rmse": self.phi_fe_rmse.as_dict(),
            "js_excess_sigma": self.js_excess_sigma,
            "population_sigma": self.population_sigma,
            "js_agrees": self.js_agrees,
            "population_agrees": self.population_agrees,
            "walkers_mixed": self.walkers_mixed,
            "phi_profile": {
                "phi_rad": _finite_list(self.phi_centres),
                "sim_kT": _finite_list(self.phi_profile_sim),
                "sim_error_kT": _finite_list(self.phi_profile_sim_error),
                "bank_kT": _finite_list(self.phi_profile_bank),
                "bank_error_kT": _finite_list(self.phi_profile_bank_error),
            },
        }


@dataclass(frozen=True)
class CrosscheckResult:
    task: str
    task_version: int
    observables: Mapping[str, ObservableCheck]
    n_bank: int
    ess: float  # Kish ESS fraction of the weights after the weighting step
    clip_percentile: float | None  # None: the task's PSIS weighting
    clipped_weight_fraction: float  # share of the raw normalized weight that the weighting sets to 0
    n_walkers: int
    n_frames: int
    n_discard: int
    stride: int
    dt_ps: float
    friction_per_ps: float
    mass_amu: float
    start: str
    seed: int
    n_bootstrap: int
    sim_energy_kj_per_mol: tuple[float, float, float]  # min, mean, max over production frames
    runtime_s: float
    device: str
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        """True when every observable passes both the JS and the population test."""
        return all(o.js_agrees and o.population_agrees for o in self.observables.values())

    @property
    def production_ps(self) -> float:
        """Production time per walker (after the discarded part), in ps."""
        return (self.n_frames - self.n_discard) * self.stride * self.dt_ps

    @property
    def equilibration_ps(self) -> float:
        return self.n_discard * self.stride * self.dt_ps

    def as_dict(self) -> dict:
        from cgbg_bench import __version__

        return {
            "task": self.task,
            "task_version": self.task_version,
            "agree": self.agree,
            "n_sigma": N_SIGMA,
            "observables": {k: o.as_dict() for k, o in self.observables.items()},
            "n_bank": self.n_bank,
            "ess": self.ess,
            "clip_percentile": self.clip_percentile,
            "weighting": describe("clip" if self.clip_percentile is not None else "psis", self.clip_percentile),
            "clipped_weight_fraction": self.clipped_weight_fraction,
            "simulation": {
                "n_walkers": self.n_walkers,
                "n_frames": self.n_frames,
                "n_discard": self.n_discard,
                "stride": self.stride,
                "dt_ps": self.dt_ps,
                "friction_per_ps": self.friction_per_ps,
                "mass_amu": self.mass_amu,
                "start": self.start,
                "equilibration_ps": self.equilibration_ps,
                "production_ps_per_walker": self.production_ps,
                "energy_kj_per_mol_min_mean_max": list(self.sim_energy_kj_per_mol),
            },
            "seed": self.seed,
            "n_bootstrap": self.n_bootstrap,
            "runtime_s": self.runtime_s,
            "device": self.device,
            "cgbg_bench_version": __version__,
            "torch_version": torch.__version__,
            **dict(self.info),
        }


def _finite_list(a: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, np.float64)]


class _OnDevice(torch.nn.Module):
    """Evaluate ``module`` on ``device`` for CPU inputs (the integrator keeps its state on the CPU)."""

    def __init__(self, module: torch.nn.Module, device: str):
        super().__init__()
        self.module, self.device = module, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device)).to(x.device)


def _check_inputs(task: Task, n_walkers, n_frames, stride, dt_ps, friction_per_ps, mass_amu, n_discard,
                  n_bootstrap, start) -> None:
    if any(o.kind != "dihedral_pair" for o in task.observables) or len(task.input_shape) != 2:
        raise CrosscheckError(
            f"task {task.name} has {[o.kind for o in task.observables]} observables: the crosscheck compares "
            "(phi, psi) distributions and needs a peptide task (dihedral_pair observables, (n_beads, 3) input)"
        )
    if task.energy_unit != "kJ/mol":
        raise CrosscheckError(f"task {task.name} has energies in {task.energy_unit}: the CG simulation runs in "
                              "nm, ps, kJ/mol, amu and needs a task in kJ/mol")
    for name, value, low in (("n_walkers", n_walkers, 8), ("n_frames", n_frames, 2), ("stride", stride, 1),
                             ("n_bootstrap", n_bootstrap, 2)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise CrosscheckError(f"{name} must be an integer >= {low}, got {value!r}"
                                  + (" (walkers are the bootstrap blocks of the simulation)"
                                     if name == "n_walkers" else ""))
    for name, value in (("dt_ps", dt_ps), ("friction_per_ps", friction_per_ps), ("mass_amu", mass_amu)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise CrosscheckError(f"{name} must be a positive number, got {value!r}")
    if not 0 <= n_discard < n_frames:
        raise CrosscheckError(f"n_discard must be in [0, n_frames) = [0, {n_frames}), got {n_discard}")
    if start not in START_MODES:
        raise CrosscheckError(f"start must be one of {START_MODES}, got {start!r}")


def simulate_walkers(module, x0, *, kT, n_frames, stride, dt_ps, friction_per_ps, mass_amu, seed, progress,
                     segment_frames: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n_frames, n_walkers, n_beads, 3) and energies (n_frames, n_walkers).

    Run in segments of ``segment_frames`` frames (progress, bounded work per call); each
    segment redraws the velocities from Maxwell-Boltzmann, which leaves the canonical
    distribution of positions unchanged.
    """
    seeds = np.random.SeedSequence([seed, 7]).generate_state(max(1, -(-n_frames // segment_frames)))
    x, frames, energies = np.asarray(x0, np.float32), [], []
    done = 0
    bar = make_progress(n_frames, desc="simulation", unit="frame", delay_s=3.0, enabled=progress)
    for k, segment_seed in enumerate(seeds):
        n = min(segment_frames, n_frames - done)
        try:
            run = cg_langevin(module, x, kT=kT, n_frames=n, stride=stride, dt=dt_ps, friction=friction_per_ps,
                              mass=mass_amu, seed=int(segment_seed))
        except FloatingPointError as exc:
            raise SimulationDiverged(
                f"CG Langevin diverged between frame {done} and {done + n} (dt {dt_ps * 1000:g} fs, mass "
                f"{mass_amu:g} amu, friction {friction_per_ps:g}/ps): lower the time step or raise the mass"
            ) from exc
        bad = ~np.isfinite(run.energies)
        if bad.any():
            raise SimulationDiverged(
                f"CG Langevin gave non-finite energies in {int(bad.sum())} walker-frames between frame {done} and "
                f"{done + n} (dt {dt_ps * 1000:g} fs): the PMF is not finite along the trajectory; lower the "
                "time step"
            )
        frames.append(run.positions)
        energies.append(run.energies)
        x = run.positions[-1]
        done += n
        bar.update_to(done)
    bar.close()
    return np.concatenate(frames), np.concatenate(energies)


def _compare(
    sim_blocks: np.ndarray,
    bank_blocks: np.ndarray,
    sim_pos: np.ndarray,
    bank_pos: np.ndarray,
    *,
    bins: tuple[int, int],
    n_bootstrap: int,
    rng: np.random.Generator,
    chunk: int = 50,
) -> dict[str, np.ndarray]:
    """Bootstrap both sides (blocks with replacement) and every compared quantity.

    *_blocks: (n_blocks, n_obs, n_bins) histograms per block; *_pos: (n_blocks, n_obs, 2)
    summed weight with phi <= 0 and phi > 0 per block. Returns replicate arrays
    (n_bootstrap, n_obs[, ...]) and full-data values.
    """
    n_obs = sim_blocks.shape[1]
    nb_phi = bins[0]
    marg = lambda b: b.reshape(b.shape[:-1] + tuple(bins)).sum(-1)  # noqa: E731  phi marginal
    sim_phi, bank_phi = marg(sim_blocks), marg(bank_blocks)
    occupied = ((sim_blocks.sum(0) > 0) | (bank_blocks.sum(0) > 0)).any(0)
    n_empty = int(occupied.size - occupied.sum())
    s_occ, b_occ = sim_blocks[:, :, occupied], bank_blocks[:, :, occupied]
    s_hat, b_hat = M.normalize(s_occ.sum(0)), M.normalize(b_occ.sum(0))
    out = {k: np.full((n_bootstrap, n_obs), np.nan) for k in
           ("js", "js_floor", "pmf_error", "pos_sim", "pos_bank", "fe_rmse")}
    out["f_sim"] = np.full((n_bootstrap, n_obs, nb_phi), np.nan)
    out["f_bank"] = np.full((n_bootstrap, n_obs, nb_phi), np.nan)

    def resample(counts, blocks):
        flat = np.ascontiguousarray(blocks).reshape(blocks.shape[0], -1)
        return (counts @ flat).reshape((counts.shape[0],) + blocks.shape[1:])

    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        sl = slice(start, start + r)
        cs = rng.multinomial(len(sim_blocks), np.full(len(sim_blocks), 1 / len(sim_blocks)), size=r).astype(float)
        cb = rng.multinomial(len(bank_blocks), np.full(len(bank_blocks), 1 / len(bank_blocks)), size=r).astype(float)
        s, b = M.normalize(resample(cs, s_occ)), M.normalize(resample(cb, b_occ))
        out["js"][sl] = M.js_divergence(s, b)
        out["js_floor"][sl] = 2.0 * (M.js_divergence(s, s_hat) + M.js_divergence(b, b_hat))
        out["pmf_error"][sl] = M.pmf_error(b, s, n_empty)
        ps, pb = resample(cs, sim_pos), resample(cb, bank_pos)
        out["pos_sim"][sl] = ps[..., 1] / ps.sum(-1)
        out["pos_bank"][sl] = pb[..., 1] / pb.sum(-1)
        fs, fb = M.normalize(resample(cs, sim_phi)), M.normalize(resample(cb, bank_phi))
        out["fe_rmse"][sl] = M.fe_rmse(fb, fs)
        out["f_sim"][sl], out["f_bank"][sl] = M.free_energy(fs), M.free_energy(fb)
    s_phi_hat, b_phi_hat = M.normalize(sim_phi.sum(0)), M.normalize(bank_phi.sum(0))
    out["point"] = {
        "js": M.js_divergence(s_hat, b_hat),
        "pmf_error": M.pmf_error(b_hat, s_hat, n_empty),
        "pos_sim": sim_pos.sum(0)[:, 1] / sim_pos.sum(0).sum(-1),
        "pos_bank": bank_pos.sum(0)[:, 1] / bank_pos.sum(0).sum(-1),
        "fe_rmse": M.fe_rmse(b_phi_hat, s_phi_hat),
        "f_sim": M.free_energy(s_phi_hat),
        "f_bank": M.free_energy(b_phi_hat),
        "hist_sim": M.normalize(sim_blocks.sum(0)),
        "hist_bank": M.normalize(bank_blocks.sum(0)),
    }
    return out


def _nanstd(a: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(a)
    n = ok.sum(axis)
    mean = np.where(ok, a, 0).sum(axis) / np.maximum(n, 1)
    var = np.where(ok, (a - np.expand_dims(mean, axis)) ** 2, 0).sum(axis) / np.maximum(n - 1, 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def crosscheck(
    pmf_module,
    task: Task,
    *,
    n_walkers: int = 256,
    n_frames: int = 1000,
    stride: int = 50,
    dt_ps: float = 0.002,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    n_bootstrap: int | None = None,
    bank_samples: int | None = None,
    device: str | None = None,
    mass_amu: float = 12.0,
    n_discard: int | None = None,
    start: str = "weighted",
    clip_percentile: float | None = None,
    proposal: Proposal | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> CrosscheckResult:
    """Compare the reweighted bank of ``task`` with a CG Langevin simulation of ``pmf_module``.

    pmf_module: a loaded PMF (nn.Module) or a path to one. Every walker runs
    ``n_frames`` frames of ``stride`` steps of ``dt_ps``; the first ``n_discard``
    frames (default a tenth) are discarded as equilibration. ``bank_samples`` uses a
    bank of that size (default: the task's); ``proposal`` passes a bank directly.
    ``n_bootstrap`` defaults to the task's; ``clip_percentile`` None weights the bank as the task
    does (PSIS, or its clip), a number clips at that percentile instead (a different clip
    separates a clipping bias from an error in log q). Every bead has mass
    ``mass_amu``.
    Raises CrosscheckError for unusable inputs and SimulationDiverged when the
    simulation blows up.
    """
    t0 = time.perf_counter()
    n_bootstrap = task.metrics.n_bootstrap if n_bootstrap is None else n_bootstrap
    n_discard = n_frames // 10 if n_discard is None else n_discard
    _check_inputs(task, n_walkers, n_frames, stride, dt_ps, friction_per_ps, mass_amu, n_discard, n_bootstrap,
                  start)
    if clip_percentile is not None and not 0 < clip_percentile <= 100:
        raise CrosscheckError(f"clip_percentile must be in (0, 100], got {clip_percentile!r}")
    if bank_samples is not None and (not isinstance(bank_samples, (int, np.integer)) or bank_samples < 7):
        raise CrosscheckError(f"bank_samples must be an integer >= 7, got {bank_samples!r}")
    device = device or default_device()
    module = load_pmf(pmf_module, device) if isinstance(pmf_module, (str, os.PathLike)) else pmf_module

    # (a) the bank, scored as cgbg_bench.evaluate scores it
    positions, log_w = bank_log_weights(module, task, device=device, batch_size=batch_size, n_samples=bank_samples,
                                        progress=progress, proposal=proposal)
    if clip_percentile is None:
        w, clip = task.metrics.bank_weights(log_w).weights, task.metrics.clip_percentile
    else:
        w, clip = clip_weights(log_w, float(clip_percentile)), float(clip_percentile)
    clipped_weight = float(M.normalized_weights(log_w)[w == 0].sum())
    n_bins = task.observables[0].n_bins
    bank_index = observable_index(task, positions)
    bank_blocks = block_sums(bank_index, w, task.metrics.proposal_blocks, n_bins)
    bank_positive = np.stack([dihedral(positions, o.indices[0]) > 0 for o in task.observables]).astype(np.int64)
    bank_pos = block_sums(bank_positive, w, task.metrics.proposal_blocks, 2)

    # (b) the simulation, from bank samples (importance resampling with replacement, or uniform)
    rng = np.random.default_rng([seed, 1])
    if start == "weighted":
        starts = rng.choice(len(w), size=n_walkers, replace=True, p=w)
    else:
        starts = rng.choice(len(w), size=n_walkers, replace=len(w) < n_walkers)
    sim_module = module if str(device) == "cpu" else _OnDevice(module, device)
    frames, sim_energies = simulate_walkers(sim_module, positions[starts], kT=task.kT, n_frames=n_frames, stride=stride,
                                     dt_ps=dt_ps, friction_per_ps=friction_per_ps, mass_amu=mass_amu,
                                     seed=seed, progress=progress)
    prod = frames[n_discard:].transpose(1, 0, 2, 3)  # (walkers, frames, beads, 3): walker-major
    n_prod = prod.shape[1]
    prod = prod.reshape((-1,) + prod.shape[2:])
    ones = np.ones(len(prod))
    sim_blocks = block_sums(observable_index(task, prod), ones, n_walkers, n_bins)
    sim_positive = np.stack([dihedral(prod, o.indices[0]) > 0 for o in task.observables]).astype(np.int64)
    sim_pos = block_sums(sim_positive, ones, n_walkers, 2)
    frac = sim_positive.reshape(len(task.observables), n_walkers, n_prod).mean(-1)
    mixed = ((frac >= 0.05) & (frac <= 0.95)).mean(-1)

    # (c) the comparison
    reps = _compare(sim_blocks, bank_blocks, sim_pos, bank_pos, bins=task.observables[0].bins,
                    n_bootstrap=n_bootstrap, rng=np.random.default_rng([seed, 2]))
    pt = reps["point"]
    checks = {}
    for k, obs in enumerate(task.observables):
        lo, hi = obs.range[0]
        nb = obs.bins[0]
        checks[obs.name] = ObservableCheck(
            name=obs.name,
            js=Metric.from_replicates(reps["js"][:, k], pt["js"][k]),
            js_floor=Metric.from_replicates(reps["js_floor"][:, k], float(np.nanmean(reps["js_floor"][:, k]))),
            pmf_error=Metric.from_replicates(reps["pmf_error"][:, k], pt["pmf_error"][k]),
            phi_positive_sim=Metric.from_replicates(reps["pos_sim"][:, k], pt["pos_sim"][k]),
            phi_positive_bank=Metric.from_replicates(reps["pos_bank"][:, k], pt["pos_bank"][k]),
            phi_fe_rmse=Metric.from_replicates(reps["fe_rmse"][:, k], pt["fe_rmse"][k]),
            walkers_mixed=float(mixed[k]),
            phi_centres=lo + (np.arange(nb) + 0.5) * (hi - lo) / nb,
            phi_profile_sim=pt["f_sim"][k],
            phi_profile_sim_error=_nanstd(reps["f_sim"][:, k], 0),
            phi_profile_bank=pt["f_bank"][k],
            phi_profile_bank_error=_nanstd(reps["f_bank"][:, k], 0),
            hist_sim=pt["hist_sim"][k].reshape(obs.bins),
            hist_bank=pt["hist_bank"][k].reshape(obs.bins),
        )
    e = sim_energies[n_discard:]
    return CrosscheckResult(
        task=task.name,
        task_version=task.version,
        observables=checks,
        n_bank=len(positions),
        ess=M.ess(w),
        clip_percentile=clip,
        clipped_weight_fraction=clipped_weight,
        n_walkers=n_walkers,
        n_frames=n_frames,
        n_discard=n_discard,
        stride=stride,
        dt_ps=float(dt_ps),
        friction_per_ps=float(friction_per_ps),
        mass_amu=float(mass_amu),
        start=start,
        seed=seed,
        n_bootstrap=n_bootstrap,
        sim_energy_kj_per_mol=(float(e.min()), float(e.mean()), float(e.max())),
        runtime_s=time.perf_counter() - t0,
        device=str(device),
        info={"submission": str(pmf_module) if isinstance(pmf_module, (str, os.PathLike))
              else type(module).__name__},
    )


def _mass_level(h: np.ndarray, mass: float = 0.999) -> float:
    """Free energy (kT above the minimum) of the bins holding the most probable ``mass`` of h.

    A colour or axis range that shows the populated region: a few rare bins of a reweighted
    bank (one heavy sample) would stretch a min-max range to tens of kT.
    """
    p = np.sort(np.asarray(h, np.float64).ravel())[::-1]
    p = p[p > 0]
    if p.size < 2:
        return 1.0
    last = min(int(np.searchsorted(np.cumsum(p) / p.sum(), mass)), p.size - 1)
    return max(float(np.log(p[0] / p[last])), 1.0)


def plot_crosscheck(result: CrosscheckResult, path: str | os.PathLike) -> Path:
    """Per observable: (phi, psi) free energy of the simulation and of the reweighted bank on
    one colour scale (kT), and the 1-D phi profiles with bootstrap bands."""
    from matplotlib.figure import Figure

    from cgbg_bench._io import atomic_path

    checks = list(result.observables.values())
    fig = Figure(figsize=(15, 3.8 * len(checks)))  # not pyplot's: the caller's backend is left alone
    axes = fig.subplots(len(checks), 3, squeeze=False)
    for row, c in enumerate(checks):
        surfaces = [M.free_energy(h.ravel()).reshape(h.shape) for h in (c.hist_sim, c.hist_bank)]
        vmax = max(_mass_level(h) for h in (c.hist_sim, c.hist_bank))
        extent = [-math.pi, math.pi, -math.pi, math.pi]
        for j, (s, title) in enumerate(zip(surfaces, ("CG Langevin simulation", "reweighted bank"))):
            im = axes[row, j].imshow(s.T, origin="lower", extent=extent, vmin=0, vmax=vmax, cmap="viridis",
                                     aspect="auto")
            axes[row, j].set_title(f"{c.name}: {title}", fontsize=9)
            axes[row, j].set_xlabel("phi (rad)")
            axes[row, j].set_ylabel("psi (rad)")
        fig.colorbar(im, ax=axes[row, :2].tolist(), label="free energy (kT)")
        ax = axes[row, 2]
        for f, err, style, label in ((c.phi_profile_sim, c.phi_profile_sim_error, "C0", "simulation"),
                                     (c.phi_profile_bank, c.phi_profile_bank_error, "C3", "reweighted bank")):
            ax.plot(c.phi_centres, f, color=style, label=label)
            ax.fill_between(c.phi_centres, f - err, f + err, color=style, alpha=0.25, linewidth=0)
        ax.set_ylim(-0.5, max(_mass_level(h.sum(-1)) for h in (c.hist_sim, c.hist_bank)) + 1.0)
        ax.set_xlabel("phi (rad)")
        ax.set_ylabel("free energy (kT)")
        ax.set_title(f"{c.name}: phi>0 sim {c.phi_positive_sim.point:.3g}, bank {c.phi_positive_bank.point:.3g}",
                     fontsize=9)
        ax.legend(fontsize=8)
    verdict = "agree" if result.agree else "DISAGREE"
    fig.suptitle(f"{result.task} v{result.task_version}: {verdict} ({result.n_walkers} walkers x "
                 f"{result.production_ps:g} ps, bank {result.n_bank})")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    return path
