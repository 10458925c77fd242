"""Simulation-free comparison of several PMFs on one bank: phi profiles and basin populations.

The showcase of the benchmark (docs/spec.md section 10): reweight ONE proposal bank under
each PMF (e.g. PMF_U and PMF_B) and compare, against the MD reference, the free-energy
profile along phi and the population of the phi > 0 basin (alpha_L / C7ax), each with a
bootstrap error (proposal blocks for the PMFs, time blocks for the reference). The
scores themselves (JS, PMF error, ESS) come from :func:`cgbg_bench.evaluate.evaluate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.bootstrap import block_sums
from cgbg_bench.errors import UsageError

__all__ = ["PhiProfile", "phi_profile_from_weights", "phi_profile_from_blocks", "compare_pmfs", "plot_phi_profiles"]


@dataclass(frozen=True)
class PhiProfile:
    """Marginal distribution of phi (100 bins on [-pi, pi)) and the phi > 0 population with its error."""

    label: str
    hist: np.ndarray  # (n_phi_bins,) normalized
    phi_positive: float
    phi_positive_error: float

    @property
    def free_energy_kT(self) -> np.ndarray:
        return M.free_energy(self.hist)


def _phi_marginal(flat_hist: np.ndarray, n_phi: int, n_psi: int) -> np.ndarray:
    """(..., n_phi * n_psi) C-order (phi slow) -> (..., n_phi)."""
    return flat_hist.reshape(*flat_hist.shape[:-1], n_phi, n_psi).sum(-1)


def _positive_mask(n_phi: int) -> np.ndarray:
    centres = -math.pi + (np.arange(n_phi) + 0.5) * 2 * math.pi / n_phi
    return centres > 0


def _profile(label: str, block_phi: np.ndarray, n_bootstrap: int, seed: int) -> PhiProfile:
    """block_phi (n_blocks, n_phi) weighted phi histograms; bootstrap over blocks."""
    rng = np.random.default_rng(seed)
    nb = block_phi.shape[0]
    counts = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_bootstrap).astype(float)
    reps = counts @ block_phi
    pos = _positive_mask(block_phi.shape[1])
    pop = reps[:, pos].sum(1) / np.maximum(reps.sum(1), 1e-300)
    total = block_phi.sum(0)
    return PhiProfile(label, M.normalize(total), float(total[pos].sum() / total.sum()), float(pop.std(ddof=1)))


def phi_profile_from_weights(label: str, index: np.ndarray, weights: np.ndarray, *, n_blocks: int,
                             bins: tuple[int, int] = (100, 100), n_bootstrap: int = 500,
                             seed: int = 0) -> PhiProfile:
    """Profile of a weighted bank: ``index`` (N,) flat (phi, psi) bins, ``weights`` (N,)."""
    blocks = block_sums(index[None, :], weights, n_blocks, bins[0] * bins[1])[:, 0]
    return _profile(label, _phi_marginal(blocks, *bins), n_bootstrap, seed)


def phi_profile_from_blocks(label: str, block_hist: np.ndarray, *, bins: tuple[int, int] = (100, 100),
                            n_bootstrap: int = 500, seed: int = 0) -> PhiProfile:
    """Profile of block histograms (n_blocks, n_bins) (the reference, MD runs)."""
    return _profile(label, _phi_marginal(np.asarray(block_hist, np.float64), *bins), n_bootstrap, seed)


def compare_pmfs(pmfs: dict, task, *, device: str = "cpu", n_bootstrap: int | None = None, seed: int = 0,
                 observable: int = 0) -> dict:
    """Evaluate every PMF (label -> path or module) on the task's bank; profiles along phi.

    Returns {"reference": PhiProfile, "proposal": PhiProfile (raw bank), "pmfs": {label:
    (Result, PhiProfile)}, "gb": {name: PhiProfile}} for the task's ``observable``-th
    (phi, psi) pair.
    """
    from cgbg_bench.evaluate import evaluate, observable_index

    obs = task.observables[observable]
    if obs.ndim != 2:
        raise UsageError(f"observable {observable}: task {task.name}'s observable {obs.name} is not a "
                         "(phi, psi) pair")
    nboot = task.metrics.n_bootstrap if n_bootstrap is None else n_bootstrap
    proposal, reference = task.load_proposal(), task.load_reference()
    index = observable_index(task, proposal.positions)[observable]
    nb = task.metrics.proposal_blocks
    out = {
        "reference": phi_profile_from_blocks("reference (MD)", reference.block_hist[:, observable],
                                             bins=obs.bins, n_bootstrap=nboot, seed=seed),
        "proposal": phi_profile_from_weights("proposal (raw)", index, np.full(len(index), 1.0 / len(index)),
                                             n_blocks=nb, bins=obs.bins, n_bootstrap=nboot, seed=seed),
        "pmfs": {},
        "gb": {},
        "weighting": task.metrics.describe(),
    }
    for label, pmf in pmfs.items():
        result, log_w = evaluate(pmf, task, device=device, n_bootstrap=nboot, seed=seed, proposal=proposal,
                                 reference=reference)
        w = task.metrics.bank_weights(log_w).weights
        out["pmfs"][label] = (result, phi_profile_from_weights(label, index, w, n_blocks=nb, bins=obs.bins,
                                                               n_bootstrap=nboot, seed=seed))
    for b in task.baselines:
        if b.kind == "md-histogram":
            with np.load(b.file.verify()) as z:
                hist = z["block_hist"][:, observable]
            out["gb"][b.name] = phi_profile_from_blocks(b.name, hist, bins=obs.bins, n_bootstrap=nboot, seed=seed)
    return out


def plot_phi_profiles(comparison: dict, path, title: str = "") -> None:
    """Free energy along phi (kT) of the reference, each reweighted PMF, GB runs and the raw proposal.

    The legend gives P(phi > 0) of each curve; a PMF's is after the weighting step (its
    reweighted bank, with the task's weighting, ``comparison["weighting"]``), and the legend's
    title says so.
    """
    from matplotlib.figure import Figure

    from cgbg_bench._io import atomic_path

    ref = comparison["reference"]
    n = len(ref.hist)
    centres = np.degrees(-math.pi + (np.arange(n) + 0.5) * 2 * math.pi / n)
    fig = Figure(figsize=(7, 4))  # not pyplot's: the caller's backend is left alone
    ax = fig.subplots()
    ax.plot(centres, ref.free_energy_kT, "k-", lw=2.5, label=f"{ref.label}: P(phi>0) = {100 * ref.phi_positive:.2f}%")
    for k, (label, (_, prof)) in enumerate(comparison["pmfs"].items()):
        ax.plot(centres, prof.free_energy_kT, f"C{k}-", label=f"{label}: {100 * prof.phi_positive:.2f}%")
    for k, (name, prof) in enumerate(comparison["gb"].items()):
        ax.plot(centres, prof.free_energy_kT, f"C{k + 5}--", lw=1, label=f"{name} (MD): {100 * prof.phi_positive:.2f}%")
    raw = comparison["proposal"]
    ax.plot(centres, raw.free_energy_kT, ":", color="grey", label=f"{raw.label}: {100 * raw.phi_positive:.2f}%")
    ax.set_xlabel("phi (degrees)")
    ax.set_ylabel("free energy (kT)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(0, 12)
    ax.set_title(title, fontsize=9)
    weighting = comparison.get("weighting", "the task's weights")
    ax.legend(fontsize=7, title=f"P(phi > 0); PMFs: the bank reweighted ({weighting})", title_fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
