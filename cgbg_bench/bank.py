"""Proposal banks generated on first use from shipped flow weights, cached, and fingerprinted.

A 10^6-sample bank is ~70 MB of floats: the repository ships the flow weights instead
(a few MB), and every user regenerates the same bank from the same seed. The first
generation is checked against the fingerprint recorded in the task (mean and standard
deviation of log q, mean radius of gyration) before it is cached; a cached bank is
re-checked on every load (cheap), so a damaged cache is regenerated, never used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from cgbg_bench._io import atomic_savez
from cgbg_bench.errors import DataError

__all__ = ["bank_cache_path", "bank_fingerprint", "cache_dir", "generated_bank", "GENERATORS"]

log = logging.getLogger(__name__)


def _ic_flow(weights: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from cgbg_bench.flows.internal import ICFlow

    return ICFlow.load(weights).sample_bank(n, seed)


#: generator name -> f(weights path, n, seed) -> (positions float32, log_q float64)
GENERATORS: dict[str, Callable[[Path, int, int], tuple[np.ndarray, np.ndarray]]] = {"ic-flow": _ic_flow}


def cache_dir() -> Path:
    """``$CGBG_BENCH_CACHE``, else ``~/.cache/cgbg-bench``."""
    env = os.environ.get("CGBG_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cgbg-bench"


def bank_fingerprint(positions: np.ndarray, log_q: np.ndarray) -> dict[str, float]:
    """Summary statistics that identify a bank (float64, order-independent)."""
    x = np.asarray(positions, np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    rg = np.sqrt((centred**2).sum(-1).mean(-1))
    lq = np.asarray(log_q, np.float64)
    return {"mean_log_q": float(lq.mean()), "std_log_q": float(lq.std()), "mean_rg_nm": float(rg.mean())}


def _matches(fp: dict[str, float], expected: dict[str, float], rtol: float) -> list[str]:
    bad = []
    for key, want in expected.items():
        got = fp.get(key)
        if got is None or not abs(got - want) <= rtol * max(abs(want), 1e-12):
            bad.append(f"{key}: got {got!r}, expected {want!r}")
    return bad


def bank_cache_path(task, n_samples: int | None = None) -> Path:
    """Where the task's generated bank of ``n_samples`` (default: full size) is cached.

    Keyed by what the samples depend on, the flow's weights (sha256), the seed and the size, plus
    the task name; not by the task version, so a version that keeps the flow (a reference-only
    refresh) reuses the bank.
    """
    n = task.bank.n_samples if n_samples is None else int(n_samples)
    return cache_dir() / f"{task.name}-{task.proposal.sha256[:12]}-{task.bank.seed}-{n}.npz"


def generated_bank(task, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The task's generated bank (full size, or a separate smaller bank of ``n_samples``).

    Only the full bank is checked against the fingerprint; a smaller one (quick checks,
    tests) is drawn with the same seed but is not the first n samples of the full bank.
    """
    spec = task.bank
    if spec.generator not in GENERATORS:
        raise DataError(f"task {task.name}: unknown bank generator {spec.generator!r}; "
                        f"known: {sorted(GENERATORS)}")
    n = spec.n_samples if n_samples is None else int(n_samples)
    full = n == spec.n_samples
    weights = task.proposal.verify()
    path = bank_cache_path(task, n)
    if path.is_file():
        try:
            with np.load(path) as z:
                positions, log_q = z["positions"], z["log_q"]
            if not full or not _matches(bank_fingerprint(positions, log_q), spec.fingerprint, spec.rtol):
                return positions, log_q
            log.warning("cached bank %s does not match the task's fingerprint: regenerating", path)
        except (OSError, KeyError, ValueError) as exc:
            log.warning("cached bank %s is unreadable (%s): regenerating", path, exc)
    log.info("generating the %s proposal bank (%d samples, seed %d) into %s", task.name, n, spec.seed, path)
    positions, log_q = GENERATORS[spec.generator](weights, n, spec.seed)
    if full:
        problems = _matches(bank_fingerprint(positions, log_q), spec.fingerprint, spec.rtol)
        if problems:
            raise DataError(
                f"task {task.name}: the regenerated proposal bank does not match the fingerprint in "
                f"task.yaml ({'; '.join(problems)}); a different torch build can change the samples: "
                "report it with `cgbg-bench info " + task.name + "` output and your torch version"
            )
    atomic_savez(path, compressed=False, positions=positions, log_q=log_q)
    return positions, log_q
