"""Pareto-smoothed importance sampling (PSIS).

Vehtari, Simpson, Gelman, Yao, Gabry, "Pareto Smoothed Importance Sampling", JMLR 25 (2024):
fit a generalized Pareto distribution (GPD) to the M largest importance weights,
M = ceil(min(0.2 S, 3 sqrt(S / r_eff))), replace them by the fitted distribution's expected
order statistics (its quantiles at (z - 1/2) / M, z = 1..M) above the largest weight not in the
tail, and truncate them at the largest raw weight. The GPD's shape estimate k-hat diagnoses the
weights: below min(1 - 1/log10 S, 0.7) the smoothed estimate is reliable.

The fit is Zhang & Stephens' (2009, Technometrics 51:316) empirical-Bayes estimator with the
paper's weakly informative prior on k (a normal centred at 0.5, worth 10 observations), as in the
reference implementations (R ``loo::gpdfit``, ``arviz_stats``).

Pure functions on numpy arrays. All work is done on log-weights shifted by their maximum (and on
tail exceedances scaled by their largest), so log-weights spanning thousands of nats are fine.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from cgbg_bench.errors import DataError

__all__ = [
    "MIN_TAIL",
    "tail_length",
    "pareto_k_threshold",
    "gpd_fit",
    "gpd_quantile",
    "smooth_tail",
    "psis_smooth",
]

#: Fewest tail draws a GPD is fitted to (as in the reference implementations).
MIN_TAIL = 5

# Zhang & Stephens' grid: 30 + floor(sqrt(n)) points; prior scale 3 on the quartile.
_GRID_MIN = 30
_PRIOR_BS = 3.0
# Weakly informative prior on k: normal at 0.5 with the weight of 10 observations.
_PRIOR_K_N = 10.0
_PRIOR_K_MEAN = 0.5


def tail_length(n: int, r_eff: float = 1.0) -> int:
    """M = ceil(min(0.2 n, 3 sqrt(n / r_eff))), the number of tail draws the GPD is fitted to.

    (The R package loo rounds up; arviz-stats rounds down. They agree where the bound is an
    integer, e.g. n = 10^4 and n > 225 a perfect square.)
    """
    n = int(n)
    return int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n / float(r_eff)))))


def pareto_k_threshold(n: int) -> float:
    """The paper's sample-size-dependent reliability threshold min(1 - 1/log10 n, 0.7)."""
    n = int(n)
    if n <= 10:
        return 0.0
    return min(1.0 - 1.0 / math.log10(n), 0.7)


def gpd_fit(x: np.ndarray, *, prior: bool = True) -> tuple[float, float]:
    """(k, sigma) of a GPD with location 0 fitted to exceedances ``x`` >= 0 (any order).

    Zhang & Stephens' posterior-mean estimate of theta = -k / sigma over a grid, then
    k = mean(log1p(-theta x)), sigma = -k / theta; ``prior`` shrinks k towards 0.5 as if 10
    more observations had k = 0.5 (sigma keeps the unshrunk k, as in loo and arviz-stats).
    Scale equivariant: fitting c x gives (k, c sigma). Returns (nan, nan) where the fit is
    undefined (a zero quartile, e.g. ties at the threshold).
    """
    x = np.sort(np.asarray(x, np.float64))
    n = x.size
    if n < MIN_TAIL:
        raise DataError(f"gpd_fit: x has {n} values; the fit needs at least {MIN_TAIL}")
    if not np.all(np.isfinite(x)) or x[0] < 0:
        raise DataError("gpd_fit: x must be finite and >= 0 (exceedances over a threshold)")
    x_max = x[-1]
    x_q = x[int(n / 4 + 0.5) - 1]  # first quartile, as loo: x[floor(n/4 + 0.5)] (1-based)
    if not (x_q > 0 and x_max > 0):
        return float("nan"), float("nan")
    x = x / x_max  # scale: the estimator is equivariant, and this keeps theta * x in range
    x_q = x_q / x_max
    m = _GRID_MIN + int(math.sqrt(n))
    j = np.arange(1, m + 1, dtype=np.float64)
    theta = 1.0 + (1.0 - np.sqrt(m / (j - 0.5))) / (_PRIOR_BS * x_q)  # 1/x_max = 1 after scaling
    k_grid = np.mean(np.log1p(-theta[:, None] * x[None, :]), axis=1)
    log_lik = n * (np.log(-theta / k_grid) - k_grid - 1.0)  # profile log-likelihood
    w = np.exp(log_lik - logsumexp(log_lik))
    keep = w >= 10 * np.finfo(float).eps  # drop negligible grid points (Zhang & Stephens)
    theta, w = theta[keep], w[keep] / w[keep].sum()
    theta_hat = float(np.sum(theta * w))
    k = float(np.mean(np.log1p(-theta_hat * x)))
    sigma = -k / theta_hat * x_max
    if prior:
        k = (n * k + _PRIOR_K_N * _PRIOR_K_MEAN) / (n + _PRIOR_K_N)
    if not math.isfinite(k):
        return float("nan"), float("nan")
    return k, sigma


