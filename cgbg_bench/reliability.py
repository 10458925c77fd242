"""Is a score trustworthy? Flags for evaluations whose numbers should not be read as a ranking.

A PMF with a unit mistake (positions in Angstrom, energies in kcal/mol) still loads, passes the
contract and gets a JS; without a word it can even beat a real baseline (issue 31). The checks
here look at what an evaluation already has (its metrics, the PMF's reduced energies on the
bank, the size of its forces on a few bank configurations) and return a list of ``Flag``s;
an empty list means no check fired. Every function is pure except ``force_scale`` (which runs
the model) and ``expected_force_scale`` (which may load the task's own baselines).

The checks and their thresholds:

``LOW_ESS``
    Kish effective sample size below ``ESS_MIN`` = 1% of the bank. Below it the reweighted
    histograms rest on a handful of samples per occupied bin and the error bars themselves
    are unreliable (the bootstrap resamples the same few heavy samples).
``JS_AT_FLOOR``
    The JS is "within noise of its own floor": the floor (the JS that a perfect PMF would get
    from sampling noise alone at this bank size and these weights) makes up at least half of
    the JS, or the excess JS - floor is below ``JS_FLOOR_SIGMAS`` = 2 combined bootstrap
    standard deviations, i.e. ``js - floor < max(floor, 2 * sqrt(err_js^2 + err_floor^2))``;
    and at the same time the ESS is below ``JS_FLOOR_ESS`` = 10%. The second condition is what
    makes it a warning: with a healthy ESS a JS at the floor means a PMF better than the bank
    can resolve (the exact Mueller-Brown PMF sits there); with degenerate weights the floor is
    inflated ~1/ESS and the JS then measures the weights' degeneracy, not the distributions.
``ENERGY_SPAN``
    Reduced energies U/kT spanning more than ``ENERGY_SPAN_MAX_KT`` = 1000 kT across the bank,
    measured between its 0.1th and 99.9th percentiles (a few clashing configurations do not
    count). Shipped baselines span 8-30 kT on Mueller-Brown and 15-55 kT on alanine dipeptide
    banks; 1000 kT means only the lowest few configurations carry any weight.
``FORCE_SCALE``
    The RMS force (per Cartesian component, in the task's energy unit per nm) on the first
    ``FORCE_CONFIGS`` = 256 bank configurations differs from the task's expected scale by more
    than ``FORCE_RATIO_MAX`` = 3 either way. The expected scale is the median RMS force of
    the task's shipped PMF baselines on the same kind of configurations (``EXPECTED_RMS_FORCE``,
    measured; tasks not in the table compute it from their baselines). On alanine dipeptide
    every baseline, prior-only included, lies within 2% of the table value (stiff bonds and
    angles dominate); on Mueller-Brown they lie within 0.86-1.17x of it. A factor 3 leaves room
    for honest models and catches a kcal/mol-for-kJ/mol mistake (4.18x) and a 10x length or
    energy unit error (10x to 100x).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ENERGY_SPAN_MAX_KT",
    "ESS_MIN",
    "EXPECTED_RMS_FORCE",
    "FORCE_CONFIGS",
    "FORCE_RATIO_MAX",
    "JS_FLOOR_ESS",
    "JS_FLOOR_SIGMAS",
    "Flag",
    "assess",
    "assess_evaluation",
    "baseline_force_scales",
    "check_energy_span",
    "check_ess",
    "check_force_scale",
    "check_js_floor",
    "energy_span",
    "expected_force_scale",
    "file_force_scale",
    "flag_codes",
    "force_scale",
]

ESS_MIN = 0.01
JS_FLOOR_ESS = 0.10
JS_FLOOR_SIGMAS = 2.0
ENERGY_SPAN_MAX_KT = 1000.0
ENERGY_SPAN_PERCENTILES = (0.1, 99.9)
FORCE_RATIO_MAX = 3.0
FORCE_CONFIGS = 256

#: Median RMS force (task energy unit per nm, per Cartesian component) of each task's shipped PMF
#: baselines on the first 256 configurations of its bank, measured with ``force_scale``
#: (``baseline_force_scales``; tasks at ala2 v12/v13, ala3 v1, mueller-brown v2). Re-measure with
#: ``python docs/scripts/expected_rms_force.py`` at every task version whose baselines or bank
#: change (a slow test checks the table); a task missing here is measured from its baselines.
EXPECTED_RMS_FORCE: dict[str, float] = {
    "mueller-brown": 0.5258,  # v2: exact 0.591, potential-minimum 0.616, fm-unbiased 0.461, fm-biased 0.455
    "mueller-brown-biased": 0.6149,  # v2: 0.636, 0.691, 0.594, 0.569
    "ala2-core-beta": 800.7,  # v12: fm-unbiased 800.7, fm-biased 803.1, prior-only 784.0
    "ala2-core-beta-biased": 796.0,  # v13: 796.0, 798.0, 785.7
    "ala2-heavy-atom": 853.0,  # v12: 852.1, 853.0, 855.7
    "ala2-heavy-atom-biased": 856.9,  # v13: 856.9, 856.9, 864.3
    "ala3-core-beta": 824.7,  # v1: 826.5, 820.1, 824.7
    "ala3-core-beta-biased": 815.9,  # 815.9, 801.0, 816.1
    "ala3-heavy-atom": 966.5,  # 967.5, 955.2, 966.5
    "ala3-heavy-atom-biased": 948.2,  # 948.2, 934.7, 951.1
}


@dataclass(frozen=True)
class Flag:
    """One reason not to trust a score: a stable ``code`` and a message that says why and what to do."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _metric(metrics: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """(value, error) of ``name`` from Scores.metrics (Metric objects) or their JSON form (dicts)."""
    m = metrics.get(name)
    if m is None:
        return None
    if isinstance(m, Mapping):
        value, error = m.get("value"), m.get("error")
    else:
        value, error = getattr(m, "value", None), getattr(m, "error", None)
    if value is None or not math.isfinite(float(value)):
        return None
    error = float(error) if error is not None and math.isfinite(float(error)) else 0.0
    return float(value), error


def check_ess(metrics: Mapping[str, Any], *, ess_min: float = ESS_MIN) -> Flag | None:
    """LOW_ESS when the bootstrap-mean ESS fraction is below ``ess_min``."""
    ess = _metric(metrics, "ess")
    if ess is None or ess[0] >= ess_min:
        return None
    return Flag("LOW_ESS", (
        f"ESS {ess[0]:.2%} of the bank is below {ess_min:.0%}: the score rests on a few heavily weighted "
        "samples; check the PMF's units (positions in nm, energies in the task's unit) and sign"
    ))


def check_pareto_k(pareto_k: float, n_samples: int) -> Flag | None:
    """PARETO_K: the Pareto shape k-hat of the weights' tail (:func:`cgbg_bench.psis.psis_smooth`)
    above min(1 - 1/log10 N, 0.7) (Vehtari et al., JMLR 2024): the weighted estimates are unreliable."""
    from cgbg_bench.psis import pareto_k_threshold

    limit = pareto_k_threshold(n_samples)
    if not (np.isfinite(pareto_k) and pareto_k > limit) and pareto_k != np.inf:
        return None
    return Flag("PARETO_K", (
        f"the importance weights have a Pareto tail shape k-hat = {pareto_k:.2f} > {limit:.2f}: a few samples "
        "carry the score and its error bars are unreliable; the PMF differs too much from the proposal (or "
        "has the wrong units)"
    ))


def check_js_floor(metrics: Mapping[str, Any], *, ess_max: float = JS_FLOOR_ESS,
                   sigmas: float = JS_FLOOR_SIGMAS) -> Flag | None:
    """JS_AT_FLOOR: JS within noise of its floor (see the module docstring) while the ESS is below ``ess_max``."""
    js, floor, ess = _metric(metrics, "js"), _metric(metrics, "js_floor"), _metric(metrics, "ess")
    if js is None or floor is None or ess is None or ess[0] >= ess_max:
        return None
    excess = js[0] - floor[0]
    noise = sigmas * math.hypot(js[1], floor[1])
    if excess >= max(floor[0], noise):
        return None
    return Flag("JS_AT_FLOOR", (
        f"JS {js[0]:.3g} is within noise of its floor {floor[0]:.3g} (the JS of a perfect PMF at this "
        f"ESS, {ess[0]:.2%}): the score measures the weights' degeneracy, not the PMF"
    ))


def energy_span(reduced_energies: np.ndarray,
                percentiles: tuple[float, float] = ENERGY_SPAN_PERCENTILES) -> float:
    """Spread of reduced energies U/kT between two percentiles of the bank (kT)."""
    u = np.asarray(reduced_energies, np.float64).reshape(-1)
    u = u[np.isfinite(u)]
    if u.size == 0:
        return float("nan")
    lo, hi = np.percentile(u, percentiles)
    return float(hi - lo)


def check_energy_span(reduced_energies: np.ndarray, *, max_kt: float = ENERGY_SPAN_MAX_KT) -> Flag | None:
    """ENERGY_SPAN when the bank's reduced energies spread over more than ``max_kt`` kT."""
    span = energy_span(reduced_energies)
    if not math.isfinite(span) or span <= max_kt:
        return None
    lo, hi = ENERGY_SPAN_PERCENTILES
    return Flag("ENERGY_SPAN", (
        f"the PMF's energies span {span:.3g} kT across the bank ({lo}th to {hi}th percentile; more than "
        f"{max_kt:g} kT): check its energy unit (the task's unit, not kT or kcal/mol) and length unit (nm)"
    ))


