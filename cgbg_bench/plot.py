"""Figures: reweighted free-energy profiles against the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cgbg_bench import metrics as M

__all__ = ["plot_profiles"]


def _free_energy(h: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        f = -np.log(np.where(h > 0, h, np.nan))
    return f - np.nanmin(f)


def plot_profiles(task, reference, index: np.ndarray, log_w: np.ndarray, path: str | Path, label: str = "PMF") -> Path:
    """1-D observables: -ln p of reference, raw proposal and reweighted proposal, in kT.

    2-D observables: the three free-energy surfaces side by side on a shared color scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cgbg_bench._io import atomic_path

    keep = M.clip_mask(log_w, task.metrics.clip_percentile)
    w = M.normalized_weights(log_w, keep)
    p_all = reference.hist
    n_obs = len(task.observables)
    one_d = all(o.ndim == 1 for o in task.observables)
    ncols = 1 if one_d else 3
    fig, axes = plt.subplots(n_obs, ncols, figsize=(5 * ncols, 3.6 * n_obs), squeeze=False)
    for k, obs in enumerate(task.observables):
        p = p_all[k]
        raw = M.normalize(M.weighted_histogram(index[k], None, obs.n_bins))
        rew = M.normalize(M.weighted_histogram(index[k], w, obs.n_bins))
        if obs.ndim == 1:
            lo, hi = obs.range[0]
            centers = lo + (np.arange(obs.bins[0]) + 0.5) * (hi - lo) / obs.bins[0]
            ax = axes[k, 0]
            for h, style, name in ((p, "k-", "reference"), (raw, "C0:", "proposal (raw)"),
                                   (rew, "C3-", f"reweighted: {label}")):
                ax.plot(centers, _free_energy(h), style, label=name)
            ax.set_xlabel(obs.name)
            ax.set_ylabel("free energy (kT)")
            ax.legend(fontsize=8)
        else:
            surfaces = [_free_energy(h).reshape(obs.bins) for h in (p, raw, rew)]
            vmax = np.nanpercentile(np.concatenate([s.ravel() for s in surfaces]), 99)
            extent = [*obs.range[0], *obs.range[1]]
            for j, (s, title) in enumerate(zip(surfaces, ("reference", "proposal (raw)", f"reweighted: {label}"))):
                im = axes[k, j].imshow(s.T, origin="lower", extent=extent, vmin=0, vmax=vmax, cmap="viridis",
                                       aspect="auto")
                axes[k, j].set_title(f"{obs.name}: {title}", fontsize=9)
                axes[k, j].set_xlabel("phi (rad)")
                axes[k, j].set_ylabel("psi (rad)")
            fig.colorbar(im, ax=axes[k, :].tolist(), label="free energy (kT)")
    fig.suptitle(f"{task.name} v{task.version}")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path
