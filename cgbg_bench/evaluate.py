"""Score a PMF on a task: batched energies over the bank, reweighting, bootstrap metrics."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from cgbg_bench import __version__
from cgbg_bench import metrics as M
from cgbg_bench._io import sha256_file
from cgbg_bench.bootstrap import Scores, block_sums, bootstrap_scores
from cgbg_bench.errors import PMFContractError
from cgbg_bench.observables import dihedral
from cgbg_bench.progress import progress as make_progress
from cgbg_bench.confine import DEFAULT_LIMITS, ConfinedEnergies, Limits, confined_energies
from cgbg_bench.pmf import check_pmf, default_device, detect_format
from cgbg_bench.reliability import assess_evaluation

if TYPE_CHECKING:  # torch, the task machinery and the weighting are imported where they are used: the
    # confined child imports this module for compute_energies, and a parent scoring a file never needs torch
    import torch

    from cgbg_bench.task import Proposal, Reference, Task
    from cgbg_bench.weighting import BankWeights

__all__ = ["DEFAULT_BATCH_SIZE", "Result", "Evaluation", "compute_energies", "observable_index", "score_log_weights",
           "score_histograms", "evaluate", "evaluate_inputs", "evaluate_baseline"]


#: Samples per forward pass of a PMF over the bank. Batches whose intermediate tensors stay small
#: are reused from the heap instead of being mapped afresh (page faults): on the CPU, 4096 is within
#: noise of the fastest batch for the shipped ala2 PMF_Bs, and for a PMF_B-shaped ala6-core-beta
#: model 8192 and up spend 15% and more in page faults (``python docs/scripts/forward_cost.py``;
#: docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 4096


@dataclass(frozen=True)
class Result:
    task: str
    task_version: int
    scores: Scores
    runtime_s: float
    device: str
    n_samples: int
    submission: str = ""
    submission_sha256: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    torch_version: str = ""  # of the process that ran the PMF; "" for this process's torch

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "task_version": self.task_version,
            "submission": self.submission,
            "submission_sha256": self.submission_sha256,
            **self.scores.as_dict(),
            "runtime_s": self.runtime_s,
            "device": self.device,
            "n_samples": self.n_samples,
            "cgbg_bench_version": __version__,
            "torch_version": self.torch_version or _torch_version(),
            **dict(self.info),
        }


def _torch_version() -> str:
    import torch

    return torch.__version__


def compute_energies(
    module: torch.nn.Module,
    positions: np.ndarray,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Energies (N,) float64 of ``positions`` in batches; raises if any is not finite."""
    import torch

    n = len(positions)
    out = np.empty(n, np.float64)
    bar = make_progress(n, desc="energies", unit="sample", delay_s=3.0, enabled=progress)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out[start:stop] = _batch_energies(module, positions[start:stop], device)
            bar.update_to(stop)
    bar.close()
    bad = ~np.isfinite(out)
    if bad.any():
        raise PMFContractError(
            f"the PMF gave non-finite energies on {int(bad.sum())} of {n} proposal samples "
            f"(first at index {int(np.flatnonzero(bad)[0])}); energies must be finite everywhere"
        )
    return out