def force_scale(module, positions: np.ndarray, *, n: int = FORCE_CONFIGS, device: str = "cpu") -> float:
    """RMS force -dU/dx (per Cartesian component) of ``module`` on the first ``n`` of ``positions``.

    Runs one forward and one backward pass (autograd); the unit is the model's energy unit per
    input length unit (kJ/mol/nm on alanine dipeptide tasks, kT per unit on Mueller-Brown).
    """
    import torch

    x = torch.as_tensor(np.ascontiguousarray(positions[:n], np.float32), device=device)
    if len(x) == 1:  # exported programs may specialize batch size 1
        x = torch.cat([x, x])
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = module(x)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return float(grad.detach().double().pow(2).mean().sqrt())


def expected_force_scale(task, positions: np.ndarray | None = None, *, device: str = "cpu") -> float | None:
    """The task's expected RMS force: ``EXPECTED_RMS_FORCE`` or the median over its PMF baselines.

    ``positions``: bank configurations to measure the baselines on (needed for tasks not in the table).
    Returns None when neither is available.
    """
    if task.name in EXPECTED_RMS_FORCE:
        return EXPECTED_RMS_FORCE[task.name]
    if positions is None:
        return None
    scales = baseline_force_scales(task, positions, device=device)
    return float(np.median(list(scales.values()))) if scales else None


