"""Check entries: schema, placeholders, task names, model paths and hashes, task versions,
results present, a quick check for every PMF result.

Every problem is a typed :class:`~cgbg_bench.errors.LeaderboardError` whose message
names the file, the field and the fix; :func:`validate_all` collects all of them
instead of stopping at the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from cgbg_bench._io import sha256_file
import dataclasses

from cgbg_bench.errors import (
    CgbgError, EntryFileMissing, EntryHashMismatch, EntryPathError, EntrySchemaError, LeaderboardError,
    MissingResults, StaleResults,
)
from cgbg_bench.leaderboard.paths import model_file
from cgbg_bench.leaderboard.schema import TODO, Entry, entry_paths, load_entry, task_fingerprint

__all__ = ["check_entry", "validate_all", "without_quick_checks"]


def without_quick_checks(entry: Entry) -> Entry:
    """The entry with every result's quick check dropped (what ``baseline_entries`` builds)."""
    return dataclasses.replace(entry, results={t: dataclasses.replace(r, quick_check=None)
                                               for t, r in entry.results.items()})


def _placeholders(value: Any, where: str) -> Iterator[str]:
    if isinstance(value, str) and TODO in value:
        yield where
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _placeholders(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _placeholders(v, f"{where}[{i}]")


def check_entry(entry: Entry, *, root: Path, tasks_root: Path | None = None,
                baselines: dict[str, Entry] | None = None) -> list[LeaderboardError]:
    """Every problem of one parsed entry (an empty list: it is valid).

    ``baselines``: the entries that ``add-baselines`` would write now; a baseline entry
    that differs from its regenerated form is stale.
    """
    from cgbg_bench.task import list_tasks, load_task

    where = str(entry.source or entry.name)
    shipped = set(list_tasks(tasks_root))
    problems: list[LeaderboardError] = []
    for field in _placeholders(entry.as_dict(), ""):
        problems.append(EntrySchemaError(f"{where}: {field} is still a {TODO} placeholder: fill it in"))
    if not entry.models and not entry.results:
        problems.append(MissingResults(
            f"{where}: no models and no results; run `cgbg-bench evaluate MODEL --task TASK --record {where}`"))
    for task_name in sorted(set(entry.models) | set(entry.results)):
        model, result = entry.models.get(task_name), entry.results.get(task_name)
        if model is None:
            problems.append(MissingResults(f"{where}: results for task {task_name} but no model file under "
                                           f"models.{task_name}"))
        if result is None:
            problems.append(MissingResults(
                f"{where}: a model for task {task_name} but no results; run `cgbg-bench evaluate "
                f"{model.path or model.url} --task {task_name} --record {where}`"))
        if task_name not in shipped:
            problems.append(EntryPathError(f"{where}: {task_name!r} is not a shipped task (known: "
                                           f"{', '.join(sorted(shipped)) or 'none'}); task keys are names "
                                           "from `cgbg-bench list`"))
            continue
        try:
            task = load_task(task_name, root=tasks_root)
        except CgbgError as exc:
            problems.append(StaleResults(f"{where}: task {task_name!r} cannot be loaded: {exc}"))
            task = None
        if task is not None and result is not None and result.task_version != task.version:
            problems.append(StaleResults(
                f"{where}: results.{task_name} are for task version {result.task_version}, the task is "
                f"version {task.version}; re-evaluate with `cgbg-bench evaluate ... --task {task_name} "
                f"--record {where}`"))
        elif task is not None and result is not None and result.task_fingerprint != task_fingerprint(task):
            problems.append(StaleResults(
                f"{where}: results.{task_name} were computed on other task data or settings (bank, reference, "
                f"observables or metric settings changed, still version {task.version}); re-evaluate with "
                f"`cgbg-bench evaluate ... --task {task_name} --record {where}`"))
        if model is not None and result is not None and model.format == "pmf" and result.quick_check is None:
            fix = ("`cgbg-bench leaderboard add-baselines`" if entry.is_baseline else
                   f"`cgbg-bench evaluate {model.path or 'MODEL'} --task {task_name} --record {where}`")
            problems.append(MissingResults(
                f"{where}: results.{task_name} has no quick_check (the score on a small fixed bank that "
                f"`leaderboard reproduce --quick` compares); record it with {fix}"))
        if model is not None and model.path is not None:
            try:
                file = model_file(root, model.path, f"{where}: models.{task_name}")
            except EntryPathError as exc:
                problems.append(exc)
                continue
            if not file.is_file():
                problems.append(EntryFileMissing(f"{where}: models.{task_name}.path {model.path} is not in the "
                                                 f"repository ({file})"))
            else:
                actual = sha256_file(file)
                if actual != model.sha256:
                    problems.append(EntryHashMismatch(
                        f"{where}: models.{task_name}: {model.path} has sha256 {actual[:16]}..., the entry records "
                        f"{model.sha256[:16]}...; the file changed: re-evaluate it and record the results"))
        if model is not None and result is not None and result.model_sha256 != model.sha256:
            problems.append(EntryHashMismatch(
                f"{where}: results.{task_name}.model_sha256 {result.model_sha256[:16]}... is not the model's "
                f"sha256 {model.sha256[:16]}...: the results were computed from another file"))
    if entry.is_baseline:
        expected = (baselines or {}).get(entry.name)
        if expected is None:
            problems.append(StaleResults(f"{where}: baseline entry {entry.name} matches no shipped baseline; "
                                         "run `cgbg-bench leaderboard add-baselines`"))
        elif expected.as_dict() != without_quick_checks(entry).as_dict():
            problems.append(StaleResults(f"{where}: out of date with the tasks' baseline_scores.json; run "
                                         "`cgbg-bench leaderboard add-baselines`"))
    return problems


def missing_tasks(entry: Entry, tasks_root: Path | None = None) -> list[str]:
    """Shipped tasks on which a submitted (non-baseline) entry has no results; baselines belong to
    their own tasks and miss none. Not an error: an entry may cover some tasks only."""
    from cgbg_bench.task import list_tasks

    if entry.is_baseline:
        return []
    return sorted(set(list_tasks(tasks_root)) - set(entry.results))


def validate_all(submissions: Path, *, root: Path, tasks_root: Path | None = None
                 ) -> tuple[list[Entry], dict[Path, list[LeaderboardError]]]:
    """Load and check every entry file. Returns (the entries that parsed, problems per file)."""
    from cgbg_bench.leaderboard.baselines import baseline_entries

    problems: dict[Path, list[LeaderboardError]] = {}
    try:
        baselines = {e.name: e for e in baseline_entries(root, tasks_root)}
        baseline_error = None
    except CgbgError as exc:
        baselines, baseline_error = {}, exc
    entries = []
    for path in entry_paths(Path(submissions)):
        found: list[LeaderboardError] = []
        if path.suffix != ".yaml":
            found.append(EntrySchemaError(f"{path}: entries end in .yaml; rename it"))
        try:
            entry = load_entry(path)
        except LeaderboardError as exc:
            found.append(exc)
        else:
            entries.append(entry)
            if entry.is_baseline and baseline_error is not None:
                found.append(StaleResults(f"{path}: cannot regenerate the baselines to compare: {baseline_error}"))
            found += check_entry(entry, root=root, tasks_root=tasks_root, baselines=baselines)
        if found:
            problems[path] = found
    return entries, problems