def _batch_energies(module: torch.nn.Module, positions: np.ndarray, device: str) -> np.ndarray:
    """Energies (B,) float64 of one batch; a failure is a PMFContractError naming the batch size."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(positions, np.float32)).to(device)
    try:
        with torch.no_grad():
            if len(x) == 1:  # exported programs may specialize batch size 1: pad it
                e = module(torch.cat([x, x]))[:1]
            else:
                e = module(x)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise PMFContractError(
            f"the PMF raised on a batch of {len(x)} configurations ({type(exc).__name__}: {first}); "
            "it must accept any batch size B") from None
    if not isinstance(e, torch.Tensor) or tuple(e.shape) != (len(x),):
        shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise PMFContractError(f"for a batch of {len(x)} the PMF returned {shape}; expected ({len(x)},)")
    return e.detach().to("cpu", torch.float64).numpy().reshape(-1)


#: Configurations re-evaluated in a batch of their own by the batch-independence check.
INDEPENDENCE_SUBSET = 256


def check_batch_independence(module: torch.nn.Module, positions: np.ndarray, energies: np.ndarray, *,
                             batch_size: int, device: str = "cpu", seed: int = 0,
                             rtol: float = 1e-4) -> None:
    """Re-evaluate a random subset of the bank together, in a batch unlike the ones of the pass that
    gave ``energies``; raise PMFContractError if any energy changes (energies coupled across a batch).

    The subset holds min(``INDEPENDENCE_SUBSET``, N) configurations drawn without replacement
    (``seed``); with ``batch_size`` > 7 it is a batch of the size the scoring pass used.
    """
    n = len(positions)
    if n < 2:
        return
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(INDEPENDENCE_SUBSET, n, max(batch_size, 2)), replace=False))[::-1]
    again = _batch_energies(module, np.asarray(positions[idx]), device)
    scale = float(np.abs(energies[idx]).max()) + 1.0
    diff = np.abs(again - energies[idx])
    if float(diff.max()) > rtol * scale:
        worst = int(idx[int(diff.argmax())])
        raise PMFContractError(
            f"the energy of bank sample {worst} is {energies[worst]:.6g} in its batch of the scoring pass and "
            f"{again[int(diff.argmax())]:.6g} in another batch: energies must not depend on the rest of the "
            f"batch (batch size {batch_size}; no batch statistics, eval mode)")


def observable_index(task: Task, positions: np.ndarray) -> np.ndarray:
    """Flat histogram bin of every sample for every observable: (n_obs, N), -1 outside."""
    flat = positions.reshape(len(positions), -1)
    rows = []
    for obs in task.observables:
        if obs.kind == "coordinate":
            values = flat[:, obs.indices[0][0]].astype(np.float64)[:, None]
        else:
            values = np.stack([dihedral(positions, q) for q in obs.indices], axis=-1)
        rows.append(M.bin_index(values, obs.bins, obs.range))
    return np.stack(rows)


def _one_dimensional(task: Task) -> list[bool]:
    return [o.ndim == 1 for o in task.observables]


def score_log_weights(
    task: Task,
    log_w: np.ndarray,
    index: np.ndarray,
    reference: Reference,
    *,
    n_bootstrap: int | None = None,
    seed: int = 0,
    weights: BankWeights | None = None,
) -> Scores:
    """Weight (the task's weighting), histogram per proposal block, and bootstrap against the reference.

    The weights (PSIS smoothing, or the clip threshold) are computed once on the full bank and
    kept fixed in the replicates (docs/metrics.md). ``weights``: the task's weights of ``log_w``
    when the caller has them already (:meth:`MetricSettings.bank_weights`). Besides the headline
    metrics, ``js_clip99`` scores the same log-weights under the 99% clip, on the same replicates.
    """
    from cgbg_bench.weighting import SECONDARY_CLIP, clip_weights

    weights = weights or task.metrics.bank_weights(log_w)
    w = weights.weights
    n_bins = task.observables[0].n_bins
    nb_wanted = task.metrics.proposal_blocks
    q_blocks = block_sums(index, w, nb_wanted, n_bins)
    clip_blocks = block_sums(index, clip_weights(log_w, SECONDARY_CLIP), nb_wanted, n_bins)
    nb = q_blocks.shape[0]
    s1 = block_sums(np.zeros((1, len(w)), np.int64), w, nb, 1)[:, 0, 0]
    s2 = block_sums(np.zeros((1, len(w)), np.int64), w * w, nb, 1)[:, 0, 0]
    return bootstrap_scores(
        q_blocks,
        reference.block_hist,
        observable_names=[o.name for o in task.observables],
        one_dimensional=_one_dimensional(task),
        n_bootstrap=task.metrics.n_bootstrap if n_bootstrap is None else n_bootstrap,
        seed=seed,
        ess_blocks=(s1, s2),
        n_samples=len(w),
        p_exact=reference.exact,
        secondary={"js_clip99": clip_blocks},
    )


def score_histograms(task: Task, block_hist: np.ndarray, reference: Reference, *,
                     n_bootstrap: int | None = None, seed: int = 0) -> Scores:
    """Score unweighted MD histograms (per time block) against the reference: JS, PMF error, no ESS."""
    return bootstrap_scores(
        np.asarray(block_hist, np.float64),
        reference.block_hist,
        observable_names=[o.name for o in task.observables],
        one_dimensional=_one_dimensional(task),
        n_bootstrap=task.metrics.n_bootstrap if n_bootstrap is None else n_bootstrap,
        seed=seed,
        p_exact=reference.exact,
    )


def score_bank(task: Task, pmf, positions: np.ndarray, log_w: np.ndarray, log_q: np.ndarray,
               reference: Reference, *, n_bootstrap: int | None = None, seed: int = 0, device: str = "cpu",
               limits: Limits | None = None, rms_force: float | None = None,
               index: np.ndarray | None = None) -> tuple[Scores, float, list]:
    """What every evaluation does once it has the bank's log-weights (in one process, from an
    energies file, or from shards): the task's weighting, the bootstrap scores, k-hat and the
    reliability flags. Returns (scores, pareto_k, reliability). ``pmf``: the submission (a path,
    a module, or None for energies), for the flags that look at the model itself. ``index``:
    ``observable_index(task, positions)`` when the caller has it."""
    weights = task.metrics.bank_weights(log_w)
    if index is None:
        index = observable_index(task, positions)
    scores = score_log_weights(task, log_w, index, reference, n_bootstrap=n_bootstrap, seed=seed,
                               weights=weights)
    reliability = assess_evaluation(task, pmf, scores.metrics, positions, log_w, log_q, device=device,
                                    limits=limits, rms_force=rms_force, pareto_k=weights.pareto_k)
    return scores, weights.pareto_k, reliability


def bank_log_weights(pmf, task: Task, *, device: str, batch_size: int = DEFAULT_BATCH_SIZE,
                     n_samples: int | None = None, progress: bool = False, proposal: Proposal | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray]:
    """Check ``pmf``'s contract and return the bank's positions and log w (see ``_bank_log_weights``)."""
    positions, log_w, _ = _bank_log_weights(pmf, task, device=device, batch_size=batch_size, n_samples=n_samples,
                                            progress=progress, proposal=proposal, limits=limits)
    return positions, log_w


def _bank_log_weights(pmf, task: Task, *, device: str, batch_size: int, n_samples: int | None,
                      progress: bool, proposal: Proposal | None,
                      limits: Limits) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Check ``pmf``'s contract; return the bank's positions, log w and (for a file) its RMS force.

    ``pmf``: a path to a submitted file, run in a confined child process under ``limits``
    (:mod:`cgbg_bench.confine`), or a module of the caller's own, run in this process.
    ``n_samples``: the first n samples of the bank (or a generated bank of that size).
    """
    proposal = proposal or task.load_proposal(n_samples)
    positions, log_q = proposal.positions, proposal.log_q
    if n_samples is not None:
        positions, log_q = positions[:n_samples], log_q[:n_samples]
    if isinstance(pmf, (str, os.PathLike)):
        detect_format(pmf)  # a file of the wrong format is refused before a process starts
        energies, rms_force = confined_energies(pmf, task, positions, batch_size=batch_size, device=device,
                                                progress=progress, limits=limits)
    else:
        check_pmf(pmf, task, sample=positions[:7], device=device)
        energies = compute_energies(pmf, positions, batch_size=batch_size, device=device, progress=progress)
        check_batch_independence(pmf, positions, energies, batch_size=batch_size, device=device)
        rms_force = None  # the caller's own module: measured in this process by assess_evaluation
    return positions, M.log_weights(energies, log_q, task.kT), rms_force