def baseline_force_scales(task, positions: np.ndarray, *, device: str = "cpu") -> dict[str, float]:
    """``force_scale`` of each of the task's PMF baselines (hash-checked) on ``positions``: name -> RMS
    force. Their median is the task's ``EXPECTED_RMS_FORCE`` entry, measured on the first
    ``FORCE_CONFIGS`` configurations of its bank (``python docs/scripts/expected_rms_force.py``)."""
    from cgbg_bench.pmf import load_pmf

    return {b.name: force_scale(load_pmf(b.file.verify(), device), positions, device=device)
            for b in task.baselines if b.kind == "pmf"}


def check_force_scale(rms_force: float, expected: float | None, *, energy_unit: str = "",
                      ratio_max: float = FORCE_RATIO_MAX) -> Flag | None:
    """FORCE_SCALE when ``rms_force`` differs from ``expected`` by more than ``ratio_max`` either way."""
    if expected is None or not expected > 0 or not math.isfinite(expected):
        return None
    if not math.isfinite(rms_force):
        ratio = float("inf")
    else:
        ratio = rms_force / expected
        if 1.0 / ratio_max <= ratio <= ratio_max:
            return None
    unit = f" {energy_unit}/nm" if energy_unit else ""
    return Flag("FORCE_SCALE", (
        f"the PMF's RMS force on bank configurations is {rms_force:.3g}{unit}, {ratio:.3g}x the task's "
        f"expected {expected:.3g}{unit} (baselines; flagged beyond {ratio_max:g}x either way): check "
        "the length unit (nm, not Angstrom) and the energy unit of the PMF"
    ))


