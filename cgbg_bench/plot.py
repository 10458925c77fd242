"""Figures: reweighted free-energy profiles against the reference (``cgbg-bench evaluate --plot``).

Each observable gets the reference, the raw proposal bank, the bank reweighted by the
submitted PMF (after the task's weighting step: PSIS, or a percentile clip that sets the
largest log-weights to 0) and the difference, reweighted minus reference, in kT. The free energies are
-ln p, each shifted to a minimum of 0; the difference is shifted so that its mean weighted
by the reference is 0 (a PMF's free energy is defined up to a constant), and drawn where the
reference is within DIFF_CUTOFF_KT of its minimum (grey beyond: too few samples). Bins without
weight have no free energy and are drawn white: no sample in the bin (or, for the
reweighted bank, only clipped ones); the figure says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cgbg_bench import metrics as M

__all__ = ["plot_profiles", "profile_figure", "free_energy_difference", "WHITE_NOTE", "DIFF_CUTOFF_KT"]

#: The difference map is drawn where the reference free energy is at most this (kT); grey beyond.
DIFF_CUTOFF_KT = 8.0

#: What white bins of the maps mean, written on the figure.
WHITE_NOTE = ("white bins: no weight there, so no free energy (no sample of the bank in the bin, or only "
              "clipped ones; for the difference, either side empty). Samples outside the histogram range are "
              "left out.")


def free_energy_difference(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(-ln other) - (-ln reference) in kT on the bins where both have weight (NaN elsewhere),
    shifted so that its mean weighted by ``reference`` is 0."""
    p, q = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    both = (p > 0) & (q > 0)
    d = np.full(p.shape, np.nan)
    if not both.any():
        return d
    d[both] = np.log(p[both]) - np.log(q[both])
    d[both] -= np.sum(p[both] * d[both]) / np.sum(p[both])
    return d


def profile_figure(task, reference, index: np.ndarray, log_w: np.ndarray, label: str = "PMF"):
    """The figure that :func:`plot_profiles` saves: a :class:`matplotlib.figure.Figure` made
    without pyplot, so the caller's backend and pyplot's figures are left alone."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w = task.metrics.bank_weights(log_w).weights
    rew_name = f"reweighted: {label}"
    p_all = reference.hist
    n_obs = len(task.observables)
    one_d = all(o.ndim == 1 for o in task.observables)
    ncols = 2 if one_d else 4
    fig = Figure(figsize=(5.2 * ncols if one_d else 16.5, 3.6 * n_obs + 0.5), layout="constrained")
    FigureCanvasAgg(fig)  # its own canvas, so that fig.canvas.draw() works for the caller
    axes = fig.subplots(n_obs, ncols, squeeze=False)
    for k, obs in enumerate(task.observables):
        p = p_all[k]
        raw = M.normalize(M.weighted_histogram(index[k], None, obs.n_bins))
        rew = M.normalize(M.weighted_histogram(index[k], w, obs.n_bins))
        diff = free_energy_difference(p, rew)
        if obs.ndim == 1:
            lo, hi = obs.range[0]
            centers = lo + (np.arange(obs.bins[0]) + 0.5) * (hi - lo) / obs.bins[0]
            ax = axes[k, 0]
            for h, style, name in ((p, "k-", "reference"), (raw, "C0:", "proposal (raw)"), (rew, "C3-", rew_name)):
                ax.plot(centers, M.free_energy(h), style, label=name)
            ax.set_xlabel(obs.name)
            ax.set_ylabel("free energy (kT)")
            ax.legend(fontsize=8)
            ax = axes[k, 1]
            ax.axhline(0.0, color="k", lw=0.8)
            ax.plot(centers, diff, "C3-")
            ax.set_xlabel(obs.name)
            ax.set_ylabel("reweighted - reference (kT)")
            ax.set_title(f"{obs.name}: reweighted - reference", fontsize=9)
        else:
            import matplotlib.colors as mcolors

            surfaces = [M.free_energy(h).reshape(obs.bins) for h in (p, raw, rew)]
            vmax = np.nanpercentile(np.concatenate([s.ravel() for s in surfaces]), 99)
            extent = [*obs.range[0], *obs.range[1]]
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
            titles = ("reference (MD)", "proposal (raw bank)", rew_name)
            for j, (s, title) in enumerate(zip(surfaces, titles)):
                im = axes[k, j].imshow(s.T, origin="lower", extent=extent, vmin=0, vmax=vmax, cmap=cmap,
                                       aspect="auto")
                axes[k, j].set_title(f"{obs.name}: {title}", fontsize=9)
            fig.colorbar(im, ax=axes[k, :3].tolist(), label="free energy (kT)", pad=0.01, fraction=0.03)
            d = diff.reshape(obs.bins)
            # where it matters: bins the reference puts within DIFF_CUTOFF_KT of its minimum
            high = (surfaces[0] > DIFF_CUTOFF_KT) & np.isfinite(d)
            shown = np.where(high, np.nan, d)
            finite = shown[np.isfinite(shown)]
            lim = float(np.clip(np.percentile(np.abs(finite), 99), 0.5, 5.0)) if finite.size else 1.0
            grey = mcolors.ListedColormap(["0.8"]).with_extremes(bad=(0, 0, 0, 0))
            axes[k, 3].imshow(np.where(high, 0.0, np.nan).T, origin="lower", extent=extent, cmap=grey,
                              aspect="auto", vmin=0, vmax=1)
            dmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=(0, 0, 0, 0))  # white axes show through
            imd = axes[k, 3].imshow(shown.T, origin="lower", extent=extent, cmap=dmap, aspect="auto",
                                    norm=mcolors.TwoSlopeNorm(0.0, -lim, lim))
            axes[k, 3].set_title(f"{obs.name}: reweighted - reference\n(grey: reference above "
                                 f"{DIFF_CUTOFF_KT:g} kT)", fontsize=9)
            fig.colorbar(imd, ax=axes[k, 3], label="difference (kT); red: PMF too high", pad=0.01,
                         fraction=0.08)
            for j in range(4):
                axes[k, j].set_xlabel(f"{_angle_name(obs, 0)} (rad)")
                axes[k, j].set_ylabel(f"{_angle_name(obs, 1)} (rad)" if j == 0 else "")
    weighting = task.metrics.describe()
    fig.suptitle(f"{task.name} v{task.version}: {rew_name} (after the weighting step: {weighting})", fontsize=10)
    empty = WHITE_NOTE if not one_d else WHITE_NOTE.replace("white bins", "gaps in a curve")
    fig.text(0.5, 0.005, "free energy -ln p, shifted to 0 at its minimum; difference shifted to a 0 mean under "
             "the reference.\n" + empty, ha="center", va="bottom", fontsize=7)
    height = fig.get_size_inches()[1]
    fig.get_layout_engine().set(rect=(0, 0.36 / height, 1, 1 - 0.36 / height))
    return fig


def _angle_name(obs, axis: int) -> str:
    return ("phi", "psi")[axis] if obs.kind == "dihedral_pair" else f"{obs.name}[{axis}]"


def plot_profiles(task, reference, index: np.ndarray, log_w: np.ndarray, path: str | Path, label: str = "PMF") -> Path:
    """Draw :func:`profile_figure` to ``path`` (png, pdf, svg).

    1-D observables: -ln p of reference, raw proposal and reweighted proposal, in kT, and
    their difference. 2-D observables: the three free-energy surfaces on a shared color
    scale, then the difference (reweighted minus reference, kT) on a diverging scale.
    """
    from cgbg_bench._io import atomic_path

    fig = profile_figure(task, reference, index, log_w, label=label)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    return path
