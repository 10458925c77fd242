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

__all__ = ["rescore_baselines", "with_current_weighting"]


def with_current_weighting(metrics: dict) -> dict:
    """A task.yaml ``metrics`` mapping moved to the weighting new task versions use
    (the first of :data:`cgbg_bench.weighting.WEIGHTINGS`); bootstrap and block settings are kept."""
    from cgbg_bench.weighting import WEIGHTINGS

    out = {k: v for k, v in metrics.items() if k not in ("weighting", "clip_percentile")}
    return {"weighting": WEIGHTINGS[0], **out}


def rescore_baselines(task_dir: Path, *, command: str, device: str = "cpu", seed: int = 0) -> Path:
    """Evaluate every baseline of the task in ``task_dir`` and record the scores in its task.yaml,
    with the task's resolution (:mod:`cgbg_bench.resolution`), measured on the same bank."""
    from cgbg_bench.evaluate import evaluate, evaluate_baseline
    from cgbg_bench.resolution import measure_resolution
    from cgbg_bench.task import load_task

    task_dir = Path(task_dir)
    task = load_task(task_dir / "task.yaml")
    scores, best = {}, None  # best: (JS, name, raw log-weights) of the best PMF baseline
    for b in task.baselines:
        if b.kind == "pmf":
            result, log_w = evaluate(b.file.verify(), task, device=device, seed=seed)
            js = result.scores.metrics["js"].value
            if best is None or js < best[0]:
                best = (js, b.name, log_w)
        else:
            result = evaluate_baseline(task, b.name, device=device, seed=seed)
        scores[b.name] = result.as_dict()
    for s in scores.values():  # relative to the task folder, as in task.yaml: no machine's absolute path
        s["submission"] = os.path.relpath(s["submission"], task_dir)
    out = task_dir / "baseline_scores.json"
    atomic_write_text(out, json.dumps({"task": task.name, "task_version": task.version, "baselines": scores},
                                      indent=2) + "\n")
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    data["baseline_scores"] = file_entry(out, task_dir, provenance(command, seed))
    data["resolution"] = measure_resolution(task, seed=seed, **({} if best is None else
                                                                {"base": best[1], "base_log_w": best[2]}))
    write_task_yaml(task_dir, data)
    return out
