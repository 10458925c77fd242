"""`cgbg-bench evaluate PMF --task NAME [NAME ...]`: score a submitted PMF beside the task's baselines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cgbg_bench._io import atomic_write_text

log = logging.getLogger(__name__)

_EPILOG = """\
several tasks:
  --task A B, --task A --task B and --task all (every shipped task) score the PMF on each
  task in turn and print one table per task. A task that fails (e.g. a PMF made for another
  input shape) is reported and the others go on; the exit code is then 2.
  --json PATH writes one object with one task, and a JSON list of such objects (in task
  order) with several; a task that failed appears as {"task": NAME, "error": {"type", "message"}}.
  --plot PATH with several tasks writes one figure per task, PATH's stem + "." + TASK + suffix
  (fe.png -> fe.mueller-brown.png, fe.ala2-core-beta.png).

quick checks (--n-samples N):
  every row of the table says how many bank samples it used. With N below the full bank, the
  task's PMF baselines are rescored on the same N samples (this costs one more scoring run
  per baseline), so that the rows are comparable; --stored-baselines shows the stored
  full-bank rows instead, marked "not comparable". MD baselines do not use the bank: their
  rows give their MD frame count.

on a Dask cluster (--scheduler local:N | ADDRESS):
  each shard's energies are computed by a worker, in a confined child process as here, on the
  worker's GPU when it has one (--device cuda:N or cpu overrides); the scores are computed here
  and equal those of one process. --timeout and --memory-limit apply to each shard. An
  energies .npz is scored here. See docs/scaling.md.

reliability:
  scores that cannot be trusted (ESS below 1%, JS within noise of its floor with a low ESS,
  energies spanning more than 1000 kT over the bank, RMS forces 3x away from the task's
  baselines: usually a unit mistake) are flagged in the table's "flags" column, with a
  warning, and in the JSON under "reliability" as a list of {"code", "message"}.
