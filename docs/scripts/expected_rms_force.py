"""Measure reliability.EXPECTED_RMS_FORCE: each task's PMF baselines' RMS force on its bank.

    python docs/scripts/expected_rms_force.py [TASK ...]      # default: every shipped task

Prints, per task, the median RMS force (task energy unit per nm, per Cartesian component) of its
PMF baselines on the first ``FORCE_CONFIGS`` (256) configurations of its bank, and each baseline's,
as the table's lines (cgbg_bench/reliability.py). Loads (or generates) each bank.
"""

from __future__ import annotations

import argparse

import numpy as np

from cgbg_bench.reliability import FORCE_CONFIGS, baseline_force_scales
from cgbg_bench.task import list_tasks, load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*")
    args = ap.parse_args()
    for name in args.tasks or list_tasks():
        task = load_task(name)
        scales = baseline_force_scales(task, task.load_proposal().positions[:FORCE_CONFIGS])
        if not scales:
            continue
        each = ", ".join(f"{k} {v:#.4g}" for k, v in scales.items())
        print(f'    "{task.name}": {np.median(list(scales.values())):#.4g},  # v{task.version}: {each}', flush=True)


if __name__ == "__main__":
    main()
