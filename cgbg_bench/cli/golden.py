"""`cgbg-bench golden check|update [TASK ...]`: the accuracy gate's golden files.

The golden file of a task is its ``baseline_scores.json`` (hash recorded in task.yaml):
the scores of every shipped baseline. ``check`` re-scores every baseline with the
task's settings and the stored seed and fails when a headline metric (its bootstrap
mean or its full-data point value) moved by more than ``TOLERANCE_SIGMAS`` times
that metric's stored bootstrap error. ``update`` re-scores and rewrites the file
(rescore_baselines), printing what changed; review and commit that diff.

Why 0.25 standard errors: re-scoring is deterministic for a fixed seed, so on an
unchanged code path the scores agree to rounding (float differences between BLAS
builds are ~1e-12 relative). A harmless refactor that only reorders the bootstrap's
random draws moves a bootstrap mean by its Monte-Carlo error, sigma / sqrt(500) =
0.045 sigma, so 0.25 sigma (5.6 of those) passes it, while any change of a metric's
definition, the clipping, the binning or the data that shifts a score by a quarter
of its own error bar is flagged for review.
"""

from __future__ import annotations

import json
import math
import sys

from cgbg_bench.metrics import METRIC_NAMES

__all__ = ["TOLERANCE_SIGMAS", "HEADLINE", "compare_scores", "rescore", "check_task", "add_parser"]

#: Allowed change of a stored score, in units of its stored bootstrap standard deviation.
TOLERANCE_SIGMAS = 0.25

#: The metrics the gate pins (those a baseline has: MD-histogram baselines have no ESS).
HEADLINE = METRIC_NAMES


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def compare_scores(task: str, baseline: str, old: dict, new: dict, sigmas: float = TOLERANCE_SIGMAS) -> list[str]:
    """Messages for every headline metric that changed by more than ``sigmas`` x its stored error.

    ``old`` and ``new`` are the ``metrics`` mappings of a stored and a fresh result
    ({metric: {"value", "error", "point"}}).
    """
    problems = []
    for metric in HEADLINE:
        if metric not in old and metric not in new:
            continue
        if metric not in new or metric not in old:
            where = "the golden file" if metric not in old else "the new scores"
            problems.append(f"task {task}, baseline {baseline}, metric {metric}: missing from {where}")
            continue
        err = float(old[metric]["error"])
        for field in ("value", "point"):
            a, b = float(old[metric][field]), float(new[metric][field])
            if _same(a, b):
                continue
            # floor: float noise on a score whose bootstrap error is 0 or NaN
            tol = max(sigmas * err if math.isfinite(err) else 0.0, 1e-9 * max(abs(a), 1e-12))
            if math.isnan(a) or math.isnan(b) or abs(b - a) > tol:
                label = "bootstrap mean" if field == "value" else "full-data value"
                problems.append(
                    f"task {task}, baseline {baseline}, metric {metric} ({label}): old {a:.6g}, new {b:.6g} "
                    f"(change {b - a:+.3g}, tolerance {tol:.3g} = {sigmas} x bootstrap error {err:.3g})"
                )
    return problems


def _golden(task) -> dict:
    from cgbg_bench.errors import TaskFileMissing

    if task.baseline_scores is None:
        raise TaskFileMissing(f"task {task.name} has no baseline_scores in task.yaml; create it with "
                              f"`cgbg-bench golden update {task.name}`")
    return json.loads(task.baseline_scores.verify().read_text())


def rescore(task, seed: int = 0, device: str = "cpu") -> dict[str, dict]:
    """Fresh results ({baseline: Result.as_dict()}) of every baseline, with the task's settings."""
    from cgbg_bench.evaluate import evaluate_baseline

    proposal, reference = task.load_proposal(), task.load_reference()
    out = {}
    for b in task.baselines:
        kwargs = {"proposal": proposal} if b.kind == "pmf" else {}
        out[b.name] = evaluate_baseline(task, b.name, device=device, seed=seed, reference=reference,
                                        **kwargs).as_dict()
    return out


def check_task(task, sigmas: float = TOLERANCE_SIGMAS, device: str = "cpu") -> list[str]:
    """Re-score every baseline of ``task``; messages for each score that moved beyond the tolerance."""
    golden = _golden(task)
    seed = int(task.baseline_scores.provenance.get("seed") or 0)
    problems = []
    if golden.get("task_version") != task.version:
        problems.append(f"task {task.name}: the golden file is for version {golden.get('task_version')}, "
                        f"the task is version {task.version}")
    stored = golden.get("baselines", {})
    names = [b.name for b in task.baselines]
    problems += [f"task {task.name}, baseline {n}: in the golden file but not in task.yaml"
                 for n in stored if n not in names]
    problems += [f"task {task.name}, baseline {n}: not in the golden file" for n in names if n not in stored]
    fresh = rescore(task, seed=seed, device=device)
    for name in names:
        if name in stored:
            problems += compare_scores(task.name, name, stored[name]["metrics"], fresh[name]["metrics"], sigmas)
    return problems


def add_parser(sub) -> None:
    p = sub.add_parser("golden", help="check or update the stored baseline scores (the accuracy gate)")
    gsub = p.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    c = gsub.add_parser("check", help="re-score every baseline; exit 1 if a score moved beyond the tolerance")
    c.add_argument("tasks", nargs="*", metavar="TASK", help="task names (default: every task)")
    c.add_argument("--sigmas", type=float, default=TOLERANCE_SIGMAS,
                   help=f"tolerance in stored bootstrap errors (default {TOLERANCE_SIGMAS})")
    c.set_defaults(func=run_check)
    u = gsub.add_parser("update", help="re-score every baseline and rewrite baseline_scores.json (review the diff)")
    u.add_argument("tasks", nargs="*", metavar="TASK", help="task names (default: every task)")
    u.set_defaults(func=run_update)


def _tasks(names: list[str]):
    from cgbg_bench.task import list_tasks, load_task

    return [load_task(n) for n in (names or list_tasks())]


def run_check(args) -> int:
    tasks = _tasks(args.tasks)
    failures = []
    for task in tasks:
        problems = check_task(task, args.sigmas)
        print(f"{task.name}: {len(task.baselines)} baselines, "
              + ("unchanged" if not problems else f"{len(problems)} changes"))
        failures += problems
    if failures:
        print("accuracy gate FAILED:\n  " + "\n  ".join(failures)
              + "\nIf the change is intended: `cgbg-bench golden update TASK`, review and commit the diff.",
              file=sys.stderr)
        return 1
    return 0


def run_update(args) -> int:
    from cgbg_bench.build.scores import rescore_baselines

    for task in _tasks(args.tasks):
        old = _golden(task).get("baselines", {}) if task.baseline_scores is not None else {}
        seed = int(task.baseline_scores.provenance.get("seed") or 0) if task.baseline_scores else 0
        out = rescore_baselines(task.root, command=f"cgbg-bench golden update {task.name}", seed=seed)
        new = json.loads(out.read_text())["baselines"]
        print(f"{task.name}: wrote {out}")
        for name, result in new.items():
            for metric in HEADLINE:
                if metric in result["metrics"]:
                    b = result["metrics"][metric]["value"]
                    a = old.get(name, {}).get("metrics", {}).get(metric, {}).get("value")
                    change = "new" if a is None else ("unchanged" if _same(a, b) else f"{a:.6g} -> {b:.6g}")
                    print(f"  {name:<24} {metric:<10} {change}")
    return 0