"""


def add_parser(sub) -> None:
    from cgbg_bench.evaluate import DEFAULT_BATCH_SIZE

    p = sub.add_parser("evaluate", help="score a PMF (.pt2 or TorchScript .pt) on a task",
                       description="Score a submitted PMF on one or several tasks, beside each task's baselines.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pmf", nargs="?", help="the submitted PMF file (.pt2 or TorchScript .pt), or an energies "
                                          ".npz computed on `cgbg-bench bank export TASK` (docs/energies.md)")
    p.add_argument("--task", required=True, action="extend", nargs="+", metavar="NAME",
                   help="task name(s) (see `cgbg-bench list`); repeat it or give several, or `all`")
    p.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:N (default: cuda if available, "
                                                  "else cpu)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"samples per forward pass (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--n-bootstrap", type=int, default=None, help="bootstrap replicates (default: the task's)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="use only the first N samples of the bank (quick check; baselines are rescored on them)")
    p.add_argument("--stored-baselines", action="store_true",
                   help="with --n-samples: show the stored full-bank baseline rows (marked not comparable) "
                        "instead of rescoring the baselines on the same samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="wall-clock limit of the PMF's code per task (default: 1800)")
    p.add_argument("--memory-limit", type=float, default=None, metavar="GIB",
                   help="memory cap of the PMF's process in GiB (default: 8)")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON (a list with several tasks)")
    p.add_argument("--plot", metavar="PATH",
                   help="draw reweighted free-energy profiles (.png/.pdf/.svg; one file per task with several)")
    p.add_argument("--scheduler", metavar="local:N|ADDRESS", default=None,
                   help="compute the energies on a Dask cluster: local:N (N workers here) or a scheduler "
                        "address (tcp://host:8786); the bank is split into shards, scores as in one process "
                        "(docs/scaling.md; needs pip install 'cgbg-bench[dask]')")
    p.add_argument("--shards", type=int, default=None, metavar="K",
                   help="with --scheduler: cut the bank into K shards (default: one per worker thread)")
    p.add_argument("--record", metavar="PATH",
                   help="write or update each task's model and results in a leaderboard entry "
                        "(leaderboard/submissions/NAME.yaml); needs the whole bank and the task's replicates")
    p.set_defaults(func=run)


def _positive(name: str, value) -> None:
    from cgbg_bench.errors import UsageError

    if value is not None and not value > 0:
        raise UsageError(f"{name} must be positive, got {value}")


def load_baseline_rows(task) -> list[tuple[str, dict]]:
    """Stored baseline scores of the task (hash-checked), as table rows (label, metrics)."""
    return [(label, data["metrics"]) for label, data, _kind in _stored_baselines(task)]


def _stored_baselines(task) -> list[tuple[str, dict, str]]:
    """(label, stored result dict, kind) of every stored baseline score of the task."""
    if task.baseline_scores is None:
        return []
    data = json.loads(task.baseline_scores.verify().read_text())
    if data.get("task_version") != task.version:
        log.warning("baseline scores were computed for task version %s, the task is version %s: "
                    "rebuild them", data.get("task_version"), task.version)
    kinds = {b.name: b.kind for b in task.baselines}
    return [(f"[baseline] {name}" + (" (MD)" if kinds.get(name) == "md-histogram" else ""), r,
             kinds.get(name, "pmf")) for name, r in data["baselines"].items()]


def _task_names(requested: list[str]) -> list[str]:
    from cgbg_bench.errors import UsageError
    from cgbg_bench.task import list_tasks

    names: list[str] = []
    for name in requested:
        if name == "all":
            every = list_tasks()
            if not every:
                raise UsageError("--task all: no tasks found (see `cgbg-bench list`)")
            names += every
        else:
            names.append(name)
    return list(dict.fromkeys(names))  # repeated names are scored once


def _split_pmf(args) -> None:
    """`evaluate --task A B model.pt2`: the file after the task names is the PMF, not a task."""
    from cgbg_bench.errors import UsageError

    if args.pmf is None:
        files = [t for t in args.task if Path(t).suffix in (".pt2", ".pt") or Path(t).is_file()]
        if len(files) == 1 and args.task[-1] == files[0]:
            args.pmf = args.task.pop()
        else:
            raise UsageError("evaluate needs the PMF file: cgbg-bench evaluate model.pt2 --task NAME")
    if not args.task:
        raise UsageError("--task needs at least one task name (see `cgbg-bench list`), or `all`")


def _check_pmf_path(path: str) -> None:
    from cgbg_bench.errors import SubmissionError

    p = Path(path)
    if p.is_dir():
        raise SubmissionError(f"{path} is a directory, not a PMF file; give the .pt2 (torch.export) or .pt "
                              "(TorchScript) file itself")
    if not p.exists():
        raise SubmissionError(f"{path}: no such file")


def _plot_path(plot: str, task_name: str, several: bool) -> str:
    if not several:
        return plot
    p = Path(plot)
    return str(p.with_name(f"{p.stem}.{task_name}{p.suffix}"))


def _scheduler(args):
    """The parsed --scheduler (None without it); refuses a bad value or a missing dask before any work."""
    if args.scheduler is None:
        if args.shards is not None:
            from cgbg_bench.errors import UsageError

            raise UsageError("--shards needs --scheduler (local:N or a scheduler address)")
        return None
    from cgbg_bench.distributed import parse_scheduler, require_dask

    spec = parse_scheduler(args.scheduler, "--scheduler")
    require_dask()
    return spec


def _client(scheduler):
    """A Dask client for the parsed --scheduler, or a context that gives None."""
    import contextlib

    if scheduler is None:
        return contextlib.nullcontext()
    from cgbg_bench.distributed import connect

    return connect(scheduler)


def _check_device_name(value: str | None) -> None:
    """Refuse a --device that no worker could have (a typo); whether it exists is the workers' business."""
    if value is None:
        return
    import torch

    from cgbg_bench.errors import DeviceError

    try:
        kind = torch.device(value).type
    except (RuntimeError, ValueError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise DeviceError(f"--device {value!r}: with --scheduler use cpu, cuda or cuda:N (or leave it out: "
                          "each worker's GPU when it has one, else cpu)")


def _limits(args):
    from cgbg_bench.confine import DEFAULT_LIMITS, Limits

    if args.timeout is None and args.memory_limit is None:
        return DEFAULT_LIMITS
    return Limits(timeout_s=DEFAULT_LIMITS.timeout_s if args.timeout is None else args.timeout,
                  memory_gb=DEFAULT_LIMITS.memory_gb if args.memory_limit is None else args.memory_limit)


def _table(rows: list[dict], names: list[str]) -> str:
    """rows: {"label", "bank", "metrics", "flags"}; one line each with a bank-size and a flags column."""
    from tabulate import tabulate

    from cgbg_bench.report import METRIC_LABELS, format_value_error

    header = ["entry", "bank"] + [METRIC_LABELS.get(m, m) for m in names] + ["flags"]
    body = []
    for r in rows:
        line = [r["label"], r["bank"]]
        for m in names:
            v = r["metrics"].get(m)
            line.append(format_value_error(v["value"], v["error"]) if v else "-")
        line.append(", ".join(f["code"] for f in r.get("flags") or []) or "-")
        body.append(line)
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def _baseline_rows(task, result, args, proposal, reference, limits, device: str) -> tuple[list[dict], list[str]]:
    """Table rows of the task's baselines, comparable with ``result``; notes to print under the table."""
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.evaluate import evaluate
    from cgbg_bench.pmf import load_pmf
    from cgbg_bench.reliability import assess

    stored = _stored_baselines(task)
    rows, notes = [], []
    n = result.n_samples
    differs = any(kind == "pmf" and int(d.get("n_samples", n)) != n for _, d, kind in stored)
    rescore = differs and args.n_samples is not None and not args.stored_baselines
    if rescore:
        notes.append(f"baseline PMFs rescored on the same {n} samples (--stored-baselines shows the stored "
                     "full-bank rows instead)")
    for label, data, kind in stored:
        if kind != "pmf":
            rows.append({"label": label, "bank": f"{int(data.get('n_samples', 0))} MD frames",
                         "metrics": data["metrics"], "flags": [f.as_dict() for f in assess(data["metrics"])]})
            continue
        stored_n = int(data.get("n_samples", n))
        if stored_n == n or not rescore:
            comparable = stored_n == n
            rows.append({"label": label + ("" if comparable else " (stored, not comparable)"),
                         "bank": str(stored_n), "metrics": data["metrics"],
                         "flags": data.get("reliability") or [f.as_dict() for f in assess(data["metrics"])]})
            continue
        name = label.split("] ", 1)[1]
        try:  # a baseline is a trusted repository file: it runs in this process
            module = load_pmf(task.baseline(name).file.verify(), device)
            again, _ = evaluate(module, task, device=device, batch_size=args.batch_size,
                                n_bootstrap=args.n_bootstrap, seed=args.seed, n_samples=n, proposal=proposal,
                                reference=reference, limits=limits)
        except CgbgError as exc:
            notes.append(f"baseline {name} could not be rescored ({type(exc).__name__}: {exc})")
            continue
        rows.append({"label": label + " (rescored)", "bank": str(again.n_samples),
                     "metrics": again.as_dict()["metrics"], "flags": again.info.get("reliability", [])})
    if differs and not rescore:
        notes.append(f"rows marked 'not comparable' were scored on another number of bank samples than this "
                     f"PMF ({n})" + ("; drop --stored-baselines to rescore them on the same samples"
                                     if args.stored_baselines else ""))
    return rows, notes


def _start_model(args, scheduler, limits):
    """The child process of a model file scored here, started before the tasks are loaded: it imports
    torch and loads the model meanwhile. None for an energies file, with --scheduler, or for a file
    that will be refused (it is refused where it always was, after the task names are checked)."""
    if scheduler is not None:
        return None
    from cgbg_bench.energies import is_energies_file
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.pmf import detect_format

    if is_energies_file(args.pmf):
        return None
    try:
        detect_format(args.pmf)
    except CgbgError:
        return None
    from cgbg_bench.confine import ConfinedEnergies

    return ConfinedEnergies(args.pmf, batch_size=args.batch_size, device=args.device, progress=True, limits=limits)


def _score_task(args, task, several: bool, limits, client=None, started=None) -> dict:
    """Score args.pmf on one task (its energies on ``client``'s workers when given), print its table;
    return the result dict. ``started``: the model's child process, started by :func:`_start_model`."""
    from cgbg_bench import metrics as M
    from cgbg_bench.energies import evaluate_energies, is_energies_file
    from cgbg_bench.evaluate import evaluate_inputs, observable_index
    from cgbg_bench.report import resolution_line

    if is_energies_file(args.pmf) or client is not None:
        proposal = task.load_proposal(args.n_samples)
        reference = task.load_reference()
    if is_energies_file(args.pmf):  # energies computed elsewhere on `cgbg-bench bank export`
        result, log_w = evaluate_energies(args.pmf, task, n_bootstrap=args.n_bootstrap, seed=args.seed,
                                          n_samples=args.n_samples, proposal=proposal, reference=reference)
        if client is not None:
            print("note: an energies file is scored in this process; --scheduler is not used")
    elif client is not None:
        from cgbg_bench.sharded import evaluate_sharded

        result, log_w = evaluate_sharded(
            args.pmf, task, client, n_shards=args.shards, device=args.device, batch_size=args.batch_size,
            n_bootstrap=args.n_bootstrap, seed=args.seed, n_samples=args.n_samples, progress=True,
            proposal=proposal, reference=reference, limits=limits,
        )
    else:  # the PMF's process starts first, and loads the model while the bank and reference are read here
        result, log_w, proposal, reference = evaluate_inputs(
            args.pmf, task, device=args.device, batch_size=args.batch_size, n_bootstrap=args.n_bootstrap,
            seed=args.seed, n_samples=args.n_samples, progress=True, limits=limits, started=started,
        )
    flags = list(result.info.get("reliability", []))
    names = [m for m in M.METRIC_NAMES if m in result.scores.metrics]
    own = {"label": f"{args.pmf}", "bank": str(result.n_samples), "metrics": result.as_dict()["metrics"],
           "flags": flags}
    here = result.device
    if client is not None:
        from cgbg_bench.sharded import local_device

        here = local_device(args.device)  # the shards' devices may not exist in this process
    baselines, notes = _baseline_rows(task, result, args, proposal, reference, limits, here)
    shards = f", {result.info['shards']} shards" if "shards" in result.info else ""
    print(f"task {task.name} v{task.version}: {result.n_samples} proposal samples, "
          f"{result.scores.n_bootstrap} bootstrap replicates, device {result.device}{shards}, "
          f"{result.runtime_s:.1f} s")
    print(_table([own] + baselines, names))
    print("values are bootstrap mean(standard deviation); bank: proposal samples each row was scored on; "
          "JS floor: expected JS of a perfect PMF at this sample size; "
          f"{task.metrics.describe()}; JS (99% clip): the same weights clipped at 99%, as in CG-BG")
    if task.resolution is not None:
        print(resolution_line(task))
    from cgbg_bench.report import per_observable_table  # several residues: each beside its floor

    if per_residue := per_observable_table([(own["label"], result.scores.as_dict()["per_observable"])]):
        print(per_residue)
    for note in notes:
        print(note)
    for f in flags:
        print(f"WARNING: {task.name}: this score cannot be trusted [{f['code']}]: {f['message']}", file=sys.stderr)
    if args.plot:
        from cgbg_bench.plot import plot_profiles

        out = _plot_path(args.plot, task.name, several)
        positions = proposal.positions[: result.n_samples]
        plot_profiles(task, reference, observable_index(task, positions), log_w, out, label=str(args.pmf))
        print(f"wrote {out}")
    if args.record:
        from cgbg_bench.leaderboard import record_result, repo_root

        record_result(args.record, result, task, model_path=args.pmf, root=repo_root())
        print(f"recorded {task.name} in {args.record}; fill in any TODO, then run "
              "`cgbg-bench leaderboard validate` and `cgbg-bench leaderboard render`")
    return result.as_dict()


def run(args) -> int:
    from cgbg_bench.cli._args import check_device

    # Everything that can be refused is refused here, before any scoring.
    _split_pmf(args)
    _positive("--batch-size", args.batch_size)
    _positive("--n-bootstrap", args.n_bootstrap)
    _positive("--n-samples", args.n_samples)
    _positive("--timeout", args.timeout)
    _positive("--memory-limit", args.memory_limit)
    _positive("--shards", args.shards)
    scheduler = _scheduler(args)
    if scheduler is None:
        check_device(args.device)
    else:  # the device is the workers': only its name is checked here
        _check_device_name(args.device)
    _check_pmf_path(args.pmf)
    limits = _limits(args)
    started = _start_model(args, scheduler, limits)  # killed below unless the first task uses it
    try:
        return _run(args, scheduler, limits, started)
    finally:
        if started is not None:
            started.close()


def _run(args, scheduler, limits, started) -> int:
    """The rest of :func:`run`, with the model's child process (``started``) already on its way."""
    from cgbg_bench.cli._args import check_output_path, plot_suffixes
    from cgbg_bench.errors import CgbgError
    from cgbg_bench.task import load_task

    names = _task_names(args.task)
    several = len(names) > 1
    tasks = [load_task(name) for name in names]  # unknown names fail here, before any scoring
    if args.json:
        check_output_path(args.json, "--json")
    if args.plot:
        check_output_path(args.plot, "--plot", plot_suffixes())
    if args.record:
        from cgbg_bench.leaderboard import check_record

        check_output_path(args.record, "--record")
        for task in tasks:
            check_record(args.record, task, n_samples=args.n_samples, n_bootstrap=args.n_bootstrap)
    outputs = [p for p in (args.json, args.plot, args.record) if p]
    if len({str(Path(p).resolve()) for p in outputs}) < len(outputs):
        from cgbg_bench.errors import OutputPathError

        raise OutputPathError("--json, --plot and --record must name different files")

    results, failed = [], []
    with _client(scheduler) as client:
        for i, (name, task) in enumerate(zip(names, tasks)):
            if several:
                print(f"\n== {name} ==")
            try:
                results.append(_score_task(args, task, several, limits, client, started if i == 0 else None))
            except CgbgError as exc:
                if not several:
                    raise
                print(f"cgbg-bench: error: task {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed.append(name)
                results.append({"task": name, "error": {"type": type(exc).__name__, "message": str(exc)}})
    if args.json:
        payload = results if several else results[0]
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    if several:
        print(f"\nscored {len(names) - len(failed)} of {len(names)} tasks" +
              (f"; failed: {', '.join(failed)}" if failed else ""))
    return 2 if failed else 0
