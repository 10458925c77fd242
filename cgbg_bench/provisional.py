"""Provisional tasks: an MD reference whose own noise is still above its system's target.

A task's reference noise is the JS between the first and the second half (in time, every run
split; :func:`cgbg_bench.reference.run_halves`) of the reference's blocks along the headline
observable, the number ``cgbg-bench md report`` prints as "JS(1st half, 2nd half)". The build
stores it in task.yaml with the system's target::

    reference_noise: {observable: ala2, js_halves: 0.013, target: 0.01}

``js_halves: null``: the reference has too few blocks to split in two. A task whose noise is
above the target (or not measured) is provisional: ``list``, ``info`` and the leaderboard say
so. An exact reference (Mueller-Brown) has no target and is never provisional.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cgbg_bench.errors import UsageError
from cgbg_bench.reference import halves_js, run_halves

__all__ = ["NOISE_TARGET", "noise_target", "reference_noise"]

#: system -> the largest JS between the reference's halves (headline residue) of a final task.
NOISE_TARGET = {"ala2": 0.01, "ala3": 0.01, "ala6": 0.02}


def noise_target(system: str) -> float:
    """The reference-noise target of ``system`` (:data:`NOISE_TARGET`); a UsageError names the known ones."""
    try:
        return NOISE_TARGET[system]
    except KeyError:
        raise UsageError(f"no reference-noise target for system {system!r}; NOISE_TARGET has "
                         f"{sorted(NOISE_TARGET)}") from None


def reference_noise(system: str, observable: str, block_hist: np.ndarray, blocks_per_run: Sequence[int]) -> dict:
    """task.yaml ``reference_noise`` of a reference made of runs with ``blocks_per_run`` blocks,
    stacked in ``block_hist`` (n_blocks, n_observables, n_bins), the headline ``observable`` first."""
    target = noise_target(system)
    if sum(blocks_per_run) != len(block_hist):
        raise UsageError(f"blocks_per_run {list(blocks_per_run)} sum to {sum(blocks_per_run)}, block_hist has "
                         f"{len(block_hist)} blocks")
    first_half = run_halves(list(blocks_per_run))
    if first_half.all() or not first_half.any():  # every run shorter than 2 blocks: no halves
        js = None
    else:
        js = float(f"{halves_js(block_hist[:, :1], first_half)[0]:.6g}")
    return {"observable": observable, "js_halves": js, "target": target}
