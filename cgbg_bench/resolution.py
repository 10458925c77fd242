"""A task's resolution: what a PMF exact along the headline observable scores on the task's bank.

A benchmark can only tell two PMFs apart when their scores differ by more than what a PMF that
is right along the scored observable scores. That PMF is made from the task's best baseline PMF
(lowest JS; the proposal itself where the task ships none), corrected along the headline
observable s (the first of task.yaml's ``observables``; the scored residue's (phi, psi) on the
peptides):

    log w*_i = log w_i + log p_ref(b_i) - log p_w(b_i),

w_i the base PMF's raw importance weights, b_i the bin of s(R_i), p_ref the reference histogram
and p_w the bank's histogram under w (unclipped, unsmoothed). Its reweighted histogram of s is the
reference's wherever the bank has weight, and inside a bin it weighs samples as the base PMF does,
so the scatter of real weights across the other degrees of freedom, and what the task's
weighting step does to them, are kept. Scored like a submission (the task's weighting, block
bootstrap against the reference), its JS and noise floor are the task's **resolution**: PMFs whose
JS differ by less than about the resolution's JS are not told apart by this task.

An estimate: the correction is fitted to the reference it is then scored against (optimistic),
another PMF's weights inside the bins would differ, and the other observables keep the base
PMF's weights.
"""

from __future__ import annotations

import numpy as np

from cgbg_bench import metrics as M
from cgbg_bench.errors import DataError

__all__ = ["exact_along_log_weights", "measure_resolution"]

#: Log-weight given below the smallest one to samples the exact PMF gives no weight (bins the
#: reference never visits, or outside the histogram range): exp(-1000) is 0 in float64.
_ZERO_LOG_WEIGHT = 1000.0


def exact_along_log_weights(bins: np.ndarray, p_ref: np.ndarray, log_w: np.ndarray | None = None) -> np.ndarray:
    """log w*_i = log w_i + log p_ref(b_i) - log p_w(b_i) (module docstring) for bin indices
    ``bins`` (N,), -1 outside the range; ``log_w`` None: the proposal itself (w_i = 1).

    Samples in bins the reference never visits, or outside the range, get a log-weight so far
    below the others that their weight is 0 (finite, as PSIS needs).
    """
    bins = np.asarray(bins, np.int64)
    p_ref = np.asarray(p_ref, np.float64)
    base = np.zeros(len(bins)) if log_w is None else np.asarray(log_w, np.float64)
    if base.shape != bins.shape:
        raise DataError(f"log_w has shape {base.shape}, the bin indices {bins.shape}")
    inside = bins >= 0
    if not inside.any():
        raise DataError("no bank sample falls inside the headline observable's histogram range")
    w = M.normalized_weights(base)
    p_w = np.bincount(bins[inside], weights=w[inside], minlength=p_ref.size)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN where both are 0: no weight there either
        per_bin = np.log(p_ref) - np.log(p_w)  # -inf where the reference is empty; bins without weight unused
    log_w = np.full(len(bins), -np.inf)
    log_w[inside] = base[inside] + per_bin[bins[inside]]
    finite = np.isfinite(log_w)
    if not finite.any():
        raise DataError("the bank has no sample in any bin the reference visits")
    log_w[~finite] = log_w[finite].min() - _ZERO_LOG_WEIGHT
    return log_w


def measure_resolution(task, *, base_log_w: np.ndarray | None = None, base: str = "proposal", proposal=None,
                       reference=None, n_bootstrap: int | None = None, seed: int = 0) -> dict:
    """The task's resolution as stored in task.yaml: ``{observable, base, js: {value, error}, js_floor: {...}}``.

    Scores the PMF exact along the headline observable made from ``base_log_w`` (the raw
    log-weights of the PMF named ``base`` on the task's bank; None: the proposal) with the task's
    weighting and bootstrap; values are the headline observable's.
    """
    from cgbg_bench.evaluate import observable_index, score_log_weights

    proposal = proposal or task.load_proposal()
    reference = reference or task.load_reference()
    index = observable_index(task, proposal.positions)
    head = task.observables[0]
    p_ref = M.normalize(np.asarray(reference.block_hist, np.float64)[:, 0].sum(axis=0))
    log_w = exact_along_log_weights(index[0], p_ref, base_log_w)
    scores = score_log_weights(task, log_w, index, reference, n_bootstrap=n_bootstrap, seed=seed)
    per = scores.per_observable[head.name]
    return {
        "observable": head.name,
        "base": base,
        "js": {"value": float(per["js"].value), "error": float(per["js"].error)},
        "js_floor": {"value": float(per["js_floor"].value), "error": float(per["js_floor"].error)},
    }