class Evaluation(NamedTuple):
    """What :func:`evaluate_inputs` returns: the result, the log-weights, and the bank and reference used."""

    result: Result
    log_w: np.ndarray
    proposal: Proposal
    reference: Reference


def evaluate(
    pmf,
    task: Task,
    *,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_bootstrap: int | None = None,
    seed: int = 0,
    n_samples: int | None = None,
    progress: bool = False,
    proposal: Proposal | None = None,
    reference: Reference | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Result, np.ndarray]:
    """Score ``pmf`` (a path or a loaded module) on ``task``.

    A path is a submission: its code runs in a child process under ``limits`` (wall clock,
    memory). Returns the Result and the log-weights (for plots). ``n_samples`` uses the first
    n samples of the bank (quick checks); the default is the whole bank.
    """
    out = evaluate_inputs(pmf, task, device=device, batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
                          n_samples=n_samples, progress=progress, proposal=proposal, reference=reference,
                          limits=limits)
    return out.result, out.log_w


def evaluate_inputs(
    pmf,
    task: Task,
    *,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_bootstrap: int | None = None,
    seed: int = 0,
    n_samples: int | None = None,
    progress: bool = False,
    proposal: Proposal | None = None,
    reference: Reference | None = None,
    limits: Limits = DEFAULT_LIMITS,
    started: ConfinedEnergies | None = None,
) -> Evaluation:
    """:func:`evaluate`, also returning the bank (``proposal``, as loaded: all of it, of which the
    first n samples were scored) and the reference it used, so that a caller that lets it load
    them (a file's child process starts first, and imports torch and loads the model meanwhile)
    need not read them again. ``started``: the child of the file ``pmf`` already started by the
    caller (with this ``batch_size``, ``device`` and ``limits``), e.g. before it loaded ``task``;
    it is used, and closed, here."""
    t0 = time.perf_counter()
    is_path = isinstance(pmf, (str, os.PathLike))
    torch_version = ""
    if is_path:
        proposal, reference, positions, log_w, index, rms_force, info = _confined_log_weights(
            pmf, task, device=device, batch_size=batch_size, n_samples=n_samples, progress=progress,
            proposal=proposal, reference=reference, limits=limits, started=started)
        # The child ran the submission's code: its word is taken for well-formed names only (else this
        # process asks torch itself)
        child_device, child_torch = str(info.get("device", "")), str(info.get("torch_version", ""))
        device = device or (child_device if _DEVICE_NAME.fullmatch(child_device) else default_device())
        torch_version = child_torch if _TORCH_VERSION.fullmatch(child_torch) else ""
    else:
        device = device or default_device()
        reference = reference or task.load_reference()
        proposal = proposal or task.load_proposal(n_samples)
        positions, log_w, rms_force = _bank_log_weights(pmf, task, device=device, batch_size=batch_size,
                                                        n_samples=n_samples, progress=progress,
                                                        proposal=proposal, limits=limits)
        index = None
    scores, k_hat, reliability = score_bank(task, pmf, positions, log_w, proposal.log_q[: len(log_w)], reference,
                                            n_bootstrap=n_bootstrap, seed=seed, device=device, limits=limits,
                                            rms_force=rms_force, index=index)
    result = Result(
        task=task.name,
        task_version=task.version,
        scores=scores,
        runtime_s=time.perf_counter() - t0,
        device=device,
        n_samples=len(positions),
        submission=str(pmf) if is_path else type(pmf).__name__,
        submission_sha256=sha256_file(pmf) if is_path else "",
        info={"batch_size": batch_size, "seed": seed, "pareto_k": k_hat, "reliability": reliability},
        torch_version=torch_version,
    )
    return Evaluation(result, log_w, proposal, reference)


