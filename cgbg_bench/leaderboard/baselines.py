"""Every shipped baseline as a leaderboard entry, generated from the tasks' stored scores.

Sources: each task's ``baselines`` list (file, kind, description; hash-checked), its
``baseline_scores.json`` (hash-checked; written by ``cgbg-bench make-task``), and the
``baselines.yaml`` next to the baseline files (training records). One entry per
baseline file group and name, ``baseline-<group>-<name>``, with a model and results for
every task that ships it. :func:`baseline_entries` re-evaluates nothing; :func:`add_baselines`
adds each PMF result's quick check (kept from the entry file already there when the model,
task data and quick-check settings are unchanged, else computed on the small bank).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import dataclasses

import yaml

from cgbg_bench.errors import LeaderboardError, StaleResults
from cgbg_bench.leaderboard.schema import (
    METRIC_ORDER, QUICK_N_BOOTSTRAP, QUICK_N_SAMPLES, Entry, Method, ModelFile, StoredMetric, TaskResult,
    entry_paths, load_entry, task_fingerprint, write_entry,
)

__all__ = ["BASELINE_PREFIX", "baseline_entries", "add_baselines"]

BASELINE_PREFIX = "baseline-"
BASELINE_AUTHORS = ("cgbg-bench maintainers",)
BASELINE_LICENSE = "MIT"  # the repository's license (pyproject.toml)


def _training_data(training: Mapping[str, Any] | None) -> str:
    if not training:
        return "none"
    kind = training.get("data_kind") or Path(str(training.get("data", ""))).stem
    return kind if kind in ("unbiased", "biased") else "other"


def _approach(kind: str, description: str, training: Mapping[str, Any] | None) -> str:
    if kind == "md-histogram":
        return "MD histogram (not a PMF)"
    if training:
        return "force matching" if "force" in description.lower() else "trained"
    return "not trained"


def _result(task_version: int, fingerprint: str, r: Mapping[str, Any]) -> TaskResult:
    metrics = {k: StoredMetric(float(r["metrics"][k]["value"]), float(r["metrics"][k]["error"]))
               for k in METRIC_ORDER if k in r["metrics"]
               and math.isfinite(r["metrics"][k]["value"]) and math.isfinite(r["metrics"][k]["error"])}
    return TaskResult(
        task_version=int(task_version),
        task_fingerprint=fingerprint,
        model_sha256=str(r["submission_sha256"]),
        metrics=metrics,
        n_samples=int(r["n_samples"]),
        n_bootstrap=int(r["n_bootstrap"]),
        seed=int(r.get("seed", 0)),
        cgbg_bench_version=str(r["cgbg_bench_version"]),
        device=str(r["device"]),
        runtime_s=round(float(r["runtime_s"]), 3),
        torch_version=str(r["torch_version"]) if r.get("torch_version") is not None else None,
        # the flags and k-hat of the evaluation, as `evaluate --record` keeps them: a flagged
        # baseline is not ranked either
        reliability=tuple(f["code"] for f in r.get("reliability") or []),
        pareto_k=None if r.get("pareto_k") is None else round(float(r["pareto_k"]), 4),
    )


def baseline_entries(root: Path, tasks_root: Path | None = None) -> list[Entry]:
    """Build (do not write) the baseline entries from the current tasks, sorted by name."""
    from cgbg_bench.task import list_tasks, load_task

    root = Path(root).resolve()
    acc: dict[str, dict[str, Any]] = {}
    for task_name in list_tasks(tasks_root):
        task = load_task(task_name, root=tasks_root)
        if not task.baselines:
            continue
        if task.baseline_scores is None:
            raise StaleResults(f"task {task.name} ships baselines but no baseline_scores; rebuild it "
                               f"(`cgbg-bench make-task ...`)")
        scores = json.loads(task.baseline_scores.verify().read_text())
        created = str(task.baseline_scores.provenance.get("created", ""))
        for b in task.baselines:
            if b.name not in scores.get("baselines", {}):
                raise StaleResults(f"{task.baseline_scores.path} has no scores for baseline {b.name!r}; "
                                   "rebuild the task's baseline scores")
            path = b.file.verify()
            try:
                rel = path.resolve().relative_to(root).as_posix()
            except ValueError as exc:
                raise StaleResults(f"baseline file {path} is outside the repository {root}") from exc
            group = path.parent.name
            meta_file = path.parent / "baselines.yaml"
            meta = (yaml.safe_load(meta_file.read_text()) or {}) if meta_file.is_file() else {}  # trusted
            meta = meta.get(b.name, {}) or {}
            training = meta.get("training")
            description = b.description or str(meta.get("description", ""))
            # the scores file is hash-checked in task.yaml, so it belongs to this bank and reference
            result = _result(scores.get("task_version", task.version), task_fingerprint(task),
                             scores["baselines"][b.name])
            e = acc.setdefault(f"{BASELINE_PREFIX}{group}-{b.name}", {
                "model_name": b.name, "description": description, "kind": b.kind, "training": training,
                "dates": [], "models": {}, "results": {},
            })
            e["dates"].append(created)
            e["models"][task.name] = ModelFile(sha256=b.file.sha256, path=rel, format=b.kind)
            e["results"][task.name] = result
    entries = []
    for name in sorted(acc):
        e = acc[name]
        training = e["training"]
        n_params = training.get("n_parameters") if training else None
        first = next(iter(e["results"].values()))
        entries.append(Entry(
            name=name,
            kind="baseline",
            model_name=e["model_name"],
            model_version=first.cgbg_bench_version,
            authors=BASELINE_AUTHORS,
            date=max(e["dates"]) or "1970-01-01",
            description=e["description"],
            method=Method(
                approach=_approach(e["kind"], e["description"], training),
                architecture=None,
                training_data=_training_data(training),
                n_parameters=int(n_params) if n_params is not None else None,
            ),
            license=BASELINE_LICENSE,
            links={"paper": None, "code": None},
            models=dict(sorted(e["models"].items())),
            results=dict(sorted(e["results"].items())),
        ))
    return entries


def _previous(folder: Path, name: str) -> Entry | None:
    path = Path(folder) / f"{name}.yaml"
    try:
        return load_entry(path) if path.is_file() else None
    except (LeaderboardError, OSError):
        return None


def with_quick_checks(entry: Entry, root: Path, tasks_root: Path | None = None, previous: Entry | None = None,
                      device: str = "cpu", log=print, recompute: bool = False) -> Entry:
    """``entry`` with a quick check for every PMF result: ``previous``'s where still valid (and not
    ``recompute``), else computed."""
    from cgbg_bench.leaderboard.record import bank_size, compute_quick_check
    from cgbg_bench.task import load_task

    results = {}
    for task_name, r in entry.results.items():
        model = entry.models.get(task_name)
        if model is None or model.format != "pmf" or model.path is None:
            results[task_name] = r
            continue
        task = load_task(task_name, root=tasks_root)
        old = previous.results.get(task_name) if previous is not None else None
        q = old.quick_check if old is not None else None
        still_valid = (q is not None and old.model_sha256 == r.model_sha256
                       and old.task_fingerprint == r.task_fingerprint and q.seed == r.seed
                       and q.n_bootstrap == QUICK_N_BOOTSTRAP and q.n_samples == min(QUICK_N_SAMPLES, bank_size(task)))
        if recompute or not still_valid:
            log(f"{entry.name}: computing the quick check on {task_name}")
            q = compute_quick_check(Path(root) / model.path, task, device=device, seed=r.seed)
        results[task_name] = dataclasses.replace(r, quick_check=q)
    return dataclasses.replace(entry, results=results)


def add_baselines(submissions: Path, root: Path, tasks_root: Path | None = None, *,
                  reuse_from: Path | None = None, device: str = "cpu", log=print,
                  recompute_quick_checks: bool = False) -> tuple[list[Path], list[Path]]:
    """Write every baseline entry (atomically) and delete baseline entries that no longer exist.

    Each PMF result gets its quick check, kept from the same entry in ``reuse_from`` (default:
    ``submissions``) when still valid, else computed (always, with ``recompute_quick_checks``:
    after a change to how small banks are drawn or scored). Returns (written, removed). Only files
    named ``baseline-*.yaml`` whose kind is ``baseline`` are ever removed; submissions are
    never touched.
    """
    reuse_from = Path(reuse_from if reuse_from is not None else submissions)
    entries = [with_quick_checks(e, root, tasks_root, _previous(reuse_from, e.name), device=device, log=log,
                                 recompute=recompute_quick_checks)
               for e in baseline_entries(root, tasks_root)]
    written = [write_entry(e, Path(submissions) / f"{e.name}.yaml") for e in entries]
    keep = {p.name for p in written}
    removed = []
    for p in entry_paths(Path(submissions)):
        if p.name.startswith(BASELINE_PREFIX) and p.name not in keep:
            try:
                stale = load_entry(p).is_baseline
            except (LeaderboardError, OSError):  # a broken file is reported by validate, not deleted
                stale = False
            if stale:
                p.unlink()
                removed.append(p)
    return written, removed