def assess(metrics: Mapping[str, Any], *, reduced_energies: np.ndarray | None = None,
           rms_force: float | None = None, expected_rms_force: float | None = None,
           energy_unit: str = "", pareto_k: float | None = None, n_samples: int | None = None) -> list[Flag]:
    """Every check whose input is given; the flags that fired, in a fixed order."""
    flags: Iterable[Flag | None] = [
        None if pareto_k is None or n_samples is None else check_pareto_k(pareto_k, n_samples),
        check_ess(metrics),
        check_js_floor(metrics),
        None if reduced_energies is None else check_energy_span(reduced_energies),
        None if rms_force is None else check_force_scale(rms_force, expected_rms_force, energy_unit=energy_unit),
    ]
    return [f for f in flags if f is not None]


def _force_scale_in_child(path: str, positions: np.ndarray, device: str) -> np.ndarray:
    from cgbg_bench.pmf import load_pmf

    return np.array([force_scale(load_pmf(path, device), positions, device=device)])


def file_force_scale(path, positions: np.ndarray, *, device: str = "cpu", limits=None) -> float:
    """``force_scale`` of a submitted file, run in a confined child process (:mod:`cgbg_bench.confine`)."""
    from cgbg_bench.confine import DEFAULT_LIMITS, run_confined

    sample = np.ascontiguousarray(positions[:FORCE_CONFIGS], np.float32)
    out = run_confined(_force_scale_in_child, (str(path), sample, device), limits=limits or DEFAULT_LIMITS,
                       device=device, what=f"the PMF {path} (force check)")
    return float(np.asarray(out).reshape(-1)[0])


def assess_evaluation(task, pmf, metrics: Mapping[str, Any], positions: np.ndarray, log_w: np.ndarray,
                      log_q: np.ndarray, *, device: str = "cpu", limits=None,
                      rms_force: float | None = None, pareto_k: float | None = None) -> list[dict[str, str]]:
    """The flags of one evaluation as JSON-ready dicts (``evaluate``'s single call site).

    ``log_w`` and ``log_q`` of the bank give the reduced energies U/kT = -(log w + log q).
    ``pmf``: a module of the caller's (run here with gradients on the first ``FORCE_CONFIGS``
    positions) or a submitted file (run in a confined child under ``limits``); ``rms_force``,
    when given, is used instead (e.g. measured where the model already runs). ``None`` skips
    the force check.
    """
    import os

    reduced = -(np.asarray(log_w, np.float64) + np.asarray(log_q, np.float64)[: len(log_w)])
    if rms_force is None and pmf is not None:
        if isinstance(pmf, (str, os.PathLike)):
            rms_force = file_force_scale(pmf, positions, device=device, limits=limits)
        else:
            rms_force = force_scale(pmf, positions, device=device)
    expected = None if rms_force is None else expected_force_scale(task, positions, device=device)
    flags = assess(metrics, reduced_energies=reduced, rms_force=rms_force, expected_rms_force=expected,
                   energy_unit=getattr(task, "energy_unit", ""), pareto_k=pareto_k, n_samples=len(log_w))
    return [f.as_dict() for f in flags]


def flag_codes(flags: Sequence[Mapping[str, str]]) -> str:
    """'LOW_ESS, ENERGY_SPAN' (or '' when none): for tables."""
    return ", ".join(f["code"] for f in flags)
