"""`cgbg-bench evaluate PMF --task NAME`: score a submitted PMF beside the task's baselines."""

from __future__ import annotations

import json
import logging

from cgbg_bench._io import atomic_write_text

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a PMF (.pt2 or TorchScript .pt) on a task")
    p.add_argument("pmf", help="the submitted PMF file")
    p.add_argument("--task", required=True, help="task name (see `cgbg-bench list`)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=16384, help="samples per forward pass (default 16384)")
    p.add_argument("--n-bootstrap", type=int, default=None, help="bootstrap replicates (default: the task's)")
    p.add_argument("--n-samples", type=int, default=None, help="use only the first N samples of the bank")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON")
    p.add_argument("--plot", metavar="PATH", help="draw reweighted free-energy profiles (png/pdf/svg)")
    p.add_argument("--record", metavar="PATH",
                   help="write or update this task's model and results in a leaderboard entry "
                        "(leaderboard/submissions/NAME.yaml); needs the whole bank and the task's replicates")
    p.set_defaults(func=run)


def _positive(name: str, value) -> None:
    from cgbg_bench.errors import CgbgError

    if value is not None and value < 1:
        raise CgbgError(f"{name} must be a positive integer, got {value}")


def load_baseline_rows(task) -> list[tuple[str, dict]]:
    """Stored baseline scores of the task (hash-checked), as table rows."""
    if task.baseline_scores is None:
        return []
    data = json.loads(task.baseline_scores.verify().read_text())
    if data.get("task_version") != task.version:
        log.warning("baseline scores were computed for task version %s, the task is version %s: "
                    "rebuild them", data.get("task_version"), task.version)
    kinds = {b.name: b.kind for b in task.baselines}
    return [(f"[baseline] {name}" + (" (MD)" if kinds.get(name) == "md-histogram" else ""), r["metrics"])
            for name, r in data["baselines"].items()]


def run(args) -> int:
    from cgbg_bench.evaluate import evaluate, observable_index
    from cgbg_bench.report import score_table
    from cgbg_bench.task import load_task

    _positive("--batch-size", args.batch_size)
    _positive("--n-bootstrap", args.n_bootstrap)
    _positive("--n-samples", args.n_samples)
    task = load_task(args.task)
    proposal = task.load_proposal(args.n_samples)
    reference = task.load_reference()
    if args.record:
        from cgbg_bench.leaderboard import check_record

        check_record(args.record, task, n_samples=args.n_samples, n_bootstrap=args.n_bootstrap)
    result, log_w = evaluate(
        args.pmf, task, device=args.device, batch_size=args.batch_size, n_bootstrap=args.n_bootstrap,
        seed=args.seed, n_samples=args.n_samples, progress=True,
        proposal=proposal, reference=reference,
    )
    names = [m for m in ("js", "pmf_error", "fe_rmse", "ess", "js_floor") if m in result.scores.metrics]
    rows = [(f"{args.pmf}", result.as_dict()["metrics"])] + load_baseline_rows(task)
    print(f"task {task.name} v{task.version}: {result.n_samples} proposal samples, "
          f"{result.scores.n_bootstrap} bootstrap replicates, device {result.device}, {result.runtime_s:.1f} s")
    print(score_table(rows, names))
    print("values are bootstrap mean(standard deviation); JS floor: expected JS of a perfect PMF at this "
          "sample size")
    if args.json:
        atomic_write_text(args.json, json.dumps(result.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        from cgbg_bench.plot import plot_profiles

        positions = proposal.positions[: result.n_samples]
        plot_profiles(task, reference, observable_index(task, positions), log_w, args.plot, label=str(args.pmf))
        print(f"wrote {args.plot}")
    if args.record:
        from cgbg_bench.leaderboard import record_result, repo_root

        record_result(args.record, result, task, model_path=args.pmf, root=repo_root())
        print(f"recorded {task.name} in {args.record}; fill in any TODO, then run "
              "`cgbg-bench leaderboard validate` and `cgbg-bench leaderboard render`")
    return 0
