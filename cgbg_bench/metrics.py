"""The benchmark's metrics, exactly as docs/spec.md section 4 defines them.

Pure functions on numpy arrays. Histogram metrics take probability vectors along
the last axis and broadcast over leading axes (bootstrap replicates).
"""

from __future__ import annotations

import numpy as np

from cgbg_bench.errors import DataError

__all__ = [
    "EPS",
    "log_weights",
    "clip_mask",
    "normalized_weights",
    "ess",
    "bin_index",
    "weighted_histogram",
    "normalize",
    "js_divergence",
    "pmf_error",
    "fe_rmse",
    "free_energy",
    "METRIC_NAMES",
]

#: The headline metrics, in the order tables, result files and leaderboard entries list them.
METRIC_NAMES = ("js", "pmf_error", "fe_rmse", "ess", "js_floor", "js_clip99")

#: The 1e-10 of docs/spec.md section 4 (normalization denominators, empty-bin fill).
EPS = 1e-10


def log_weights(energies: np.ndarray, log_q: np.ndarray, kT: float) -> np.ndarray:
    """log w_i = -U(R_i)/kT - log q(R_i), in float64 (unnormalized)."""
    return -np.asarray(energies, np.float64) / float(kT) - np.asarray(log_q, np.float64)


def clip_mask(log_w: np.ndarray, percentile: float) -> np.ndarray:
    """True for samples kept: those whose log-weight is below the ``percentile``-th percentile.

    Samples at or above it get weight 0 (discarded, not capped). percentile=100 keeps all.
    When no sample lies below it (more than ``percentile`` % of them tied at the smallest
    log-weight, e.g. a bank mostly outside a thin reference's support), the tied smallest ones
    are kept.
    """
    log_w = np.asarray(log_w, np.float64)
    if percentile >= 100:
        return np.ones(log_w.shape, dtype=bool)
    threshold = np.percentile(log_w, percentile)
    keep = log_w < threshold
    return keep if keep.any() else log_w <= threshold


def normalized_weights(log_w: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """exp(log_w) with clipped samples at 0, normalized to sum 1 (stable: max subtracted).

    Only the kept samples are exponentiated, each relative to the largest kept log-weight
    (so every exponent is <= 0): a clipped sample far above them (a PMF in the wrong units
    spans thousands of kT) neither overflows nor raises a numpy warning.
    """
    log_w = np.asarray(log_w, np.float64)
    keep = np.ones(log_w.shape, bool) if keep is None else np.asarray(keep, bool)
    if not keep.any():
        raise DataError("keep selects no sample: none is left after clipping")
    kept = log_w[keep]
    top = kept.max()
    if not np.isfinite(top):
        raise DataError(f"the largest kept log-weight is {top}: the energies or log q are not finite")
    w = np.zeros(log_w.shape, np.float64)
    w[keep] = np.exp(kept - top)
    return w / w.sum()


def ess(weights: np.ndarray, n: int | None = None) -> float:
    """Kish effective sample size as a fraction of the bank: (sum w)^2 / (N sum w^2).

    N is the bank size (``n``, default ``len(weights)``), clipped samples included.
    """
    w = np.asarray(weights, np.float64)
    n = w.size if n is None else int(n)
    return float(w.sum() ** 2 / (n * np.sum(w * w)))


def bin_index(values: np.ndarray, bins, ranges) -> np.ndarray:
    """Flat (C-order) histogram bin of each sample, -1 outside the range.

    values: (N, d); bins, ranges: length d. Bins are half-open [a, b) except the last,
    which includes its right edge, as np.histogramdd.
    """
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        values = values[:, None]
    flat = np.zeros(len(values), np.int64)
    inside = np.ones(len(values), bool)
    for k, (nb, (lo, hi)) in enumerate(zip(bins, ranges)):
        v = values[:, k]
        idx = np.floor((v - lo) / (hi - lo) * nb).astype(np.int64)
        idx = np.where(v == hi, nb - 1, idx)
        inside &= (idx >= 0) & (idx < nb) & np.isfinite(v)
        flat = flat * nb + np.clip(idx, 0, nb - 1)
    return np.where(inside, flat, -1)


def weighted_histogram(index: np.ndarray, weights: np.ndarray | None, n_bins: int) -> np.ndarray:
    """Sum of weights per flat bin (samples with index -1 dropped)."""
    index = np.asarray(index)
    inside = index >= 0
    w = None if weights is None else np.asarray(weights, np.float64)[inside]
    return np.bincount(index[inside], weights=w, minlength=n_bins).astype(np.float64)


def normalize(h: np.ndarray) -> np.ndarray:
    """Normalize along the last axis to sum 1 (1e-10 added to the denominator)."""
    h = np.asarray(h, np.float64)
    return h / (h.sum(axis=-1, keepdims=True) + EPS)


def _xlogy_ratio(a: np.ndarray, b: np.ndarray, pos: np.ndarray | None = None) -> np.ndarray:
    # a * log(a / b) with 0 log 0 = 0, over ``pos`` (default a > 0, where b >= a/2 > 0). In place,
    # one temporary: the bootstrap's hottest loop (bit-identical to the np.where form).
    if pos is None:
        pos = a > 0
    r = np.divide(a, b, out=np.ones(np.broadcast_shapes(a.shape, b.shape)), where=pos)
    np.log(r, out=r)
    r *= a
    return r


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log) along the last axis."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        js = 0.5 * _xlogy_ratio(p, m).sum(axis=-1) + 0.5 * _xlogy_ratio(q, m).sum(axis=-1)
    if np.isfinite(js).all():
        return js
    # half the smallest subnormal mass rounds to m = 0 where p (or q) > 0: a log(a/m) is then
    # a log 2 < 1e-323, taken as 0 instead of inf (the fast path above skips this second mask)
    pos = m > 0
    return (0.5 * _xlogy_ratio(p, m, pos & (p > 0)).sum(axis=-1)
            + 0.5 * _xlogy_ratio(q, m, pos & (q > 0)).sum(axis=-1))