_DEVICE_NAME = re.compile(r"cpu|cuda(:[0-9]+)?|mps")
_TORCH_VERSION = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,63}")


def _confined_log_weights(path, task: Task, *, device: str | None, batch_size: int, n_samples: int | None,
                          progress: bool, proposal: Proposal | None, reference: Reference | None,
                          limits: Limits, started: ConfinedEnergies | None = None):
    """A submitted file's log-weights, its child process started before anything is read: it imports
    torch and loads the model while this process reads the reference and the bank, and computes the
    energies while this one bins the bank. Returns (proposal, reference, positions, log w, bin index,
    rms force, the child's info: its device and torch version)."""
    if started is None:
        detect_format(path)  # a file of the wrong format is refused before a process starts
        started = ConfinedEnergies(path, batch_size=batch_size, device=device, progress=progress, limits=limits)
    with started as call:
        reference = reference or task.load_reference()
        proposal = proposal or task.load_proposal(n_samples)
        positions, log_q = proposal.positions, proposal.log_q
        if n_samples is not None:
            positions, log_q = positions[:n_samples], log_q[:n_samples]
        call.send_positions(positions, task.input_shape)
        index = observable_index(task, positions)
        energies, rms_force = call.result()
    return (proposal, reference, positions, M.log_weights(energies, log_q, task.kT), index, rms_force,
            dict(call.info))


def evaluate_baseline(task: Task, name: str, **kwargs) -> Result:
    """Score one of the task's baselines (a PMF, or MD histograms stored per block)."""
    b = task.baseline(name)
    path = b.file.verify()
    if b.kind == "pmf":
        result, _ = evaluate(path, task, **kwargs)
        return result
    t0 = time.perf_counter()
    reference = kwargs.get("reference") or task.load_reference()
    with np.load(path) as z:
        block_hist = z["block_hist"]
    scores = score_histograms(task, block_hist, reference, n_bootstrap=kwargs.get("n_bootstrap"),
                              seed=kwargs.get("seed", 0))
    return Result(task.name, task.version, scores, time.perf_counter() - t0, "cpu",
                  int(block_hist.sum()), submission=str(path), submission_sha256=b.file.sha256)
