"""Score a task's baselines and store them (``baseline_scores.json``, hash recorded in task.yaml).

The stored scores are what `cgbg-bench evaluate` prints beside a submission, and the
golden values that the accuracy gate re-checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from cgbg_bench._io import atomic_write_text
from cgbg_bench.build.provenance import file_entry, provenance, write_task_yaml

__all__ = ["rescore_baselines"]


def rescore_baselines(task_dir: Path, *, command: str, device: str = "cpu", seed: int = 0) -> Path:
    """Evaluate every baseline of the task in ``task_dir`` and record the scores in its task.yaml."""
    from cgbg_bench.evaluate import evaluate_baseline
    from cgbg_bench.task import load_task

    task_dir = Path(task_dir)
    task = load_task(task_dir / "task.yaml")
    scores = {b.name: evaluate_baseline(task, b.name, device=device, seed=seed).as_dict() for b in task.baselines}
    for s in scores.values():  # relative to the task folder, as in task.yaml: no machine's absolute path
        s["submission"] = os.path.relpath(s["submission"], task_dir)
    out = task_dir / "baseline_scores.json"
    atomic_write_text(out, json.dumps({"task": task.name, "task_version": task.version, "baselines": scores},
                                      indent=2) + "\n")
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    data["baseline_scores"] = file_entry(out, task_dir, provenance(command, seed))
    write_task_yaml(task_dir, data)
    return out