def pmf_error(p: np.ndarray, q: np.ndarray, n_empty: int = 0) -> np.ndarray:
    """PMF error in kT^2: sum_b m_b (ln p_b - ln q_b)^2, empty bins filled with 1e-10.

    m = (p_f + q_f) / 2 renormalized to sum 1. ``n_empty`` counts further bins, left out of
    the arrays, that are empty on both sides: they add nothing to the sum but 1e-10 each
    to the normalization of m, so the result equals that on the full histograms.
    """
    p_f = np.where(np.asarray(p, np.float64) > 0, p, EPS)
    q_f = np.where(np.asarray(q, np.float64) > 0, q, EPS)
    m = 0.5 * (p_f + q_f)
    m = m / (m.sum(axis=-1, keepdims=True) + n_empty * EPS)
    return np.sum(m * (np.log(p_f) - np.log(q_f)) ** 2, axis=-1)


def fe_rmse(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """RMS error (kT) of the free-energy profile -ln q against -ln p, weighted by p.

    Over the bins occupied in both, with weights p renormalized there; the free
    additive constant is removed by subtracting the p-weighted mean difference
    (the weighted least-squares shift). Weighting by the reference keeps barely
    populated tail bins, where -ln q is noisy, from dominating. Returns NaN where
    fewer than two bins are shared.
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    both = (p > 0) & (q > 0)
    diff = np.where(both, np.log(np.where(both, q, 1.0)) - np.log(np.where(both, p, 1.0)), 0.0)
    wts = np.where(both, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        wts = wts / wts.sum(axis=-1, keepdims=True)
        mean = (wts * diff).sum(axis=-1)
        sq = (wts * (diff - mean[..., None]) ** 2).sum(axis=-1)
        return np.where(both.sum(axis=-1) >= 2, np.sqrt(sq), np.nan)


def free_energy(h: np.ndarray) -> np.ndarray:
    """Free energy -ln h in kT along the last axis, shifted to 0 at its minimum; NaN where h is empty.

    ``h`` need not be normalized (the shift removes the constant). A row with no weight at
    all is NaN throughout.
    """
    h = np.asarray(h, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = -np.log(np.where(h > 0, h, np.nan))
        return f - np.nanmin(np.where(np.isfinite(f), f, np.inf), axis=-1, keepdims=True)
