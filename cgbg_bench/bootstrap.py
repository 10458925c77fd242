"""Block bootstrap of histogram metrics, vectorized over replicates.

Both sides of a comparison are given as per-block histograms:
- the proposal side: the (clipped, unnormalized) importance weights summed per bin
  within contiguous blocks of the bank (the bank is i.i.d., so blocks are i.i.d.);
- the reference side: MD histograms per time block (blocks absorb the time
  correlation of MD), or one block for an exact reference.
A replicate draws blocks with replacement on each side (multinomial counts) and
recomputes every metric; sums over blocks are one matrix product per replicate
chunk, with no Python loop over samples or replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.errors import DataError

__all__ = ["Metric", "Scores", "block_sums", "bootstrap_scores"]


@dataclass(frozen=True)
class Metric:
    """A bootstrap estimate: mean and standard deviation over replicates, plus the full-data value."""

    value: float
    error: float
    point: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "error": self.error, "point": self.point}

    @classmethod
    def from_replicates(cls, reps: np.ndarray, point: float) -> "Metric":
        """Mean and standard deviation (ddof=1) of the finite replicates, and the full-data ``point``.

        The mean needs one finite replicate, the spread two: with a single one the error is
        NaN, not 0 (one replicate says nothing about the spread, and a zero error bar would
        claim an exact value); with none both are NaN.
        """
        reps = np.asarray(reps, np.float64)
        reps = reps[np.isfinite(reps)]
        value = float(reps.mean()) if reps.size else float("nan")
        error = float(reps.std(ddof=1)) if reps.size > 1 else float("nan")
        return cls(value, error, float(point))


@dataclass(frozen=True)
class Scores:
    """Headline metrics (those of the task's first observable, the scored one; plus the ESS) and the
    metrics of every observable (``per_observable``, the first included; reported, not ranked)."""

    metrics: Mapping[str, Metric]
    per_observable: Mapping[str, Mapping[str, Metric]] = field(default_factory=dict)
    n_bootstrap: int = 0

    def as_dict(self) -> dict:
        return {
            "metrics": {k: m.as_dict() for k, m in self.metrics.items()},
            "per_observable": {
                o: {k: m.as_dict() for k, m in ms.items()} for o, ms in self.per_observable.items()
            },
            "n_bootstrap": self.n_bootstrap,
        }


def block_sums(index: np.ndarray, weights: np.ndarray, n_blocks: int, n_bins: int) -> np.ndarray:
    """Per-block weighted histograms (n_blocks, n_obs, n_bins) from bin indices (n_obs, N).

    Samples are assigned to ``n_blocks`` contiguous, near-equal blocks in bank order.
    """
    index = np.atleast_2d(index)
    n_obs, n = index.shape
    n_blocks = max(1, min(int(n_blocks), n))
    block = (np.arange(n, dtype=np.int64) * n_blocks) // n
    out = np.empty((n_blocks, n_obs, n_bins), np.float64)
    w = np.asarray(weights, np.float64)
    for k in range(n_obs):  # loop over observables (a handful), not samples
        inside = index[k] >= 0
        flat = block[inside] * n_bins + index[k][inside]
        out[:, k, :] = np.bincount(flat, weights=w[inside], minlength=n_blocks * n_bins).reshape(
            n_blocks, n_bins
        )
    return out


def _resample_counts(rng: np.random.Generator, n_blocks: int, n_rep: int) -> np.ndarray:
    return rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_rep).astype(np.float64)


def _resampled_sums(counts: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """sum_b counts[r, b] * blocks[b, o, k] as one matrix product: (r, n_obs, n_bins)."""
    flat = np.ascontiguousarray(blocks).reshape(blocks.shape[0], -1)
    return (counts @ flat).reshape((counts.shape[0],) + blocks.shape[1:])


def bootstrap_scores(
    q_blocks: np.ndarray,
    p_blocks: np.ndarray,
    *,
    observable_names: list[str],
    one_dimensional: list[bool],
    n_bootstrap: int,
    seed: int = 0,
    ess_blocks: tuple[np.ndarray, np.ndarray] | None = None,
    n_samples: int | None = None,
    p_exact: bool = False,
    secondary: Mapping[str, np.ndarray] | None = None,
    chunk: int = 50,
) -> Scores:
    """Score histograms ``q`` (proposal or baseline) against the reference ``p``.

    q_blocks: (n_q_blocks, n_obs, n_bins) summed weights per block.
    p_blocks: (n_p_blocks, n_obs, n_bins) reference histograms per block.
    ess_blocks: per-block sums of w and w^2 (for the ESS), with n_samples the bank size.
    Reports js, pmf_error, js_floor, plus fe_rmse for 1-D observables, per observable; the
    headline (``Scores.metrics``) is the first observable's, plus ess when given.
    js_floor is the bootstrap-mean JS expected for a perfect model: twice the mean JS of
    each side's replicates against its own full-data histogram, summed over sides.
    secondary: name -> other q blocks (same shape as ``q_blocks``, e.g. the same bank under
    another weighting), each scored by JS only, on the same replicates (paired with ``js``).
    """
    rng = np.random.default_rng(seed)
    n_obs = q_blocks.shape[1]
    # Work on the bins occupied on either side in any observable: a bin empty everywhere adds
    # nothing to any metric (pmf_error is told how many were dropped). Alanine dipeptide
    # occupies ~20% of the 100 x 100 bins, so this cuts the bootstrap's work ~5x.
    secondary = dict(secondary or {})
    for name, blocks in secondary.items():
        if np.shape(blocks) != q_blocks.shape:
            raise DataError(f"secondary {name!r} has shape {np.shape(blocks)}, q_blocks {q_blocks.shape}")
    occupied = (q_blocks.sum(axis=0) > 0) | (p_blocks.sum(axis=0) > 0)
    for blocks in secondary.values():
        occupied |= blocks.sum(axis=0) > 0
    occupied = occupied.any(axis=0)
    n_empty = int(occupied.size - occupied.sum())
    if n_empty:
        q_blocks, p_blocks = q_blocks[:, :, occupied], p_blocks[:, :, occupied]
        secondary = {k: b[:, :, occupied] for k, b in secondary.items()}
    q_hat = M.normalize(q_blocks.sum(axis=0))
    p_hat = M.normalize(p_blocks.sum(axis=0))
    names = ["js", "pmf_error", "js_floor"] + (["fe_rmse"] if any(one_dimensional) else []) + list(secondary)
    reps = {k: np.full((n_bootstrap, n_obs), np.nan) for k in names}
    ess_reps = np.empty(n_bootstrap)
    # The replicate products read C-ordered blocks: copy them once here (selecting the occupied bins
    # leaves them strided, and _resampled_sums would copy them again in every chunk; same values).
    q_rows = np.ascontiguousarray(q_blocks)
    p_rows = None if p_exact else np.ascontiguousarray(p_blocks)
    secondary_rows = {name: np.ascontiguousarray(blocks) for name, blocks in secondary.items()}
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        cq = _resample_counts(rng, q_blocks.shape[0], r)
        q = M.normalize(_resampled_sums(cq, q_rows))
        if p_exact:
            p = np.broadcast_to(p_hat, q.shape)
        else:
            cp = _resample_counts(rng, p_blocks.shape[0], r)
            p = M.normalize(_resampled_sums(cp, p_rows))
        sl = slice(start, start + r)
        reps["js"][sl] = M.js_divergence(p, q)
        reps["pmf_error"][sl] = M.pmf_error(p, q, n_empty)
        reps["js_floor"][sl] = 2.0 * (M.js_divergence(q, q_hat) + M.js_divergence(p, p_hat))
        for name, blocks in secondary_rows.items():
            reps[name][sl] = M.js_divergence(p, M.normalize(_resampled_sums(cq, blocks)))
        if "fe_rmse" in reps:
            for k in np.flatnonzero(one_dimensional):
                reps["fe_rmse"][sl, k] = M.fe_rmse(p[:, k], q[:, k])
        if ess_blocks is not None:
            s1 = cq @ ess_blocks[0]
            s2 = cq @ ess_blocks[1]
            ess_reps[sl] = s1 * s1 / (n_samples * s2)

    point = {
        "js": M.js_divergence(p_hat, q_hat),
        "pmf_error": M.pmf_error(p_hat, q_hat, n_empty),
        "js_floor": reps["js_floor"].mean(axis=0),  # no full-data analogue: the replicate mean
        "fe_rmse": np.array([M.fe_rmse(p_hat[k], q_hat[k]) if one_dimensional[k] else np.nan
                             for k in range(n_obs)]),
        **{name: M.js_divergence(p_hat, M.normalize(blocks.sum(axis=0))) for name, blocks in secondary.items()},
    }
    per_obs = {
        obs: {k: Metric.from_replicates(reps[k][:, i], point[k][i]) for k in names
              if k != "fe_rmse" or one_dimensional[i]}
        for i, obs in enumerate(observable_names)
    }
    # The headline is the first observable (a task lists its scored one first); the others are
    # reported in per_observable, not ranked.
    headline = {k: Metric.from_replicates(reps[k][:, 0], point[k][0]) for k in names
                if k != "fe_rmse" or one_dimensional[0]}
    if ess_blocks is not None:
        w1, w2 = ess_blocks[0].sum(), ess_blocks[1].sum()
        headline["ess"] = Metric.from_replicates(ess_reps, float(w1 * w1 / (n_samples * w2)))
    return Scores(metrics=headline, per_observable=per_obs, n_bootstrap=n_bootstrap)
