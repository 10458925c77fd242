"""Re-evaluate an entry's in-repo models and compare with its stored results.

A metric has *moved* when |reproduced - stored| exceeds the stored error bar. The full
check re-evaluates with the stored bank size and seed (the bootstrap replicate count
may be lowered with ``n_bootstrap``: that moves a bootstrap mean by about
error / sqrt(n_bootstrap), well inside the bar). With ``n_samples`` below the stored
bank size (the quick check CI runs), values are not comparable (JS and PMF error grow as
the bank shrinks), so the check is a smoke test: hashes, task version, loading, the PMF
contract, and finite metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from cgbg_bench._io import sha256_file
from cgbg_bench.errors import EntryFileMissing, EntryHashMismatch, LeaderboardError, StaleResults
from cgbg_bench.leaderboard.schema import Entry, StoredMetric, task_fingerprint
from cgbg_bench.report import METRIC_LABELS, format_value_error

__all__ = ["MetricCheck", "Reproduction", "reproduce_entry"]


@dataclass(frozen=True)
class MetricCheck:
    task: str
    metric: str
    stored: StoredMetric | None
    reproduced: StoredMetric | None
    compared: bool  # False: quick check on a smaller bank

    @property
    def moved(self) -> bool:
        if self.reproduced is None or not math.isfinite(self.reproduced.value):
            return True  # a metric that vanished or is not finite always fails
        if not self.compared or self.stored is None:
            return False
        tolerance = max(self.stored.error, 1e-9 * max(1.0, abs(self.stored.value)))
        return abs(self.reproduced.value - self.stored.value) > tolerance

    def row(self) -> list[str]:
        s, r = self.stored, self.reproduced
        shift = ("-" if not (self.compared and s and r) else
                 f"{(r.value - s.value) / s.error:+.2f}" if s.error > 0 else f"{r.value - s.value:+.3g}")
        status = "MOVED" if self.moved else ("ok" if self.compared else "not compared")
        return [self.task, METRIC_LABELS.get(self.metric, self.metric),
                format_value_error(s.value, s.error) if s else "-",
                format_value_error(r.value, r.error) if r else "-", shift, status]


@dataclass(frozen=True)
class Reproduction:
    entry: str
    checks: tuple[MetricCheck, ...]
    problems: tuple[LeaderboardError, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.moved for c in self.checks)

    @property
    def moved(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.moved]


def reproduce_entry(entry: Entry, *, root: Path, tasks_root: Path | None = None, n_samples: int | None = None,
                    n_bootstrap: int | None = None, device: str | None = None,
                    tasks: list[str] | None = None) -> Reproduction:
    """Re-evaluate every in-repo model of ``entry`` (or only ``tasks``) and compare."""
    from cgbg_bench.evaluate import evaluate, evaluate_baseline
    from cgbg_bench.task import load_task

    where = str(entry.source or entry.name)
    checks, problems, notes = [], [], []
    for task_name in sorted(entry.models):
        if tasks is not None and task_name not in tasks:
            continue
        model, stored = entry.models[task_name], entry.results.get(task_name)
        if model.path is None:
            notes.append(f"{task_name}: skipped, the model is at a URL ({model.url}), not in the repository; "
                         "download it and evaluate it by hand")
            continue
        if stored is None:
            problems.append(StaleResults(f"{where}: no stored results for {task_name} to compare with"))
            continue
        file = root / model.path
        if not file.is_file():
            problems.append(EntryFileMissing(f"{where}: {model.path} is not in the repository"))
            continue
        if sha256_file(file) != model.sha256:
            problems.append(EntryHashMismatch(f"{where}: {model.path} does not match its recorded sha256"))
            continue
        task = load_task(task_name, root=tasks_root)
        if stored.task_version != task.version:
            problems.append(StaleResults(f"{where}: results.{task_name} are for task version "
                                         f"{stored.task_version}, the task is version {task.version}"))
            continue
        if stored.task_fingerprint != task_fingerprint(task):
            problems.append(StaleResults(f"{where}: results.{task_name} were computed on other task data or "
                                         "settings (same version); they cannot be reproduced: re-evaluate"))
            continue
        nb = n_bootstrap or stored.n_bootstrap
        if model.format == "pmf":
            bank = n_samples if n_samples is not None and n_samples < stored.n_samples else stored.n_samples
            compared = bank == stored.n_samples
            result, _ = evaluate(file, task, device=device, n_bootstrap=nb, seed=stored.seed, n_samples=bank)
            if not compared:
                notes.append(f"{task_name}: quick check on the first {bank} samples (stored results use "
                             f"{stored.n_samples}): values not compared; run without --n-samples to compare")
        else:  # md-histogram baselines: the histograms are the model, there is no bank to shrink
            baseline = next((b for b in task.baselines if b.file.sha256 == model.sha256), None)
            if baseline is None:
                problems.append(StaleResults(f"{where}: task {task_name} ships no baseline with the file "
                                             f"{model.path}"))
                continue
            compared = True
            result = evaluate_baseline(task, baseline.name, n_bootstrap=nb, seed=stored.seed)
        new = result.scores.metrics
        for k in sorted(set(stored.metrics) | set(new), key=lambda k: (k not in stored.metrics, k)):
            got = new.get(k)
            reproduced = StoredMetric(got.value, got.error) if got is not None else None
            if k not in stored.metrics:
                notes.append(f"{task_name}: metric {k} is computed now but not stored in the entry")
                continue
            checks.append(MetricCheck(task_name, k, stored.metrics[k], reproduced, compared))
    return Reproduction(entry.name, tuple(checks), tuple(problems), tuple(notes))
