"""Reference histograms from atomistic MD, stored per time block, and their quality report.

Inputs are dihedral time series (phi, psi of each residue, every <= 0.1 ps) with the bias
energy of each sample. Unbiased runs enter with weight 1; static-bias runs are reweighted
exactly with exp(+V_bias/kT). Each run is cut into contiguous time blocks (the blocks
absorb the time correlation: the bootstrap resamples whole blocks). A run's weights are
scaled once so that they sum to the run's Kish effective size and every block keeps its
share, so runs of the same kind (same bias) combine in proportion to the information they
carry. Runs of different kinds (unbiased and static-bias) do not: the Kish size ignores how
slowly a run crosses between basins, so :func:`combine_reference` weighs each kind by the
inverse block-bootstrap variance of its basin populations instead.

Pure functions on arrays; reading run directories is in :func:`load_run_dihedrals`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.bootstrap import bootstrap_scores
from cgbg_bench.errors import DataError, UsageError

__all__ = ["RunDihedrals", "load_run_dihedrals", "frame_log_weights", "block_histograms", "combine_runs",
           "combine_reference", "quality_report", "MIN_GROUP_BLOCKS",
           "run_halves", "halves_js", "basin_masks", "basin_populations", "merge_blocks", "compare_basins",
           "DIHEDRAL_BINS", "BASINS"]

DIHEDRAL_BINS = 100
_RANGE = ((-math.pi, math.pi), (-math.pi, math.pi))


@dataclass(frozen=True)
class RunDihedrals:
    """Dihedral series of one run: phi, psi (T, n_res) rad; log-weight (T,); sample spacing (ps).

    ``kind`` names how the run sampled ("unbiased", or "static <bias sha256 prefix>"): runs of
    one kind are exchangeable and pool by effective size, kinds pool by :func:`combine_reference`.
    Empty: "unbiased" when every log-weight is 0, else "static".
    """

    name: str
    phi: np.ndarray
    psi: np.ndarray
    log_weight: np.ndarray
    dt_ps: float
    kind: str = ""

    @property
    def group(self) -> str:
        if self.kind:
            return self.kind
        return "unbiased" if not np.any(self.log_weight) else "static"

    @property
    def ns(self) -> float:
        return len(self.phi) * self.dt_ps / 1000.0


def load_run_dihedrals(run_dir: str | Path, kT: float, *, discard_ps: float = 0.0,
                       max_chunks: int | None = None) -> RunDihedrals:
    """Read a `cgbg-bench md run` directory: bias none -> weight 1, static -> exp(+V/kT).

    Runs with an evolving bias (wtmetad) are refused: their reweighting is not exact.
    """
    from cgbg_bench.md.production import load_chunks, read_sidecar

    run_dir = Path(run_dir)
    settings = read_sidecar(run_dir)["settings"]
    bias = settings["bias"]
    if bias not in ("none", "static"):
        raise DataError(f"run_dir {run_dir}: bias {bias!r} changes during the run; only unbiased and static-bias "
                        "runs give an exact reference")
    d = load_chunks(run_dir, keys=("time_ps", "phi", "psi", "bias_energy_kj_per_mol"), max_chunks=max_chunks)
    keep = d["time_ps"] >= d["time_ps"][0] + discard_ps
    v = d["bias_energy_kj_per_mol"][keep].astype(np.float64)
    log_w = v / kT if bias == "static" else np.zeros_like(v)
    kind = "unbiased" if bias == "none" else f"static {str(settings.get('static_bias_sha256') or '?')[:12]}"
    return RunDihedrals(run_dir.name, d["phi"][keep], d["psi"][keep], log_w,
                        float(settings["dihedral_interval_ps"]), kind)


def frame_log_weights(run_dir: str | Path, kT: float, *, max_chunks: int | None = None) -> np.ndarray:
    """log w = V/kT of each stored frame (positions, every 1 ps) of a run, V its bias energy then.

    Unbiased runs: zeros. Static-bias runs: the frozen bias, so exp(log w) reweights the frames
    exactly to the unbiased distribution. Metadynamics: the bias at that time, which only
    approximates it (the bias still grows). For training proposals (the flows' weighted
    likelihood), whose log q is exact whatever the weights; never for a reference.
    """
    from cgbg_bench.md.production import load_chunks, read_sidecar

    run_dir = Path(run_dir)
    if read_sidecar(run_dir)["settings"]["bias"] == "none":
        frames = load_chunks(run_dir, keys=("frame_time_ps",), max_chunks=max_chunks)["frame_time_ps"]
        return np.zeros(len(frames))
    d = load_chunks(run_dir, keys=("frame_time_ps", "time_ps", "bias_energy_kj_per_mol"), max_chunks=max_chunks)
    t, tf = d["time_ps"], d["frame_time_ps"]
    i = np.clip(np.searchsorted(t, tf), 0, len(t) - 1)
    i = np.where((i > 0) & (np.abs(t[i - 1] - tf) < np.abs(t[i] - tf)), i - 1, i)  # the nearest sample
    spacing = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    if np.any(np.abs(t[i] - tf) > 0.5 * spacing + 1e-6):
        raise DataError(f"run_dir {run_dir}: some frames have no bias-energy sample within half a spacing "
                        f"({spacing:g} ps) of their time; the run's chunks are inconsistent")
    return d["bias_energy_kj_per_mol"][i].astype(np.float64) / kT


def block_histograms(run: RunDihedrals, block_ps: float, residues: list[int] | None = None) -> np.ndarray:
    """(n_blocks, n_res, 100*100) weighted histograms of contiguous blocks of ``block_ps``.

    The weights are normalized once for the whole run, so that they sum to the run's Kish
    effective size, and every block keeps its share of the run's total weight: the sum of
    the blocks is then exactly the reweighted histogram of the run, and runs stacked by
    :func:`combine_runs` count in proportion to their effective sizes. (Scaling each block
    to its own effective size, as up to task version 6, drops the blocks' total weights; in
    a static-bias run the bias, and so the weight, depends on the basin a block sits in,
    so that was biased: it put 4.0% instead of 3.55% at phi > 0 on 25.6 ns of ala2.)
    A trailing partial block shorter than half a block is dropped.
    """
    per_block = max(1, int(round(block_ps / run.dt_ps)))
    n = len(run.phi)
    n_blocks = n // per_block + (1 if n % per_block >= per_block / 2 else 0)
    if n_blocks == 0:
        raise DataError(f"run {run.name}: {n} samples are fewer than half a block of {per_block} "
                        f"(block_ps {block_ps:g})")
    n_kept = min(n, n_blocks * per_block)
    lw = np.asarray(run.log_weight[:n_kept], dtype=np.float64)
    w = np.exp(lw - lw.max())
    w *= M.ess(w) * n_kept / w.sum()  # sum of weights = Kish effective size of the run
    cols = range(run.phi.shape[1]) if residues is None else residues
    out = np.zeros((n_blocks, len(cols), DIHEDRAL_BINS**2))
    for b in range(n_blocks):
        sl = slice(b * per_block, min((b + 1) * per_block, n_kept))
        for k, c in enumerate(cols):
            values = np.stack([run.phi[sl, c], run.psi[sl, c]], -1)
            idx = M.bin_index(values, (DIHEDRAL_BINS, DIHEDRAL_BINS), _RANGE)
            out[b, k] = M.weighted_histogram(idx, w[sl], DIHEDRAL_BINS**2)
    return out


def combine_runs(runs: list[RunDihedrals], block_ps: float, residues: list[int] | None = None) -> np.ndarray:
    """Block histograms of several runs stacked along the block axis."""
    return np.concatenate([block_histograms(r, block_ps, residues) for r in runs], axis=0)


MIN_GROUP_BLOCKS = 8
"""Fewest basin blocks a kind of run needs in :func:`combine_reference` for its variance to count."""


def combine_reference(runs: list[RunDihedrals], block_ps: float, residues: list[int] | None = None, *,
                      basin_block_ps: float = 1000.0, n_bootstrap: int = 500,
                      seed: int = 0) -> tuple[list[np.ndarray], dict[str, dict]]:
    """Block histograms of a reference made of runs of several kinds; returns (blocks per run, groups).

    Runs of one kind (:attr:`RunDihedrals.group`) keep their relative weights of
    :func:`block_histograms` (their Kish effective sizes). Kinds are combined by inverse
    variance: kind g gets the share (1/V_g) / sum_h (1/V_h) of the total weight, with

        V_g = sum over residues and basins b of var_g(P_b) / Pbar_b,

    var_g(P_b) the block-bootstrap variance of basin b's population (:data:`BASINS`) from that
    kind's runs pooled, on blocks of ``basin_block_ps``, and Pbar_b the mean of the kinds'
    estimates of P_b (basins no kind visits are skipped). JS ~ sum_b dP_b^2 / (8 P_b) for small
    errors dP, so these shares minimize the expected JS error of the combined basin populations.
    The Kish size would count an unbiased run by its samples although it crosses between basins
    far more slowly than a static-bias run (on ala2 at 18 ns it took over the reference and
    tripled the phi > 0 error; docs/md.md). Limits: the variances are themselves estimates (few
    blocks of a slow run understate them), and a kind that never visited a basin has no variance
    there, so it is weighed by the basins it did visit. With one kind the blocks are returned
    unchanged.

    ``groups``: kind -> {"runs", "ns", "blocks" (basin blocks), "basin_variance" (V_g), "share"}.
    Raises DataError when a kind has fewer than :data:`MIN_GROUP_BLOCKS` basin blocks, or no
    finite spread between them (its variance, and so its share, would be meaningless).
    """
    if residues is not None and len(residues) == 0:
        raise UsageError("residues is empty: give at least one residue column, or None for all")
    blocks = [block_histograms(r, block_ps, residues) for r in runs]
    kinds = [r.group for r in runs]
    order = list(dict.fromkeys(kinds))
    groups = {g: {"runs": [r.name for r, k in zip(runs, kinds) if k == g],
                  "ns": sum(r.ns for r, k in zip(runs, kinds) if k == g), "blocks": None,
                  "basin_variance": None, "share": 1.0} for g in order}
    if len(order) < 2:
        return blocks, groups
    merge = max(1, int(round(basin_block_ps / block_ps)))
    fix = "let them grow, or leave this kind of run out of runs"
    pops, errs, totals = {}, {}, {}
    for g in order:
        members = [b for b, k in zip(blocks, kinds) if k == g]
        merged = np.concatenate([merge_blocks(b, merge) for b in members])
        where = f"{g} runs ({', '.join(groups[g]['runs'])}, {groups[g]['ns']:g} ns)"
        if len(merged) < MIN_GROUP_BLOCKS:
            raise DataError(f"{where}: {len(merged)} blocks of {block_ps * merge:g} ps, fewer than the "
                            f"{MIN_GROUP_BLOCKS} needed to estimate their basin variance; {fix}")
        pops[g], errs[g] = basin_populations(merged, n_bootstrap=n_bootstrap, seed=seed)
        if not np.all(np.isfinite(errs[g])):
            raise DataError(f"{where}: their basin populations are not finite (NaN weights or empty blocks?)")
        if not np.any(errs[g] > 0):
            raise DataError(f"{where}: their basin populations do not vary between blocks, so their variance "
                            f"cannot be estimated; {fix}")
        groups[g]["blocks"] = len(merged)
        totals[g] = sum(float(b.sum()) for b in members) / blocks[0].shape[1]  # mean over residues
    p_bar = np.mean([pops[g] for g in order], axis=0)
    for g in order:
        with np.errstate(divide="ignore", invalid="ignore"):
            groups[g]["basin_variance"] = float(np.sum(np.where(p_bar > 0, errs[g] ** 2 / p_bar, 0.0)))
    inv = {g: 1.0 / groups[g]["basin_variance"] for g in order}
    grand = sum(totals.values())
    for g in order:
        groups[g]["share"] = inv[g] / sum(inv.values())
    scaled = [b * (groups[k]["share"] * grand / totals[k]) for b, k in zip(blocks, kinds)]
    return scaled, groups


def run_halves(blocks_per_run: list[int]) -> np.ndarray:
    """Mask over stacked blocks: True for the first half (in time) of each run's blocks."""
    return np.concatenate([np.arange(n) < n // 2 for n in blocks_per_run]) if blocks_per_run else np.zeros(0, bool)


def halves_js(block_hist: np.ndarray, first_half: np.ndarray | None = None) -> np.ndarray:
    """JS between two halves of a reference's blocks (n_blocks, n_res, n_bins), per residue.

    ``first_half``: bool per block, True for the first half (:func:`run_halves` splits every run
    in time when several runs are stacked); default the first n_blocks // 2 blocks. Raises
    UsageError when either half is empty.
    """
    n_blocks = block_hist.shape[0]
    if first_half is None:
        first_half = np.arange(n_blocks) < n_blocks // 2
    first_half = np.asarray(first_half, bool)
    if first_half.shape != (n_blocks,) or first_half.all() or not first_half.any():
        raise UsageError(f"first_half must be a boolean mask over the {n_blocks} blocks with both halves non-empty")
    return M.js_divergence(M.normalize(block_hist[first_half].sum(0)), M.normalize(block_hist[~first_half].sum(0)))


def _population(hist: np.ndarray, phi_positive: bool = True) -> np.ndarray:
    """Fraction of weight with phi > 0 (bins whose centre has phi > 0), along the last axis."""
    mask = basin_masks()["phi > 0"]
    return (hist * mask).sum(-1) / hist.sum(-1)


BASINS = ("beta/PPII", "alpha_R", "phi > 0")
"""The (phi, psi) regions of :func:`basin_masks`, in order."""


def basin_masks(n_phi: int = DIHEDRAL_BINS, n_psi: int = DIHEDRAL_BINS) -> dict[str, np.ndarray]:
    """Boolean masks over the flat (phi slow, psi fast) grid, by bin centre, for :data:`BASINS`.

    alpha_R: phi < 0 and -120 < psi < 50 degrees; beta/PPII: the rest of phi < 0; phi > 0:
    alpha_L and C7ax. The three partition the grid.
    """
    phi = -180 + (np.arange(n_phi) + 0.5) * 360 / n_phi
    psi = -180 + (np.arange(n_psi) + 0.5) * 360 / n_psi
    PHI, PSI = np.meshgrid(phi, psi, indexing="ij")
    alpha = (PHI < 0) & (PSI > -120) & (PSI < 50)
    masks = (((PHI < 0) & ~alpha), alpha, PHI > 0)
    return {name: m.ravel() for name, m in zip(BASINS, masks)}


def basin_populations(block_hist: np.ndarray, *, n_bootstrap: int = 500,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Populations of :data:`BASINS` per residue, (n_res, 3), and their block-bootstrap errors.

    ``block_hist`` (n_blocks, n_res, 100*100) as from :func:`combine_runs`; the blocks must
    be long enough to be nearly independent for the basin populations (see
    :func:`merge_blocks`). The error is NaN when there is a single block.
    """
    block_hist = np.asarray(block_hist, dtype=np.float64)
    if block_hist.ndim != 3 or block_hist.shape[-1] != DIHEDRAL_BINS**2 or len(block_hist) == 0:
        raise DataError(f"block_hist must be (n_blocks >= 1, n_res, {DIHEDRAL_BINS**2}), got {block_hist.shape}")
    masks = np.stack(list(basin_masks().values()), -1).astype(np.float64)  # (n_bins, 3)
    mass = block_hist @ masks  # (n_blocks, n_res, 3)
    value = mass.sum(0) / mass.sum(0).sum(-1, keepdims=True)
    if len(mass) < 2:
        return value, np.full_like(value, np.nan)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(mass), np.full(len(mass), 1.0 / len(mass)), size=n_bootstrap)
    reps = np.einsum("rb,bok->rok", counts.astype(np.float64), mass)
    reps /= reps.sum(-1, keepdims=True)
    return value, reps.std(0, ddof=1)


def merge_blocks(block_hist: np.ndarray, group: int) -> np.ndarray:
    """Sum every ``group`` consecutive blocks of one run into one.

    A trailing partial group stays one (shorter) block: the populations are ratios of summed
    masses, so a short block only counts for less, and no sample is dropped.
    """
    if group < 1:
        raise UsageError(f"group must be >= 1, got {group}")
    return np.add.reduceat(block_hist, np.arange(0, len(block_hist), group), axis=0)


def compare_basins(names: list[str], block_hists: list[np.ndarray], n_reference: int, *,
                   n_bootstrap: int = 500, seed: int = 0) -> dict:
    """Basin populations of a reference and of each run, and each run's z against the other reference runs.

    ``block_hists``: one (n_blocks, n_res, 100*100) array per run, the first ``n_reference``
    of them making the reference. z = (P_run - P_rest) / sqrt(se_run^2 + se_rest^2) per residue
    and basin, where "rest" is every reference run but this one (None when there is none);
    JSON-ready: NaN errors and undefined z (a single block, or both errors zero: a basin
    neither side visited with spread) are None.
    """
    if not 1 <= n_reference <= len(block_hists):
        raise UsageError(f"n_reference must be in 1..{len(block_hists)} (the runs in block_hists), got {n_reference}")
    if len(names) != len(block_hists):
        raise UsageError(f"names must give one name per run of block_hists: {len(names)} names, "
                         f"{len(block_hists)} runs")

    def pops(parts):
        return basin_populations(np.concatenate(parts), n_bootstrap=n_bootstrap, seed=seed)

    def clean(a):
        return [[None if not np.isfinite(x) else float(x) for x in row] for row in np.asarray(a)]

    ref_v, ref_e = pops(block_hists[:n_reference])
    out = {"names": list(BASINS), "reference": {"population": clean(ref_v), "error": clean(ref_e)}, "runs": []}
    for k, (name, b) in enumerate(zip(names, block_hists)):
        v, e = pops([b])
        rest = [r for j, r in enumerate(block_hists[:n_reference]) if j != k]
        z = None
        if rest:
            rv, re_ = pops(rest)
            se = np.hypot(e, re_)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = clean(np.where(se > 0, (v - rv) / se, np.nan))
        out["runs"].append({"dir": name, "in_reference": k < n_reference, "blocks": len(b),
                            "population": clean(v), "error": clean(e), "z_vs_other_reference_runs": z})
    return out


def quality_report(block_hist: np.ndarray, *, n_bootstrap: int = 500, seed: int = 0,
                   baselines: dict[str, np.ndarray] | None = None,
                   first_half: np.ndarray | None = None, headline_column: int = 0) -> dict:
    """Statistical quality of a reference given as block histograms (n_blocks, n_res, n_bins).

    - self_js / self_pmf_error: bootstrap JS and PMF error of resampled references against
      the full one (mean, std), averaged over residues: the reference's own noise;
      self_js_per_residue: that JS per residue (mean, std; twice it is the reference's share of
      a score's floor on that residue);
    - halves_js: JS between two halves of the blocks, per residue: ``first_half`` (bool per
      block) against the rest; default the first n_blocks // 2 blocks (use
      :func:`run_halves` to split every run in time when several runs are stacked);
    - phi_positive: population of phi > 0 with its block-bootstrap standard error, per residue;
    - baselines: name -> scores of unweighted MD block histograms (e.g. GB runs) against it,
      the headline being residue column ``headline_column`` (the scored residue's).
    """
    rng = np.random.default_rng(seed)
    n_blocks = block_hist.shape[0]
    p_hat = M.normalize(block_hist.sum(0))
    counts = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_bootstrap).astype(float)
    reps = M.normalize(np.einsum("rb,bok->rok", counts, block_hist))
    js_reps = M.js_divergence(reps, p_hat)  # (n_bootstrap, n_res)
    self_js = js_reps.mean(-1)
    self_pmf = M.pmf_error(p_hat, reps).mean(-1)
    halves = halves_js(block_hist, first_half)
    pop = _population(np.einsum("rb,bok->rok", counts, block_hist))
    report = {
        "n_blocks": int(n_blocks),
        "self_js": [float(self_js.mean()), float(self_js.std(ddof=1))],
        "self_js_per_residue": [[float(m), float(s)] for m, s in zip(js_reps.mean(0), js_reps.std(0, ddof=1))],
        "self_pmf_error": [float(self_pmf.mean()), float(self_pmf.std(ddof=1))],
        "halves_js": [float(v) for v in halves],
        "phi_positive": [[float(v), float(e)] for v, e in zip(_population(p_hat), pop.std(0, ddof=1))],
    }
    if baselines:
        n_res = block_hist.shape[1]
        order = [headline_column, *(k for k in range(n_res) if k != headline_column)]  # headline first
        report["baselines"] = {}
        for name, hist in baselines.items():
            s = bootstrap_scores(hist[:, order], block_hist[:, order], observable_names=[f"res{k}" for k in order],
                                 one_dimensional=[False] * n_res, n_bootstrap=n_bootstrap, seed=seed)
            report["baselines"][name] = {k: [m.value, m.error] for k, m in s.metrics.items()}
    return report
