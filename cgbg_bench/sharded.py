"""Score a submitted PMF file with its energies computed on a Dask cluster, shard by shard.

The bank's samples are split into contiguous shards whose boundaries are multiples of
``batch_size``, so that every forward pass sees the batch it sees in a single process. Each
shard is one task on a worker: the worker writes the submitted file's bytes to a temporary
folder and runs the contract check, the energies, the batch-independence check (on a subset
of its shard) and the RMS force in a confined child process (:func:`cgbg_bench.confine.confined_energies`),
exactly as :func:`cgbg_bench.evaluate.evaluate` does for the whole bank. Workers receive our own
objects (the task, a positions slice, the file's bytes) and return plain arrays and numbers;
nothing of the submission is unpickled anywhere.

The energies come back in bank order and are scored here by the functions the single-process
path uses (log-weights, clipping, block histograms, bootstrap, Pareto k, reliability flags), so
the scores equal the single-process ones; they are bit-identical when the workers run the same
torch build on the same kind of device.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cgbg_bench import errors
from cgbg_bench.confine import DEFAULT_LIMITS, Limits
from cgbg_bench.evaluate import DEFAULT_BATCH_SIZE

__all__ = ["shard_bounds", "default_shard_count", "evaluate_sharded", "local_device", "MAX_SHARD_SAMPLES"]

#: Largest default shard: its positions and energies are held by one confined child.
MAX_SHARD_SAMPLES = 1 << 22


def shard_bounds(n: int, n_shards: int, batch_size: int) -> list[tuple[int, int]]:
    """At most ``n_shards`` contiguous (start, stop) covering range(n), starts multiples of ``batch_size``."""
    if n_shards < 1:
        raise errors.UsageError(f"n_shards must be at least 1, got {n_shards}")
    if batch_size < 1:
        raise errors.UsageError(f"batch_size must be at least 1, got {batch_size}")
    if n < 1:
        return []
    size = math.ceil(math.ceil(n / n_shards) / batch_size) * batch_size
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def default_shard_count(n: int, n_threads: int) -> int:
    """One shard per worker thread, more when a shard would exceed ``MAX_SHARD_SAMPLES``."""
    return max(1, n_threads, math.ceil(n / MAX_SHARD_SAMPLES))


def _shard_energies(positions: np.ndarray, pmf_bytes: bytes, pmf_name: str, display: str, task,
                    batch_size: int, device: str | None, limits: Limits) -> dict:
    """On a worker: energies and RMS force of one shard, in a confined child; errors as plain text."""
    from cgbg_bench.cli._args import check_device
    from cgbg_bench.confine import confined_energies
    from cgbg_bench.distributed import worker_address, worker_device

    dev = worker_device(device)
    with tempfile.TemporaryDirectory(prefix="cgbg-bench-shard-") as tmp:
        suffix = Path(pmf_name).suffix
        path = Path(tmp) / ("submission" + (suffix if suffix in (".pt2", ".pt") else ""))  # the format is in the bytes
        path.write_bytes(pmf_bytes)
        try:
            check_device(dev, flag="device")  # a device this worker lacks is named as such, not as a crash
            energies, rms_force = confined_energies(path, task, positions, batch_size=batch_size, device=dev,
                                                    limits=limits)
        except errors.CgbgError as exc:
            return {"error": type(exc).__name__, "message": str(exc).replace(str(path), display), "device": dev,
                    "worker": worker_address()}
    return {"energies": np.asarray(energies, np.float64), "rms_force": float(rms_force), "device": dev}


def local_device(device: str | None) -> str:
    """``device`` when this process can use it, else the default device here (the workers' may not exist here)."""
    import torch

    from cgbg_bench.pmf import default_device

    if device == "cpu":
        return device
    try:
        dev = torch.device(device) if device is not None else None
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available() \
            and (dev.index or 0) < torch.cuda.device_count():
        return device
    return default_device()


def _raise_shard_error(out: dict, start: int, stop: int, n_shards: int):
    cls = getattr(errors, out["error"], None)
    if not (isinstance(cls, type) and issubclass(cls, errors.CgbgError)):
        cls = errors.SubmissionError
    samples = f"bank samples {start}..{stop - 1}, " if n_shards > 1 else ""
    where = f" ({samples}on device {out['device']} of worker {out['worker']})"
    raise cls(out["message"] + where)


def evaluate_sharded(pmf: str | os.PathLike, task, scheduler, *, n_shards: int | None = None,
                     device: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, n_bootstrap: int | None = None,
                     seed: int = 0, n_samples: int | None = None, progress: bool = False, proposal=None,
                     reference=None, limits: Limits = DEFAULT_LIMITS):
    """Score the submitted file ``pmf`` on ``task`` with its energies computed on ``scheduler``.

    ``scheduler``: ``local:N``, a scheduler address, or a ``distributed.Client``
    (:func:`cgbg_bench.distributed.connect`). ``n_shards``: how many pieces the bank is cut into
    (default: one per worker thread, more when a piece would exceed ``MAX_SHARD_SAMPLES``; fewer
    when the bank has fewer batches). ``device``: each shard's torch device (default: the worker's
    GPU when it has one, else cpu; :func:`cgbg_bench.distributed.worker_device`). ``limits`` apply
    to each shard's child process. The other parameters are those of
    :func:`cgbg_bench.evaluate.evaluate`. Returns (Result, log-weights) like it.
    """
    from cgbg_bench import metrics as M
    from cgbg_bench.distributed import connect, map_ordered
    from cgbg_bench.evaluate import Result, score_bank
    from cgbg_bench.pmf import detect_format
    from cgbg_bench.progress import progress as make_progress
    from cgbg_bench.reliability import FORCE_CONFIGS

    t0 = time.perf_counter()
    if not isinstance(pmf, (str, os.PathLike)):
        raise errors.UsageError(f"pmf must be the path of a submitted file, got {type(pmf).__name__}; "
                                "a module of your own is scored in this process by evaluate")
    if n_shards is not None and n_shards < 1:
        raise errors.UsageError(f"n_shards must be at least 1, got {n_shards}")
    detect_format(pmf)  # a file of the wrong format is refused before any worker is asked
    reference = reference or task.load_reference()
    proposal = proposal or task.load_proposal(n_samples)
    positions, log_q = proposal.positions, proposal.log_q
    if n_samples is not None:
        positions, log_q = positions[:n_samples], log_q[:n_samples]
    n = len(positions)
    pmf_bytes = Path(pmf).read_bytes()
    with connect(scheduler) as client:
        threads = sum(client.nthreads().values())
        bounds = shard_bounds(n, n_shards or default_shard_count(n, threads), batch_size)
        pieces = client.scatter([positions[a:b] for a, b in bounds], hash=False)
        blob = client.scatter(pmf_bytes, broadcast=True, hash=False)
        bar = make_progress(n, desc=f"energies ({len(bounds)} shards)", unit="sample", delay_s=3.0,
                            enabled=progress)
        done = [0]

        def count(i: int, out: dict) -> None:
            done[0] += bounds[i][1] - bounds[i][0]
            bar.update_to(done[0])

        try:
            outs = map_ordered(_shard_energies, pieces, client, on_result=count, pmf_bytes=blob,
                               pmf_name=Path(pmf).name, display=str(pmf), task=task, batch_size=int(batch_size),
                               device=device, limits=limits)
        finally:
            bar.close()
    for (a, b), out in zip(bounds, outs):
        if "error" in out:
            _raise_shard_error(out, a, b, len(bounds))
    energies = np.concatenate([out["energies"] for out in outs]) if outs else np.empty(0)
    if energies.shape != (n,):
        raise errors.ModelCrashed(f"the PMF {pmf}: the shards returned {energies.shape[0]} energies for "
                                  f"{n} bank samples")
    devices = sorted({out["device"] for out in outs})
    # the RMS force is measured on the bank's first FORCE_CONFIGS samples: shard 0's when it holds them all
    first = bounds[0][1] - bounds[0][0] if bounds else 0
    rms_force = outs[0]["rms_force"] if outs and first >= min(FORCE_CONFIGS, n) else None
    here = local_device(device)
    log_w = M.log_weights(energies, log_q, task.kT)
    scores, k_hat, reliability = score_bank(task, pmf, positions, log_w, log_q, reference, n_bootstrap=n_bootstrap,
                                            seed=seed, device=here, limits=limits, rms_force=rms_force)
    result = Result(
        task=task.name,
        task_version=task.version,
        scores=scores,
        runtime_s=time.perf_counter() - t0,
        device=",".join(devices),
        n_samples=n,
        submission=str(pmf),
        submission_sha256=hashlib.sha256(pmf_bytes).hexdigest(),  # of the bytes the workers ran
        info={"batch_size": batch_size, "seed": seed, "pareto_k": k_hat, "reliability": reliability,
              "shards": len(bounds)},
    )
    return result, log_w
