"""What `cgbg-bench evaluate` costs beside the PMF's own forward passes (docs/benchmarks.md).

    python docs/scripts/evaluate_cost.py                  # both targets, 3 interleaved repeats
    python docs/scripts/evaluate_cost.py --only ala2 --repeats 2
    python docs/scripts/evaluate_cost.py --only mueller-brown --repeats 5

**ala2** (target: evaluate <= 1.3x the forward passes): ``cgbg-bench evaluate
<fm-biased> --task ala2-core-beta --json ...`` as a subprocess (the bank of 10^6 from the cache;
the PMF loaded and run in its confined child), against the forward passes alone: the same PMF
loaded in this process, ``compute_energies`` over the same bank positions with evaluate's batch
size (``DEFAULT_BATCH_SIZE``). Everything the command does besides those forward passes (process starts, imports,
reading and checking the bank, loading the PMF, moving the bank to the child, the contract and
batch-independence checks, the RMS force, weights, histograms, 500 bootstrap replicates, JSON)
is overhead. One torch thread in both (``OMP_NUM_THREADS``, ``--threads``); wall-clock seconds
and CPU seconds (this process for the forward passes; for the command, every process it ran,
``RUSAGE_CHILDREN``: parent and confined child). Forward passes and command alternate, and each
ratio is min(command) / min(forward).

**mueller-brown** (target: < 3 s wall, process start included): ``cgbg-bench evaluate
baselines/mueller-brown/exact.pt2 --task mueller-brown`` as a user runs it (the environment as
given, torch's own thread count), wall and CPU seconds; min and median over the repeats.

Run the code of another checkout by putting it first on the path and leaving the repository
(the current folder would come first): ``cd /tmp && PYTHONPATH=/path/to/checkout python
/path/to/evaluate_cost.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _command() -> list[str]:
    script = shutil.which("cgbg-bench")  # the installed console script, as a user runs it
    if script and "PYTHONPATH" not in os.environ:
        return [script]
    return [sys.executable, "-m", "cgbg_bench"]  # another checkout through PYTHONPATH


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of it and every process it waited for) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(_command() + args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ala2(repeats: int, threads: int, batch_size: int | None = None) -> dict:
    import torch

    from cgbg_bench.evaluate import DEFAULT_BATCH_SIZE, compute_energies
    from cgbg_bench.pmf import load_pmf
    from cgbg_bench.task import load_task

    batch_size = batch_size or DEFAULT_BATCH_SIZE
    torch.set_num_threads(threads)
    task = load_task("ala2-core-beta")
    path = task.baseline("fm-biased").file.verify()
    module = load_pmf(path, "cpu")
    positions = task.load_proposal().positions  # generates and caches the bank on first use
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    fwd, cli = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            compute_energies(module, positions, batch_size=batch_size, device="cpu")
            fwd.append((time.perf_counter() - t0, time.process_time() - c0))
            cli.append(_run(["evaluate", str(path), "--task", task.name, "--batch-size", str(batch_size),
                             "--json", os.path.join(tmp, "out.json")], env))
    out = {"n_samples": len(positions), "threads": threads, "batch_size": batch_size, "forward": fwd, "evaluate": cli}
    for i, clock in enumerate(("wall", "cpu")):
        out[f"ratio_{clock}"] = min(c[i] for c in cli) / min(f[i] for f in fwd)
    return out


def mueller_brown(repeats: int) -> dict:
    from cgbg_bench.task import load_task

    exact = load_task("mueller-brown").baseline("exact").file.verify()
    runs = [_run(["evaluate", str(exact), "--task", "mueller-brown"], dict(os.environ)) for _ in range(repeats)]
    return {"runs": runs, **{f"{k}_{clock}": f([r[i] for r in runs]) for i, clock in enumerate(("wall", "cpu"))
                             for k, f in (("min", min), ("median", statistics.median))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["ala2", "mueller-brown"], default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the ala2 measurement (default 1)")
    p.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    args = p.parse_args(argv)
    results = {"load_average": os.getloadavg()[0]}
    if args.only in (None, "mueller-brown"):
        mb = results["mueller-brown"] = mueller_brown(args.repeats)
        print(f"mueller-brown CLI: wall min {mb['min_wall']:.2f} s, median {mb['median_wall']:.2f} s; "
              f"CPU min {mb['min_cpu']:.2f} s, median {mb['median_cpu']:.2f} s")
    if args.only in (None, "ala2"):
        a = results["ala2"] = ala2(args.repeats, args.threads)
        fw = min(f[0] for f in a["forward"]), min(f[1] for f in a["forward"])
        ev = min(c[0] for c in a["evaluate"]), min(c[1] for c in a["evaluate"])
        print(f"ala2-core-beta fm-biased, {a['n_samples']} samples, {a['threads']} thread(s): forward passes "
              f"{fw[0]:.1f} s wall / {fw[1]:.1f} CPU-s; evaluate {ev[0]:.1f} s wall / {ev[1]:.1f} CPU-s; "
              f"ratio {a['ratio_wall']:.2f} wall, {a['ratio_cpu']:.2f} CPU")
    print(f"load average at start {results['load_average']:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
