"""Re-evaluate an entry's in-repo models and compare with its stored results.

A metric has *moved* when |reproduced - stored| exceeds the stored error bar. The full
check re-evaluates with the stored bank size and seed (the bootstrap replicate count
may be lowered with ``n_bootstrap``: that moves a bootstrap mean by about
error / sqrt(n_bootstrap), well inside the bar).

The quick check (``quick=True``, or ``n_samples`` equal to the entry's quick-check size; what
CI runs) re-evaluates each PMF on the small fixed bank of the result's ``quick_check`` block
with its seed and replicate count, and compares with the stored quick-check values. Any other
``n_samples`` below the stored bank size is a smoke test only (hashes, task version, loading,
the contract, finite metrics): values on a bank of another size are not comparable, and the
reproduction then says that nothing was compared and is not ``ok``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from cgbg_bench._io import sha256_file
from cgbg_bench.errors import (
    EntryFileMissing, EntryHashMismatch, EntryPathError, LeaderboardError, NothingCompared, StaleResults,
)
from cgbg_bench.leaderboard.paths import model_file
from cgbg_bench.leaderboard.schema import Entry, StoredMetric, task_fingerprint
from cgbg_bench.report import METRIC_LABELS, format_value_error

__all__ = ["MetricCheck", "Reproduction", "reproduce_entry", "reproduce_entries"]


@dataclass(frozen=True)
class MetricCheck:
    task: str
    metric: str
    stored: StoredMetric | None
    reproduced: StoredMetric | None
    compared: bool  # False: a smoke test on a bank of another size
    n_samples: int | None = None  # set for quick-check rows: the small bank's size

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
        label = METRIC_LABELS.get(self.metric, self.metric)
        if self.n_samples is not None:
            label += f" (quick, {self.n_samples})"
        return [self.task, label,
                format_value_error(s.value, s.error) if s else "-",
                format_value_error(r.value, r.error) if r else "-", shift, status]


@dataclass(frozen=True)
class Reproduction:
    entry: str
    checks: tuple[MetricCheck, ...]
    problems: tuple[LeaderboardError, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def compared(self) -> int:
        """How many stored values were compared (0: the reproduction checked nothing)."""
        return sum(c.compared for c in self.checks)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.moved for c in self.checks) and self.compared > 0

    @property
    def moved(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.moved]


def reproduce_entry(entry: Entry, *, root: Path, tasks_root: Path | None = None, n_samples: int | None = None,
                    n_bootstrap: int | None = None, device: str | None = None,
                    tasks: list[str] | None = None, quick: bool = False) -> Reproduction:
    """Re-evaluate every in-repo model of ``entry`` (or only ``tasks``) and compare.

    ``quick``: compare each PMF result's quick check (small fixed bank) instead of the full
    result; ``n_samples`` equal to a result's quick-check size does the same.
    """
    from cgbg_bench.evaluate import evaluate, evaluate_baseline
    from cgbg_bench.task import list_tasks, load_task

    where = str(entry.source or entry.name)
    checks, problems, notes = [], [], []
    shipped = set(list_tasks(tasks_root))
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
        if task_name not in shipped:
            problems.append(EntryPathError(f"{where}: {task_name!r} is not a shipped task"))
            continue
        try:
            file = model_file(root, model.path, f"{where}: models.{task_name}")
        except EntryPathError as exc:
            problems.append(exc)
            continue
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
        reference, quick_n = stored.metrics, None
        if model.format == "pmf":
            q = stored.quick_check
            wants_quick = quick or (n_samples is not None and n_samples < stored.n_samples)
            if wants_quick and q is not None and (quick or n_samples == q.n_samples):
                compared, reference, quick_n = True, q.metrics, q.n_samples
                result, _ = evaluate(file, task, device=device, n_bootstrap=n_bootstrap or q.n_bootstrap,
                                     seed=q.seed, n_samples=q.n_samples)
            elif wants_quick:
                bank = n_samples if n_samples is not None else stored.n_samples
                compared = bank == stored.n_samples
                result, _ = evaluate(file, task, device=device, n_bootstrap=nb, seed=stored.seed, n_samples=bank)
                if q is None:
                    notes.append(f"{task_name}: NOT COMPARED: the entry stores no quick_check to compare with "
                                 f"(smoke test on {bank} samples only); record it again with `cgbg-bench evaluate "
                                 f"... --task {task_name} --record {where}`")
                elif not compared:
                    notes.append(f"{task_name}: NOT COMPARED: smoke test on {bank} samples; the entry's quick "
                                 f"check is on {q.n_samples} samples: use --quick (or --n-samples {q.n_samples})")
            else:
                compared = True
                result, _ = evaluate(file, task, device=device, n_bootstrap=nb, seed=stored.seed,
                                     n_samples=stored.n_samples)
        elif model.format == "energies":  # rescored from the stored energies (cheap: no model runs)
            from cgbg_bench.energies import evaluate_energies

            compared = True
            result, _ = evaluate_energies(file, task, n_bootstrap=nb, seed=stored.seed)
            notes.append(f"{task_name}: scored from energies: the scoring is reproduced, the model is not")
        else:  # md-histogram baselines: the histograms are the model, there is no bank to shrink
            baseline = next((b for b in task.baselines if b.file.sha256 == model.sha256), None)
            if baseline is None:
                problems.append(StaleResults(f"{where}: task {task_name} ships no baseline with the file "
                                             f"{model.path}"))
                continue
            compared = True
            result = evaluate_baseline(task, baseline.name, n_bootstrap=nb, seed=stored.seed)
        new = result.scores.metrics
        for k in sorted(set(reference) | set(new), key=lambda k: (k not in reference, k)):
            got = new.get(k)
            reproduced = StoredMetric(got.value, got.error) if got is not None else None
            if k not in reference:
                if quick_n is None:
                    notes.append(f"{task_name}: metric {k} is computed now but not stored in the entry")
                continue
            checks.append(MetricCheck(task_name, k, reference[k], reproduced, compared, quick_n))
    if not any(c.compared for c in checks) and not problems:
        problems.append(NothingCompared(
            f"{where}: nothing was compared ({'; '.join(notes) or 'no in-repo model for the selected tasks'})"))
    return Reproduction(entry.name, tuple(checks), tuple(problems), tuple(notes))


def _reproduce_on_worker(path: Path, *, device: str | None = None, **kwargs) -> Reproduction:
    """On a Dask worker: ``reproduce_entry`` of one entry file; ``device`` None or cuda is the worker's GPU."""
    from cgbg_bench.distributed import worker_device
    from cgbg_bench.leaderboard.schema import load_entry

    return reproduce_entry(load_entry(path), device=worker_device(device), **kwargs)


def reproduce_entries(paths: list[Path], *, root: Path, scheduler=None, on_result=None, **kwargs) -> list[Reproduction]:
    """``reproduce_entry`` of every entry file in ``paths``, in that order.

    ``scheduler`` (``local:N``, a scheduler address or a ``distributed.Client``): each entry is a
    task of its own on a Dask cluster, all run in parallel (:mod:`cgbg_bench.distributed`); each
    is the same single-process evaluation as without it. ``on_result(i, reproduction)`` is called
    in the order of ``paths`` as each is in. Other keyword arguments are those of ``reproduce_entry``.
    """
    if scheduler is None:
        from cgbg_bench.leaderboard.schema import load_entry

        out = []
        for i, path in enumerate(paths):
            out.append(reproduce_entry(load_entry(path), root=root, **kwargs))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    from cgbg_bench.distributed import connect, map_ordered

    with connect(scheduler) as client:
        return map_ordered(_reproduce_on_worker, list(paths), client, on_result=on_result, root=root, **kwargs)