def gpd_quantile(p: np.ndarray, k: float, sigma: float, mu: float = 0.0) -> np.ndarray:
    """Quantile function of the GPD(mu, sigma, k): mu + sigma ((1 - p)^-k - 1) / k (k = 0: exponential)."""
    p = np.asarray(p, np.float64)
    if k == 0:
        return mu - sigma * np.log1p(-p)
    return mu + sigma * np.expm1(-k * np.log1p(-p)) / k


def smooth_tail(log_tail: np.ndarray, log_cutoff: float) -> tuple[np.ndarray, float]:
    """Smooth M sorted (ascending) tail log-weights above ``log_cutoff``, the largest one below them.

    Returns the smoothed tail log-weights, in the same order, and k-hat. The GPD is fitted to
    the exceedances w_i - w_cutoff; the tail is replaced by the fitted quantiles at
    (z - 1/2)/M above the cutoff, truncated at the largest raw weight. Where the fit is
    undefined the tail comes back unchanged, with k-hat = -inf if the tail is constant
    (bounded weights: nothing to smooth) and +inf otherwise (a zero quartile exceedance:
    ties at the cutoff, or a tail spanning more than float64's range).
    """
    log_tail = np.asarray(log_tail, np.float64)
    m = log_tail.size
    top = float(log_tail[-1])
    if top - float(log_tail[0]) <= 0.0:
        return log_tail.copy(), float("-inf")
    # Exceedances relative to the largest weight: exp(t - top) - exp(c - top), each computed as
    # exp(t - top) * (1 - exp(c - t)) so that those just above the cutoff keep their precision.
    with np.errstate(divide="ignore"):
        log_x = (log_tail - top) + np.log(-np.expm1(log_cutoff - log_tail))  # -inf where t == c
    x = np.exp(log_x)
    k, sigma = gpd_fit(x)
    if not (math.isfinite(k) and math.isfinite(sigma) and sigma > 0):
        return log_tail.copy(), float("inf")
    p = (np.arange(1, m + 1, dtype=np.float64) - 0.5) / m
    q = gpd_quantile(p, k, sigma)  # exceedances over the cutoff, in units of exp(top)
    with np.errstate(divide="ignore"):
        smoothed = np.logaddexp(log_cutoff - top, np.log(q)) + top
    return np.minimum(smoothed, top), k


def psis_smooth(log_weights: np.ndarray, r_eff: float = 1.0) -> tuple[np.ndarray, float]:
    """Pareto-smoothed log-weights (N,) and k-hat from raw log-weights (N,), unnormalized.

    Only the M = tail_length(N, r_eff) largest entries change; every other entry is returned
    bit for bit. Adding a constant to the input adds it to the output and leaves k-hat alone.
    Raises DataError for a non-1-D, non-finite or too short input (N must give M >= 5, i.e. N >= 21).
    """
    lw = np.asarray(log_weights, np.float64)
    if lw.ndim != 1:
        raise DataError(f"psis_smooth: log_weights must be 1-D (N,), got shape {lw.shape}")
    n = lw.size
    m = tail_length(n, r_eff) if n else 0
    if m < MIN_TAIL or m >= n:
        raise DataError(
            f"psis_smooth: log_weights has {n} samples; PSIS fits its tail to M = ceil(min(0.2 N, "
            f"3 sqrt(N/r_eff))) = {m} of them and needs M >= {MIN_TAIL} (N >= 21)"
        )
    bad = ~np.isfinite(lw)
    if bad.any():
        raise DataError(
            f"psis_smooth: log_weights has {int(bad.sum())} non-finite values (first at index "
            f"{int(np.flatnonzero(bad)[0])}); every log-weight must be finite"
        )
    # The M + 1 largest in the order of a stable argsort of all N (value, then index), without sorting
    # all N: every entry below the (N - M - 1)-th smallest value precedes them, so they are the last
    # M + 1 of the entries at or above it sorted stably (those are taken in index order).
    threshold = np.partition(lw, n - m - 1)[n - m - 1]
    candidates = np.flatnonzero(lw >= threshold)
    order = candidates[np.argsort(lw[candidates], kind="stable")][-(m + 1):]
    tail_ids = order[1:]
    shift = float(lw[order[-1]])
    smoothed, k_hat = smooth_tail(lw[tail_ids] - shift, float(lw[order[0]]) - shift)
    out = lw.copy()
    out[tail_ids] = smoothed + shift
    return out, k_hat
