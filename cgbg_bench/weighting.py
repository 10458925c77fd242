"""How a task turns a PMF's log-weights on its bank into the weights it scores with.

Two weightings (task.yaml ``metrics.weighting``; docs/spec.md section 4):

- ``psis``: Pareto-smoothed importance sampling (:mod:`cgbg_bench.psis`): the M largest raw
  weights are replaced by the expected order statistics of a generalized Pareto distribution
  fitted to them, truncated at the largest raw weight. Smoothing is done once, on the full bank,
  and the smoothed weights are block-bootstrapped like any other (docs/metrics.md says why).
- ``clip``: the weights at or above the task's ``clip_percentile``-th percentile of log w are
  discarded (set to 0); 100 keeps every weight. The weighting of task versions made before PSIS.

Every score also carries ``js_clip99``, the JS of the same log-weights under the 99% clip
(:data:`SECONDARY_CLIP`), the weighting of the published CG-BG numbers, and ``pareto_k``, the
k-hat of the raw weights, whatever the task's weighting.

Pure functions on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.errors import UsageError
from cgbg_bench.psis import MIN_TAIL, psis_smooth, tail_length

__all__ = ["WEIGHTINGS", "SECONDARY_CLIP", "BankWeights", "bank_weights", "clip_weights", "describe"]

#: The weightings a task may name; the first is what new task versions use.
WEIGHTINGS = ("psis", "clip")

#: Percentile of the secondary ``js_clip99`` score (the clip of the published CG-BG numbers).
SECONDARY_CLIP = 99.0


@dataclass(frozen=True)
class BankWeights:
    """Normalized weights (sum 1) of a bank, with the raw weights' Pareto k-hat."""

    weights: np.ndarray
    pareto_k: float


def clip_weights(log_w: np.ndarray, percentile: float) -> np.ndarray:
    """Normalized weights with those at or above the ``percentile``-th percentile of log w set to 0."""
    return M.normalized_weights(log_w, M.clip_mask(log_w, percentile))


def _psis(log_w: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Smoothed log-weights and k-hat; (None, nan) for a bank too small to fit a tail to."""
    m = tail_length(len(log_w))
    if m < MIN_TAIL or m >= len(log_w):  # psis_smooth's own condition for a tail it can fit
        return None, float("nan")
    return psis_smooth(np.asarray(log_w, np.float64))


def bank_weights(log_w: np.ndarray, weighting: str, clip_percentile: float | None = None) -> BankWeights:
    """The weights a task scores with (``weighting`` as in task.yaml) and the raw weights' k-hat.

    ``clip_percentile`` is read only for ``weighting="clip"``. A bank too small for a Pareto fit
    (fewer than 21 samples) is left unsmoothed, with k-hat NaN.
    """
    log_w = np.asarray(log_w, np.float64)
    smoothed, k_hat = _psis(log_w)
    if weighting == "psis":
        w = M.normalized_weights(log_w if smoothed is None else smoothed)
    elif weighting == "clip":
        if clip_percentile is None:
            raise UsageError("weighting 'clip' needs clip_percentile (the task's metrics.clip_percentile)")
        w = clip_weights(log_w, clip_percentile)
    else:
        raise UsageError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    return BankWeights(w, float(k_hat))


def describe(weighting: str, clip_percentile: float | None = None) -> str:
    """One line for output headers, e.g. 'PSIS (Pareto-smoothed) weights' or 'weights clipped at 99%'."""
    if weighting == "psis":
        return "PSIS (Pareto-smoothed) weights"
    if clip_percentile is not None and clip_percentile >= 100:
        return "raw weights (no clip)"
    return f"weights at or above the {clip_percentile:g}th percentile of log w discarded"
